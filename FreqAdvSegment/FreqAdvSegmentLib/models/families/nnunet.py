"""Family: an nnU-Net v2 trained-model folder (plans.json + dataset.json + fold_*/checkpoint_final.pth).

The network comes from the plans' ``architecture`` entry (new plans) or the configuration's
UNet_* fields (old plans), built with dynamic-network-architectures (extra ``[nnunet]``; nnunetv2
itself is not needed). Class names in the plans are looked up in fixed allow-lists, never
imported from the string. Checkpoints load with ``weights_only=True`` plus numpy scalars (nnU-Net's
"logging" holds numpy floats) and only ``network_weights`` is used.

What the family reproduces: CT normalisation (clip to the plans' foreground percentiles, then
z-score) inside the module, so the attack's [0, 1] window is exactly the percentile range; the
configuration's spacing and patch size; the axis order (nnU-Net reads SimpleITK arrays [z, y, x]
and applies ``transpose_forward``), done by permuting inside the module; mirroring test-time
augmentation over the axes the checkpoint allows; folds ensembled by averaging logits, as
nnUNetPredictor does. Not reproduced: nnU-Net's own resampling (third-order spline, edge-aligned
grid) and crop to the non-zero box; FreqAdvSegment resamples linearly on MONAI's grid.
"""

from __future__ import annotations

import inspect
import itertools
import re
from pathlib import Path
from typing import Any

import torch

from ..normalize import zscore_after_window
from ..spec import ModelSpec
from .common import LoadOptions, Source, StateDict, read_json, read_torch, tensors_only

NAME = "nnunet"
DESCRIPTION = "nnU-Net v2 trained-model folder (plans.json, dataset.json, fold_*/)"
CHECKPOINT = "checkpoint_final.pth"
DEFAULT_CONFIGURATION = "3d_fullres"
INSTALL_HINT = "pip install 'freqadvsegment[nnunet]' (dynamic-network-architectures)"

# Plans name classes by dotted path; these are the only ones that are ever built.
NETWORK_CLASSES = {
    "PlainConvUNet": "PlainConvUNet",
    "dynamic_network_architectures.architectures.unet.PlainConvUNet": "PlainConvUNet",
    "ResidualEncoderUNet": "ResidualEncoderUNet",
    "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet": "ResidualEncoderUNet",
}
OPS: dict[str, type[torch.nn.Module]] = {
    **{f"torch.nn.{n}": getattr(torch.nn, n) for n in ("Conv3d", "InstanceNorm3d", "BatchNorm3d", "Dropout3d", "LeakyReLU", "ReLU")},
    "torch.nn.modules.conv.Conv3d": torch.nn.Conv3d,
    "torch.nn.modules.instancenorm.InstanceNorm3d": torch.nn.InstanceNorm3d,
    "torch.nn.modules.batchnorm.BatchNorm3d": torch.nn.BatchNorm3d,
    "torch.nn.modules.dropout.Dropout3d": torch.nn.Dropout3d,
    "torch.nn.modules.activation.LeakyReLU": torch.nn.LeakyReLU,
    "torch.nn.modules.activation.ReLU": torch.nn.ReLU,
}
OP_KEYS = ("conv_op", "norm_op", "dropout_op", "nonlin")
_FOLD = re.compile(r"^fold_(\d+|all)$")

# TotalSegmentator's weights: nnU-Net folders it runs on a RAS-reoriented image, without TTA.
TOTALSEG_ENV = "TOTALSEG_WEIGHTS_PATH"
TOTALSEG_PRESETS = {
    # name -> (dataset folder prefix, what it is); "total" (5 models at 1.5 mm, merged) is not here.
    "totalseg-fast": ("Dataset297_TotalSegmentator_total_3mm", "TotalSegmentator --fast: 1 model at 3 mm"),
}


def detect(path: Path) -> bool:
    """A folder holding plans.json and dataset.json."""
    return path.is_dir() and (path / "plans.json").is_file() and (path / "dataset.json").is_file()


def read(path: Path, options: LoadOptions) -> Source:
    """Spec (plans + dataset + checkpoints' mirroring) and the folds' weights, prefixed folds.N."""
    plans = read_json(path / "plans.json", "nnU-Net plans")
    dataset = read_json(path / "dataset.json", "nnU-Net dataset.json")
    configuration = options.configuration or _configuration_from_name(path)
    folds = _fold_folders(path, options.folds)
    checkpoints = [_read_checkpoint(folder / CHECKPOINT) for folder in folds]
    totalseg = is_totalsegmentator(path)
    mirror = _mirror_axes(checkpoints) if options.tta and not totalseg else None
    spec = options.spec or nnunet_spec(plans, dataset, configuration, len(folds), mirror, path)
    if totalseg and options.spec is None:
        # TotalSegmentator reorients to the closest canonical (RAS) first: nibabel's
        # as_closest_canonical, which is MONAI's and our "RAS".
        spec = ModelSpec.from_dict({**spec.to_dict(), "orientation": "RAS"})
    state = {f"folds.{i}.{k}": v for i, (weights, _) in enumerate(checkpoints) for k, v in weights.items()}
    return Source(spec, state, NAME)


def is_totalsegmentator(path: Path) -> bool:
    """A TotalSegmentator weights folder (its dataset folder's name says so)."""
    return "TotalSegmentator" in path.parent.name


def totalsegmentator_weights() -> Path:
    """$TOTALSEG_WEIGHTS_PATH, else ~/.totalsegmentator/nnunet/results."""
    import os

    env = os.environ.get(TOTALSEG_ENV)
    return Path(env) if env else Path.home() / ".totalsegmentator" / "nnunet" / "results"


def totalsegmentator_folder(name: str) -> Path:
    """The nnU-Net trained-model folder of a TotalSegmentator preset, or FileNotFoundError."""
    prefix, what = TOTALSEG_PRESETS[name]
    root = totalsegmentator_weights()
    datasets = sorted(root.glob(f"{prefix}*")) if root.is_dir() else []
    models = [m for d in datasets for m in sorted(d.iterdir()) if detect(m)]
    if not models:
        raise FileNotFoundError(
            f"{name} ({what}) needs TotalSegmentator's weights in {root} (a {prefix}* folder); "
            f"run TotalSegmentator once to download them, or set ${TOTALSEG_ENV}"
        )
    return models[0]


# ---- the spec


def nnunet_spec(
    plans: dict[str, Any], dataset: dict[str, Any], configuration: str, n_models: int,
    mirror_axes: list[int] | None, where: Path,
) -> ModelSpec:
    """ModelSpec of an nnU-Net configuration: network, labels, CT normalisation, geometry."""
    config = _configuration(plans, configuration, where)
    labels = _label_names(dataset, where)
    in_channels = _check_channels(dataset, config, where)
    network_class, kwargs = network_from_plans(config, where)
    transpose = _transpose(plans, where)
    window, scale, shift = _ct_normalisation(plans, where)
    return ModelSpec(
        arch="nnunet",
        arch_args={
            "in_channels": in_channels,
            "out_channels": len(labels),
            "network_class": network_class,
            "network_kwargs": kwargs,
            "models": n_models,
            "mirror_axes": mirror_axes,
            "transpose_forward": transpose,
        },
        label_names=labels,
        intensity_window=window,
        input_scale=scale,
        input_shift=shift,
        target_spacing=_to_xyz(config["spacing"], transpose),
        roi_size=tuple(int(v) for v in _to_xyz(config["patch_size"], transpose)),
        orientation="native",
        # nnU-Net's tile step 0.5 of the patch and its own Gaussian tile weights.
        inferer={"overlap": 0.5, "mode": "nnunet"},
    )


def _configuration(plans: dict[str, Any], name: str, where: Path) -> dict[str, Any]:
    configs = plans.get("configurations")
    if not isinstance(configs, dict) or name not in configs:
        known = sorted(configs) if isinstance(configs, dict) else []
        raise ValueError(f"{where}: plans.json has no configuration {name!r}; choose --configuration from {known}")
    config = dict(configs[name])
    parent = config.get("inherits_from")
    if parent is not None:  # e.g. 3d_cascade_fullres inherits from 3d_fullres
        if parent == name:
            raise ValueError(f"{where}: configuration {name!r} inherits from itself")
        config = {**_configuration(plans, parent, where), **{k: v for k, v in config.items() if k != "inherits_from"}}
    for key in ("spacing", "patch_size"):
        if not (isinstance(config.get(key), list) and len(config[key]) == 3):
            raise ValueError(f"{where}: configuration {name!r} needs a 3D {key} (2D configurations are not supported)")
    return config


def network_from_plans(config: dict[str, Any], where: Path) -> tuple[str, dict[str, Any]]:
    """(allow-listed class name, JSON keyword arguments) for the configuration's network."""
    arch = config.get("architecture")
    if isinstance(arch, dict):  # plans written by nnU-Net >= 2.4
        name = _network_class(arch.get("network_class_name"), where)
        kwargs = dict(arch.get("arch_kwargs") or {})
        for key in (arch.get("_kw_requires_import") or []):
            kwargs[key] = _op_name(kwargs.get(key), key, where)
        return name, kwargs
    return _old_plans_network(config, where)


def _network_class(value: Any, where: Path) -> str:
    if value not in NETWORK_CLASSES:
        raise ValueError(
            f"{where}: plans.json names network class {value!r}; FreqAdvSegment builds only "
            f"{', '.join(sorted(set(NETWORK_CLASSES.values())))} and never imports a class named in a file"
        )
    return NETWORK_CLASSES[value]


def _op_name(value: Any, key: str, where: Path) -> str | None:
    if value is None or value in OPS:
        return value
    raise ValueError(
        f"{where}: plans.json gives {key} = {value!r}, which is not one of the layer classes "
        f"FreqAdvSegment allows ({', '.join(sorted(OPS))}); it never imports a class named in a file"
    )


def _old_plans_network(config: dict[str, Any], where: Path) -> tuple[str, dict[str, Any]]:
    """nnU-Net < 2.4 plans: the network described by UNet_* fields (get_network_from_plans)."""
    try:
        name = _network_class(config["UNet_class_name"], where)
        kernels = config["conv_kernel_sizes"]
        stages = len(kernels)
        base, top = config["UNet_base_num_features"], config["unet_max_num_features"]
        blocks = "n_blocks_per_stage" if name == "ResidualEncoderUNet" else "n_conv_per_stage"
        kwargs = {
            "n_stages": stages,
            "features_per_stage": [min(base * 2**i, top) for i in range(stages)],
            "conv_op": "torch.nn.Conv3d",
            "kernel_sizes": kernels,
            "strides": config["pool_op_kernel_sizes"],
            blocks: config["n_conv_per_stage_encoder"],
            "n_conv_per_stage_decoder": config["n_conv_per_stage_decoder"],
            "conv_bias": True,
            "norm_op": "torch.nn.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-5, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        }
    except (KeyError, TypeError) as error:
        raise ValueError(f"{where}: plans.json lacks the network field {error} (neither new nor old nnU-Net plans)") from None
    return name, kwargs


def _label_names(dataset: dict[str, Any], where: Path) -> tuple[str, ...]:
    labels = dataset.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise ValueError(f"{where}: dataset.json has no \"labels\" object")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in labels.values()):
        raise ValueError(
            f"{where}: dataset.json defines region labels (lists of values); region-based nnU-Net "
            "models (sigmoid outputs) are not supported"
        )
    by_value = {v: str(k) for k, v in labels.items()}
    if sorted(by_value) != list(range(len(by_value))):
        raise ValueError(f"{where}: dataset.json label values must be 0..N-1, got {sorted(by_value)}")
    return tuple(by_value[i] for i in range(len(by_value)))


def _check_channels(dataset: dict[str, Any], config: dict[str, Any], where: Path) -> int:
    channels = dataset.get("channel_names") or dataset.get("modality") or {"0": "CT"}
    schemes = config.get("normalization_schemes") or ["CTNormalization"]
    if len(channels) != 1:
        raise ValueError(
            f"{where}: this nnU-Net model takes {len(channels)} input channels ({', '.join(map(str, channels.values()))}); "
            "FreqAdvSegment feeds one CT volume"
        )
    if schemes[0] != "CTNormalization":
        raise ValueError(
            f"{where}: this nnU-Net model normalises with {schemes[0]} (channel "
            f"{next(iter(channels.values()))!r}); FreqAdvSegment supports CT models (CTNormalization) only"
        )
    return 1


def _ct_normalisation(plans: dict[str, Any], where: Path) -> tuple[tuple[float, float], float, float]:
    try:
        props = plans["foreground_intensity_properties_per_channel"]["0"]
        low, high = float(props["percentile_00_5"]), float(props["percentile_99_5"])
        mean, std = float(props["mean"]), float(props["std"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{where}: plans.json lacks the CT intensity properties ({error})") from None
    if not low < high:
        raise ValueError(f"{where}: plans.json's CT percentiles are not increasing ({low}, {high})")
    scale, shift = zscore_after_window((low, high), mean, std)
    return (low, high), scale, shift


def _transpose(plans: dict[str, Any], where: Path) -> list[int]:
    value = plans.get("transpose_forward", [0, 1, 2])
    if sorted(value) != [0, 1, 2]:
        raise ValueError(f"{where}: plans.json transpose_forward {value!r} is not a permutation of 0, 1, 2")
    return [int(v) for v in value]


def _to_xyz(values: list[Any], transpose: list[int]) -> tuple[float, float, float]:
    """Network-axis values (nnU-Net's transposed [z, y, x]) in our (x, y, z) order."""
    out = [0.0, 0.0, 0.0]
    for axis, zyx in enumerate(transpose):
        out[2 - zyx] = float(values[axis])
    return tuple(out)


# ---- folds and checkpoints


def _configuration_from_name(path: Path) -> str:
    # nnU-Net names the folder TRAINER__PLANS__CONFIGURATION.
    parts = path.name.split("__")
    return parts[2] if len(parts) == 3 else DEFAULT_CONFIGURATION


def _fold_folders(path: Path, folds: tuple[int, ...] | None) -> list[Path]:
    present = sorted(p for p in path.iterdir() if p.is_dir() and _FOLD.match(p.name) and (p / CHECKPOINT).is_file())
    if folds is not None:
        wanted = [path / f"fold_{f}" for f in folds]
        missing = [p.name for p in wanted if not (p / CHECKPOINT).is_file()]
        if missing:
            raise FileNotFoundError(f"{path}: no {CHECKPOINT} in {', '.join(missing)}; folds present: {[p.name for p in present]}")
        return wanted
    if not present:
        raise FileNotFoundError(f"{path}: no fold_*/{CHECKPOINT} inside; this nnU-Net folder holds no trained weights")
    return present


def _read_checkpoint(path: Path) -> tuple[StateDict, Any]:
    """(network_weights, inference_allowed_mirroring_axes) of one fold's checkpoint."""
    content = read_torch(path)
    if not isinstance(content, dict) or "network_weights" not in content:
        raise ValueError(f"{path} is not an nnU-Net checkpoint (no network_weights inside)")
    weights = tensors_only(content["network_weights"], path, " under network_weights")
    mirror = content.get("inference_allowed_mirroring_axes")
    if "NoMirroring" in str(content.get("trainer_name", "")):
        mirror = None
    return weights, mirror


def _mirror_axes(checkpoints: list[tuple[StateDict, Any]]) -> list[int] | None:
    # nnUNetPredictor takes the axes from the first checkpoint.
    axes = checkpoints[0][1]
    if axes is None:
        return None
    return sorted(int(a) for a in axes if int(a) in (0, 1, 2))


# ---- the module


def build_nnunet(spec: ModelSpec) -> torch.nn.Module:
    """NnUNetEnsemble for an "nnunet" spec: the folds' networks, TTA and axis order."""
    args = spec.arch_args
    try:
        from dynamic_network_architectures.architectures import unet
    except ImportError:
        raise ValueError(f"nnU-Net models need dynamic-network-architectures: {INSTALL_HINT}") from None
    classes = {"PlainConvUNet": unet.PlainConvUNet, "ResidualEncoderUNet": unet.ResidualEncoderUNet}
    name = _network_class(args["network_class"], Path("the model spec"))
    kwargs = _live_kwargs(dict(args["network_kwargs"]), classes[name])
    kwargs.update(input_channels=args["in_channels"], num_classes=args["out_channels"], deep_supervision=False)
    try:
        nets = [classes[name](**kwargs) for _ in range(int(args.get("models", 1)))]
    except (TypeError, ValueError, AssertionError) as error:
        raise ValueError(f"could not build nnU-Net {name} from the plans: {error}") from None
    return NnUNetEnsemble(nets, args.get("mirror_axes"), args.get("transpose_forward", (0, 1, 2))).eval()


def _live_kwargs(kwargs: dict[str, Any], cls: type) -> dict[str, Any]:
    """JSON kwargs -> constructor kwargs: op names through the allow-list, tuples to lists."""
    accepted = set(inspect.signature(cls).parameters)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(f"nnU-Net {cls.__name__} does not take argument(s) {unknown} given in the plans")
    out = {k: _plain(v) for k, v in kwargs.items()}
    for key in OP_KEYS:
        if key in out:
            value = _op_name(out[key], key, Path("the model spec"))
            out[key] = OPS[value] if value is not None else None
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class NnUNetEnsemble(torch.nn.Module):
    """Folds' nnU-Net networks behind FreqAdvSegment's axis order, with mirroring TTA.

    forward: x [B, C, X, Y, Z] (image index axes i, j, k) -> logits [B, K, X, Y, Z], the mean over
    folds and mirrorings of each network's logits, as nnUNetPredictor averages them.
    """

    def __init__(self, nets: list[torch.nn.Module], mirror_axes: Any, transpose_forward: Any) -> None:
        super().__init__()
        self.folds = torch.nn.ModuleList(nets)
        # nnU-Net's array is [z, y, x] = our dims (4, 3, 2), then permuted by transpose_forward.
        self.to_net = [0, 1] + [4 - int(t) for t in transpose_forward]
        self.from_net = [self.to_net.index(d) for d in range(5)]
        axes = [2 + int(a) for a in (mirror_axes or [])]
        self.flips = [()] + [c for n in range(1, len(axes) + 1) for c in itertools.combinations(axes, n)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(*self.to_net)
        total = 0
        for net in self.folds:
            for dims in self.flips:
                total = total + (net(x.flip(dims)).flip(dims) if dims else net(x))
        return (total / (len(self.folds) * len(self.flips))).permute(*self.from_net)
