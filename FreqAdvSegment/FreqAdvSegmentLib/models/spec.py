"""ModelSpec: everything needed to rebuild a segmentation network and feed it correctly.

A spec travels with the weights (inside a .safetensors file's metadata, or as a "spec" entry of a
.pt checkpoint), so a saved model can be loaded without the user remembering how it was built
or how its input was preprocessed. This module imports neither torch nor MONAI.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ..organs import BTCV_LABELS

# MONAI networks, then those of other families (nnU-Net's dynamic-network-architectures UNets,
# ensembled over folds; TorchScript, which is loaded as code and never built from a spec).
MONAI_ARCHS: tuple[str, ...] = ("unetr", "swinunetr", "unet", "segresnet", "dynunet", "segresnetds")
KNOWN_ARCHS: tuple[str, ...] = (*MONAI_ARCHS, "nnunet", "torchscript")

# How the network's input is made from the attack's windowed [0, 1] tensor x (see input_scale).
INPUT_ACTIVATIONS: tuple[str, ...] = ("none", "sigmoid")
# Sliding-window settings a model may carry (MONAI SlidingWindowInferer's names).
INFERER_KEYS = {"overlap": float, "sw_batch_size": int, "mode": str}
# Window blending: MONAI's two, and nnU-Net's Gaussian (no 1e-3 floor; see inference.py).
BLEND_MODES = ("gaussian", "constant", "nnunet")
NATIVE = "NATIVE"  # orientation: keep the image's own axes (nnU-Net reads arrays as stored)

# Bumped when the JSON layout changes incompatibly; readers refuse newer formats.
SPEC_FORMAT = 1

_AXIS_PAIRS = ({"L", "R"}, {"A", "P"}, {"S", "I"})


@dataclass
class ModelSpec:
    """How to build a network and what it expects as input.

    Fields:
        arch: one of KNOWN_ARCHS.
        arch_args: constructor arguments of the MONAI network (JSON values only; lists become
            tuples). ``in_channels`` and ``out_channels`` are always present after construction.
        label_names: one name per output channel; index = label value (0 = background).
        intensity_window: (low, high) in HU, mapped linearly to [0, 1] and clipped.
        target_spacing: voxel spacing in mm the network was trained at, (x, y, z).
        roi_size: sliding-window patch size in voxels, (x, y, z).
        orientation: axis codes of the network's input, e.g. "RAS"; "NATIVE" keeps the image's
            own index axes (nnU-Net).
        input_scale, input_shift, input_activation: the model's own normalisation after the
            window: network input = act(x * input_scale + input_shift), x = the windowed [0, 1]
            tensor the attacks perturb. (1, 0, "none") feeds x itself; a z-score after a clip to
            the window is scale (high - low) / std, shift (low - mean) / std.
        inferer: sliding-window settings the model was validated with (overlap, sw_batch_size,
            mode "gaussian", "constant" or "nnunet"); command-line options override them.
    """

    arch: str
    arch_args: dict[str, Any] = field(default_factory=dict)
    label_names: tuple[str, ...] = BTCV_LABELS
    intensity_window: tuple[float, float] = (-175.0, 250.0)
    target_spacing: tuple[float, float, float] = (1.5, 1.5, 2.0)
    roi_size: tuple[int, int, int] = (96, 96, 96)
    orientation: str = "RAS"
    input_scale: float = 1.0
    input_shift: float = 0.0
    input_activation: str = "none"
    inferer: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.arch = _check_arch(self.arch)
        self.label_names = _check_labels(self.label_names)
        self.intensity_window = _check_window(self.intensity_window)
        self.target_spacing = _numbers(self.target_spacing, 3, "target_spacing", positive=True)
        self.roi_size = _ints(self.roi_size, 3, "roi_size")
        self.orientation = _check_orientation(self.orientation)
        self.input_scale, self.input_shift = _check_input_affine(self.input_scale, self.input_shift)
        self.input_activation = _check_choice(self.input_activation, INPUT_ACTIVATIONS, "input_activation")
        self.inferer = _check_inferer(self.inferer)
        self.arch_args = _check_arch_args(self.arch_args, self)

    @property
    def in_channels(self) -> int:
        """Number of input channels (image modalities)."""
        return self.arch_args["in_channels"]

    @property
    def out_channels(self) -> int:
        """Number of output channels; equals len(label_names)."""
        return self.arch_args["out_channels"]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict, with a "format" version key.

        Fields added after format 1 are left out while at their defaults, so that specs of plain
        windowed models stay readable by earlier FreqAdvSegment releases.
        """
        data = asdict(self)
        for name, default in _LATER_DEFAULTS.items():
            if data[name] == default:
                del data[name]
        return {"format": SPEC_FORMAT, **data}

    def to_json(self) -> str:
        """JSON text; ``ModelSpec.from_json(spec.to_json()) == spec``."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> ModelSpec:
        """Validate and build a spec from a dict (as written by to_dict)."""
        if not isinstance(data, dict):
            raise ValueError(f"a model spec must be a JSON object, got {type(data).__name__}")
        data = dict(data)
        version = data.pop("format", SPEC_FORMAT)
        if not isinstance(version, int) or isinstance(version, bool) or version > SPEC_FORMAT:
            raise ValueError(
                f"model spec field 'format' is {version!r}; this FreqAdvSegment reads formats up "
                f"to {SPEC_FORMAT}: upgrade FreqAdvSegment to read this model"
            )
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"model spec has unknown field(s) {unknown}; known: {sorted(known)}")
        if "arch" not in data:
            raise ValueError("model spec is missing field 'arch'")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelSpec:
        """Parse JSON text written by to_json; ValueError naming the field if invalid."""
        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError) as error:
            raise ValueError(f"model spec is not valid JSON: {error}") from None
        return cls.from_dict(data)


_LATER_DEFAULTS: dict[str, Any] = {
    "input_scale": 1.0,
    "input_shift": 0.0,
    "input_activation": "none",
    "inferer": {},
}


def paper_unetr_spec() -> ModelSpec:
    """The UNETR of Hanif et al. (MICCAI 2023) on BTCV/Synapse: 96^3 input, 14 labels.

    Matches the vafa repository's README; ``pos_embed="perceptron"`` there is today's
    ``proj_type="perceptron"`` (needs einops).
    """
    return ModelSpec(
        arch="unetr",
        arch_args={
            "in_channels": 1,
            "out_channels": 14,
            "img_size": (96, 96, 96),
            "feature_size": 16,
            "hidden_size": 768,
            "mlp_dim": 3072,
            "num_heads": 12,
            "proj_type": "perceptron",
            "norm_name": "instance",
            "conv_block": True,
            "res_block": True,
            "dropout_rate": 0.0,
        },
    )


# ---- field validators: each returns the normalised value or raises ValueError naming the field


def _check_arch(arch: Any) -> str:
    if arch not in KNOWN_ARCHS:
        raise ValueError(f"model spec field 'arch' is {arch!r}; choose one of {list(KNOWN_ARCHS)}")
    return arch


def _check_labels(names: Any) -> tuple[str, ...]:
    if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names:
        raise ValueError("model spec field 'label_names' must be a non-empty list of strings")
    if not all(isinstance(name, str) and name for name in names):
        raise ValueError(f"model spec field 'label_names' must hold non-empty strings: {names!r}")
    return tuple(names)


def _is_number(value: Any) -> bool:
    # bool is an int subclass; True as a spacing is a mistake, not 1.0.
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and math.isfinite(value)


def _numbers(value: Any, count: int, name: str, positive: bool = False) -> tuple[float, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or len(value) != count:
        raise ValueError(f"model spec field '{name}' must be a list of {count} numbers: {value!r}")
    if not all(_is_number(v) and (v > 0 or not positive) for v in value):
        kind = "positive numbers" if positive else "finite numbers"
        raise ValueError(f"model spec field '{name}' must hold {kind}: {value!r}")
    return tuple(float(v) for v in value)


def _ints(value: Any, count: int, name: str) -> tuple[int, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or len(value) != count:
        raise ValueError(f"model spec field '{name}' must be a list of {count} integers: {value!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise ValueError(f"model spec field '{name}' must hold positive integers: {value!r}")
    return tuple(value)


def _check_window(value: Any) -> tuple[float, float]:
    low, high = _numbers(value, 2, "intensity_window")
    if low >= high:
        raise ValueError(f"model spec field 'intensity_window' needs low < high, got {value!r}")
    return (low, high)


def _check_orientation(value: Any) -> str:
    letters = value.upper() if isinstance(value, str) else ""
    if letters == NATIVE:
        return NATIVE
    ok = len(letters) == 3 and all(
        sum(letter in pair for letter in letters) == 1 for pair in _AXIS_PAIRS
    )
    if not ok:
        raise ValueError(
            f"model spec field 'orientation' is {value!r}; give three axis codes, one of L/R, "
            "A/P and S/I each, e.g. 'RAS' (or 'native' to keep the image's own axes)"
        )
    return letters


def _check_input_affine(scale: Any, shift: Any) -> tuple[float, float]:
    if not (_is_number(scale) and _is_number(shift)) or scale == 0:
        raise ValueError(
            f"model spec fields 'input_scale' and 'input_shift' must be finite numbers, scale "
            f"non-zero; got {scale!r} and {shift!r}"
        )
    return float(scale), float(shift)


def _check_choice(value: Any, choices: tuple[str, ...], name: str) -> str:
    if value not in choices:
        raise ValueError(f"model spec field '{name}' is {value!r}; choose one of {list(choices)}")
    return value


def _check_inferer(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"model spec field 'inferer' must be an object, got {value!r}")
    unknown = sorted(set(value) - set(INFERER_KEYS))
    if unknown:
        raise ValueError(f"model spec field 'inferer' has unknown key(s) {unknown}; known: {sorted(INFERER_KEYS)}")
    out = {}
    for key, kind in INFERER_KEYS.items():
        if key not in value:
            continue
        item = value[key]
        good = isinstance(item, str) if kind is str else _is_number(item) and (kind is float or float(item).is_integer())
        if not good:
            raise ValueError(f"model spec field 'inferer.{key}' must be a {kind.__name__}, got {item!r}")
        out[key] = kind(item)
    if not 0 <= out.get("overlap", 0) < 1 or out.get("sw_batch_size", 1) < 1:
        raise ValueError(f"model spec field 'inferer' needs overlap in [0, 1) and sw_batch_size >= 1: {value!r}")
    if out.get("mode", "gaussian") not in BLEND_MODES:
        raise ValueError(f"model spec field 'inferer.mode' must be one of {list(BLEND_MODES)}, got {out['mode']!r}")
    return out


def _freeze(value: Any, path: str) -> Any:
    """JSON value -> the same with lists as tuples, so specs compare equal after a round trip."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v, path) for v in value)
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise ValueError(f"model spec field '{path}' has non-string keys: {value!r}")
        return {k: _freeze(v, f"{path}.{k}") for k, v in value.items()}
    if value is None or isinstance(value, (str, bool, int)) or _is_number(value):
        return value
    raise ValueError(
        f"model spec field '{path}' holds {type(value).__name__} {value!r}; only JSON values "
        "(numbers, strings, booleans, null, lists, objects) can be stored"
    )


def _check_arch_args(args: Any, spec: ModelSpec) -> dict[str, Any]:
    if not isinstance(args, dict):
        raise ValueError(f"model spec field 'arch_args' must be an object, got {args!r}")
    args = _freeze(args, "arch_args")
    args.setdefault("in_channels", 1)
    args.setdefault("out_channels", len(spec.label_names))
    for key in ("in_channels", "out_channels"):
        value = args[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"model spec field 'arch_args.{key}' must be a positive integer")
    if args["out_channels"] != len(spec.label_names):
        raise ValueError(
            f"model spec field 'arch_args.out_channels' is {args['out_channels']} but "
            f"'label_names' has {len(spec.label_names)} names; give one name per output channel"
        )
    if spec.arch == "unetr" and "img_size" in args:
        _check_unetr_img_size(args["img_size"], spec.roi_size)
    return args


def _check_unetr_img_size(img_size: Any, roi_size: tuple[int, int, int]) -> None:
    # UNETR's position embeddings are fixed to img_size, so every patch fed to it (roi_size)
    # must have exactly that size.
    size = (img_size,) * 3 if isinstance(img_size, int) else tuple(img_size)
    if size != tuple(roi_size):
        raise ValueError(
            f"model spec field 'arch_args.img_size' {img_size!r} differs from 'roi_size' "
            f"{roi_size}: UNETR only accepts patches of its img_size, so set them equal"
        )
