"""Family: a MONAI model-zoo bundle folder (configs/inference.json or .yaml + models/model.pt).

Right or refused. Deliberately NOT monai.bundle.ConfigParser: a bundle config can name any
Python callable and run "$" expressions, so instantiating it would execute whatever the bundle
says. Here the config is only read (JSON, or YAML with yaml.safe_load); "@id" references are
followed to plain values; the network must be one of the MONAI networks the factory builds; and
the bundle's own preprocessing and inferer settings become the spec. Anything this cannot
represent exactly (an expression, an unknown transform, image-statistics normalisation, MRI,
several input channels) is refused with one line saying what, never replaced by a default.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...organs import BTCV_LABELS
from ..normalize import affine_after_window
from ..spec import ModelSpec
from .common import LoadOptions, Source, generic_labels, read_json, read_torch
from .monai_checkpoint import unwrap

NAME = "bundle"
DESCRIPTION = "MONAI bundle folder (configs/inference.json|yaml + models/model.pt)"

# Class name at the end of a bundle's "_target_" -> our arch name.
BUNDLE_TARGETS: dict[str, str] = {
    "UNETR": "unetr",
    "SwinUNETR": "swinunetr",
    "UNet": "unet",
    "SegResNet": "segresnet",
    "DynUNet": "dynunet",
    "SegResNetDS": "segresnetds",
}
CONFIG_NAMES = ("inference.json", "inference.yaml", "inference.yml")
METADATA = Path("configs") / "metadata.json"
WEIGHTS = Path("models") / "model.pt"

# Transforms that change nothing the model sees beyond what prepare() already does.
NEUTRAL = {"LoadImage", "EnsureChannelFirst", "AddChannel", "EnsureType", "ToTensor", "CastToType",
           "ToDevice", "Identity"}
# Restricts which voxels the sliding window visits; the voxels it does visit are unchanged.
REGION_ONLY = {"CropForeground"}
STATISTICS = {"NormalizeIntensity", "ScaleIntensity", "ScaleIntensityRangePercentiles", "StdShiftIntensity"}
CT_MODALITIES = {"CT", "CT IMAGE", "COMPUTED TOMOGRAPHY"}


class Refused(ValueError):
    """A bundle FreqAdvSegment cannot represent exactly."""


def detect(path: Path) -> bool:
    """A folder with a configs/ folder inside."""
    return path.is_dir() and (path / "configs").is_dir()


def read(path: Path, options: LoadOptions) -> Source:
    """Spec from the config (unless options.spec is given) and weights from models/model.pt."""
    spec = options.spec or bundle_spec(path)  # first: its errors say more than missing weights
    weights = bundle_weights(path)
    state, _ = unwrap(read_torch(weights), weights)
    return Source(spec, state, NAME)


def bundle_weights(folder: Path) -> Path:
    """The bundle's PyTorch weights file (models/model.pt)."""
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(
            f"MONAI bundle {folder} has no {WEIGHTS}: download the bundle with its weights "
            "(python -m monai.bundle download NAME --bundle_dir DIR)"
        )
    return weights


def bundle_spec(folder: Path) -> ModelSpec:
    """ModelSpec from the bundle's inference config and metadata, or Refused (a ValueError)."""
    config = read_config(folder)
    refs = References(config, folder)
    network = config.get("network_def")
    if isinstance(network, str) and network.startswith("@"):
        network = refs.resolve_once(network, "network_def")
    if not isinstance(network, dict) or not isinstance(network.get("_target_"), str):
        raise Refused(f"{folder}: the inference config has no plain \"network_def\" with a \"_target_\"; pass --spec")
    arch = _arch_of(network["_target_"], folder)  # before anything else is read: a fixed list
    args = {k: refs.resolve(v, k) for k, v in network.items() if not k.startswith("_")}
    settings: dict[str, Any] = preprocessing_settings(refs, folder)
    settings.update(inferer_settings(refs, folder))
    args = _map_args(arch, args, settings, folder)
    _check_input(folder, args)
    return ModelSpec(arch=arch, arch_args=args, label_names=_label_names(folder, args["out_channels"]), **settings)


def read_config(folder: Path) -> dict[str, Any]:
    """configs/inference.json, or .yaml read with yaml.safe_load (plain data, no tags)."""
    for name in CONFIG_NAMES:
        path = folder / "configs" / name
        if path.is_file():
            return read_json(path, "bundle config") if name.endswith(".json") else _read_yaml(path)
    raise Refused(f"{folder} is not a MONAI bundle FreqAdvSegment can read: no configs/inference.json or .yaml")


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"could not read bundle config {path}: {' '.join(str(error).split())}") from None
    if not isinstance(data, dict):
        raise ValueError(f"bundle config {path} must hold a mapping")
    return data


class References:
    """Follows MONAI config references ("@id", "@id::key", "@id#0") to plain values."""

    # Values produced while resolving, all references of one bundle together. A real bundle's
    # settings are a few hundred; nested "@" lists multiply (a 967-byte config expanded to 4.3 GB).
    MAX_NODES = 100_000

    def __init__(self, config: dict[str, Any], folder: Path) -> None:
        self.config, self.folder = config, folder
        self._nodes = 0

    def resolve(self, value: Any, where: str, depth: int = 0) -> Any:
        if depth > 32:
            raise Refused(f"bundle {self.folder}: references around {where!r} loop; pass --spec")
        self._nodes += 1
        if self._nodes > self.MAX_NODES:
            raise Refused(f"bundle {self.folder}: its \"@\" references expand to more than {self.MAX_NODES:,} "
                          f"values (around {where!r}), far more than any network's settings; pass --spec")
        if isinstance(value, str) and value.startswith("@"):
            return self.resolve(self._lookup(value[1:], where), where, depth + 1)
        if isinstance(value, str) and value[:1] in ("$", "%"):
            raise Refused(
                f"bundle {self.folder}: {where} is the expression {value!r}, which FreqAdvSegment does "
                "not evaluate (it would run code from the bundle); pass --spec for this bundle"
            )
        if isinstance(value, list):
            return [self.resolve(v, f"{where}[{i}]", depth) for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: self.resolve(v, f"{where}.{k}", depth) for k, v in value.items()}
        return value

    def resolve_once(self, value: str, where: str) -> Any:
        """The node an "@id" string refers to (not resolved further)."""
        return self._lookup(value[1:], where)

    def _lookup(self, ident: str, where: str) -> Any:
        node: Any = self.config
        for part in ident.replace("#", "::").split("::"):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise Refused(f"bundle {self.folder}: {where} refers to @{ident}, which the config does not define")
        return node


def _arch_of(target: str, folder: Path) -> str:
    name = target.rsplit(".", 1)[-1]
    if name not in BUNDLE_TARGETS:
        raise Refused(
            f"bundle {folder} uses network {target!r}; FreqAdvSegment builds only "
            f"{', '.join(BUNDLE_TARGETS)} and never instantiates other bundle targets"
        )
    return BUNDLE_TARGETS[name]


def _transforms(node: Any, refs: References, where: str, depth: int = 0) -> Iterator[dict[str, Any]]:
    """Every transform (a dict with a "_target_") in a preprocessing tree, in file order.

    "@id" references are followed; an expression where a transform or a list of transforms
    belongs is refused, since the transforms it would produce are unknown. Arguments of the
    transforms are left as they are: only the handlers resolve the ones they read.
    """
    if isinstance(node, str) and node.startswith("@") and depth < 32:
        yield from _transforms(refs.resolve_once(node, where), refs, where, depth + 1)
    elif isinstance(node, str) and node[:1] in ("$", "%"):
        raise Refused(
            f"bundle {refs.folder}: {where} is the expression {node!r}; FreqAdvSegment does not "
            "evaluate bundle code, so it cannot tell which transforms run; pass --spec"
        )
    elif isinstance(node, dict):
        yield node
        if _short(node.get("_target_", "")) == "Compose":
            yield from _transforms(node.get("transforms", []), refs, f"{where}.transforms", depth)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _transforms(value, refs, f"{where}[{index}]", depth)


def _short(target: str) -> str:
    name = target.rsplit(".", 1)[-1]
    return name[:-1] if name.endswith("d") and name[:-1] else name  # Spacingd -> Spacing


def preprocessing_settings(refs: References, folder: Path) -> dict[str, Any]:
    """ModelSpec fields from config["preprocessing"]: orientation, spacing, window, normalisation."""
    if "preprocessing" not in refs.config:
        raise Refused(f"bundle {folder}: the inference config has no \"preprocessing\"; pass --spec")
    found: dict[str, Any] = {}
    for node in _transforms(refs.config["preprocessing"], refs, "preprocessing"):
        if not isinstance(node.get("_target_"), str):
            raise Refused(f"bundle {folder}: a preprocessing entry has no \"_target_\": {node!r}")
        name = _short(node["_target_"])
        if name == "Compose" or name in NEUTRAL or name in REGION_ONLY:
            continue
        if name in STATISTICS:
            raise Refused(
                f"bundle {folder}: its preprocessing uses {node['_target_']}, which normalises with "
                "each image's own statistics; FreqAdvSegment cannot put that inside the attacked "
                "model exactly, so it refuses this bundle rather than substitute a fixed window"
            )
        handler = _HANDLERS.get(name)
        if handler is None:
            raise Refused(
                f"bundle {folder}: its preprocessing uses {node['_target_']}, which FreqAdvSegment "
                f"cannot represent (it reproduces {', '.join(sorted(_HANDLERS))}); pass --spec to override"
            )
        node = {k: refs.resolve(v, f"{node['_target_']}.{k}") for k, v in node.items() if k in _READS[name]}
        for key, value in handler(node, folder).items():
            if key in found:
                raise Refused(f"bundle {folder}: its preprocessing sets {key} twice; FreqAdvSegment applies it once")
            found[key] = value
    if "intensity_window" not in found:
        raise Refused(
            f"bundle {folder}: its preprocessing has no ScaleIntensityRange (a CT window); "
            "FreqAdvSegment cannot tell how this model expects its intensities"
        )
    return found


def _orientation(node: dict[str, Any], folder: Path) -> dict[str, Any]:
    axcodes = node.get("axcodes")
    if not isinstance(axcodes, str):
        raise Refused(f"bundle {folder}: Orientation without plain axcodes ({axcodes!r})")
    return {"orientation": axcodes}


def _spacing(node: dict[str, Any], folder: Path) -> dict[str, Any]:
    pixdim = node.get("pixdim")
    pixdim = [pixdim] * 3 if isinstance(pixdim, (int, float)) else pixdim
    if not (isinstance(pixdim, list) and len(pixdim) == 3 and all(isinstance(v, (int, float)) and v > 0 for v in pixdim)):
        raise Refused(f"bundle {folder}: Spacing pixdim {node.get('pixdim')!r} is not three positive sizes")
    mode = node.get("mode", "bilinear")
    mode = mode[0] if isinstance(mode, list) and mode else mode
    if mode not in ("bilinear", 1, "linear"):
        raise Refused(f"bundle {folder}: Spacing mode {mode!r} for the image; FreqAdvSegment resamples linearly")
    return {"target_spacing": tuple(float(v) for v in pixdim)}


def _scale_range(node: dict[str, Any], folder: Path) -> dict[str, Any]:
    values = {k: node.get(k, default) for k, default in (("a_min", None), ("a_max", None), ("b_min", None), ("b_max", None))}
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values.values()):
        raise Refused(f"bundle {folder}: ScaleIntensityRange needs plain a_min, a_max, b_min, b_max, got {values}")
    if node.get("clip", False) is not True:
        raise Refused(
            f"bundle {folder}: ScaleIntensityRange without clip=True passes HU outside the window "
            "through unclipped, which a [0, 1] attack input cannot represent exactly"
        )
    window = (float(values["a_min"]), float(values["a_max"]))
    scale, shift = affine_after_window(window, float(values["b_min"]), float(values["b_max"]))
    return {"intensity_window": window, "input_scale": scale, "input_shift": shift}


_HANDLERS = {"Orientation": _orientation, "Spacing": _spacing, "ScaleIntensityRange": _scale_range}
# The arguments each handler reads (only those are resolved, so an unrelated "$" value such as
# EnsureTyped's device does not block a bundle).
_READS = {
    "Orientation": {"_target_", "axcodes"},
    "Spacing": {"_target_", "pixdim", "mode"},
    "ScaleIntensityRange": {"_target_", "a_min", "a_max", "b_min", "b_max", "clip"},
}


def inferer_settings(refs: References, folder: Path) -> dict[str, Any]:
    """roi_size and inferer (overlap, sw_batch_size, mode) from config["inferer"]."""
    node = refs.config.get("inferer")
    node = refs.resolve_once(node, "inferer") if isinstance(node, str) and node.startswith("@") else node
    target = _short(node.get("_target_", "")) if isinstance(node, dict) else ""
    if target != "SlidingWindowInferer":
        raise Refused(f"bundle {folder}: inferer {target or node!r} is not a SlidingWindowInferer; pass --spec")
    node = {k: refs.resolve(node[k], f"inferer.{k}") for k in ("roi_size", "overlap", "sw_batch_size", "mode") if k in node}
    out: dict[str, Any] = {}
    roi = node.get("roi_size")
    if roi is not None:
        out["roi_size"] = tuple(roi) if isinstance(roi, list) else (roi,) * 3
    inferer = {k: node[k] for k in ("overlap", "sw_batch_size", "mode") if k in node}
    if inferer:
        out["inferer"] = inferer
    return out


def _map_args(arch: str, args: dict[str, Any], settings: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Bundle-era argument names -> MONAI 1.6 ones, and sizes -> roi_size."""
    if args.pop("spatial_dims", 3) != 3:
        raise Refused(f"bundle {folder}: its network is not 3D; FreqAdvSegment segments volumes only")
    if arch == "segresnet":
        args.setdefault("out_channels", 2)  # SegResNet's own default; the others require it
    if "out_channels" not in args:
        raise Refused(f"bundle {folder}: its network_def has no out_channels; pass --spec")
    if arch == "unetr":
        # MONAI < 1.3 called it pos_embed; its default was "conv" then and now.
        args.setdefault("proj_type", args.pop("pos_embed", "conv"))
        if "img_size" in args:
            # UNETR takes patches of exactly img_size, whatever the inferer config says.
            settings["roi_size"] = args["img_size"] = _triple(args["img_size"])
    if arch == "swinunetr" and "img_size" in args:
        # MONAI 1.5 removed SwinUNETR's img_size (it only checked input sizes).
        settings.setdefault("roi_size", _triple(args.pop("img_size")))
    return args


def _triple(size: Any) -> tuple[int, int, int]:
    return (size,) * 3 if isinstance(size, int) else tuple(size)


def _check_input(folder: Path, args: dict[str, Any]) -> None:
    """Refuse models that do not take one CT channel."""
    channels = args.get("in_channels", 1)
    if channels != 1:
        raise Refused(
            f"bundle {folder}: its network takes {channels} input channels (several images per case); "
            "FreqAdvSegment feeds one CT volume, so it cannot run this bundle"
        )
    modality = _metadata_modality(folder)
    if modality is not None and modality.upper() not in CT_MODALITIES:
        raise Refused(
            f"bundle {folder}: its metadata says the input modality is {modality!r}; FreqAdvSegment "
            "attacks CT models (HU windows), so it cannot feed this bundle"
        )


def _metadata(folder: Path) -> dict[str, Any] | None:
    path = folder / METADATA
    if not path.is_file():
        return None
    try:
        return read_json(path, "bundle metadata")
    except ValueError:
        return None  # labels and modality are read best-effort; the config decides the rest


def _metadata_modality(folder: Path) -> str | None:
    try:
        image = next(iter(_metadata(folder)["network_data_format"]["inputs"].values()))
        modality = image.get("modality")
    except (TypeError, KeyError, StopIteration, AttributeError):
        return None
    return modality if isinstance(modality, str) else None


def _label_names(folder: Path, out_channels: int) -> tuple[str, ...]:
    """Names from metadata.json's pred channel_def; else BTCV's if 14, else generic ones."""
    try:
        outputs = _metadata(folder)["network_data_format"]["outputs"]
        channel_def = next(iter(outputs.values()))["channel_def"]
        names = tuple(str(channel_def[str(i)]) for i in range(len(channel_def)))
    except (TypeError, KeyError, StopIteration, AttributeError):
        names = ()
    if names and len(names) == out_channels:
        return names
    if out_channels == len(BTCV_LABELS):
        return BTCV_LABELS
    return generic_labels(out_channels)
