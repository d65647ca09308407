"""Read a MONAI bundle folder (configs/ + models/model.pt) into a ModelSpec and a weights path.

Deliberately NOT monai.bundle.ConfigParser: a bundle config can name any Python callable and
run "$" expressions, so instantiating it would execute whatever the bundle says. Here the JSON is
only read; the network must be one of the four known MONAI networks, and its arguments must be
plain values (or "@name" references to plain top-level values).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..labels import BTCV_LABELS
from .spec import ModelSpec

# Class name at the end of a bundle's "_target_" -> our arch name.
BUNDLE_TARGETS: dict[str, str] = {
    "UNETR": "unetr",
    "SwinUNETR": "swinunetr",
    "UNet": "unet",
    "SegResNet": "segresnet",
}

INFERENCE_CONFIG = Path("configs") / "inference.json"
METADATA = Path("configs") / "metadata.json"
WEIGHTS = Path("models") / "model.pt"


def is_bundle(path: Path) -> bool:
    """True if path is a folder that looks like a MONAI bundle."""
    return path.is_dir() and (path / "configs").is_dir()


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
    """ModelSpec from the bundle's configs/inference.json (+ configs/metadata.json labels)."""
    config = _read_json(folder / INFERENCE_CONFIG, folder)
    network = config.get("network_def")
    if not isinstance(network, dict) or not isinstance(network.get("_target_"), str):
        raise ValueError(
            f'{folder / INFERENCE_CONFIG} has no "network_def" with a "_target_"; pass a '
            "ModelSpec (or --arch) to load this bundle's weights"
        )
    arch = _arch_of(network["_target_"], folder)
    args = {k: _literal(v, config, k) for k, v in network.items() if not k.startswith("_")}
    settings = _preprocessing(config)
    args = _map_args(arch, args, settings)
    return ModelSpec(
        arch=arch,
        arch_args=args,
        label_names=_label_names(folder, args["out_channels"]),
        **settings,
    )


def _read_json(path: Path, folder: Path) -> dict[str, Any]:
    if not path.is_file():
        yaml = path.with_suffix(".yaml")
        extra = f" (found {yaml.name}: YAML configs are not supported)" if yaml.is_file() else ""
        raise ValueError(
            f"{folder} is not a MONAI bundle FreqAdvSegment can read: no {INFERENCE_CONFIG}"
            f"{extra}; pass a ModelSpec (or --arch) and the models/model.pt file instead"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"could not read bundle config {path}: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"bundle config {path} must hold a JSON object")
    return data


def _arch_of(target: str, folder: Path) -> str:
    name = target.rsplit(".", 1)[-1]
    if name not in BUNDLE_TARGETS:
        raise ValueError(
            f"bundle {folder} uses network {target!r}; FreqAdvSegment builds only "
            f"{', '.join(BUNDLE_TARGETS)} and never instantiates other bundle targets"
        )
    return BUNDLE_TARGETS[name]


def _literal(value: Any, config: dict[str, Any], name: str) -> Any:
    """A plain config value, following "@id" references to top-level plain values."""
    if isinstance(value, str) and value.startswith("@") and value[1:] in config:
        return _literal(config[value[1:]], config, name)
    if isinstance(value, str) and value[:1] in ("$", "@", "%"):
        raise ValueError(
            f"bundle network argument {name!r} is the expression {value!r}, which FreqAdvSegment "
            "does not evaluate; pass a ModelSpec (or --arch) for this bundle"
        )
    if isinstance(value, list):
        return [_literal(v, config, name) for v in value]
    if isinstance(value, dict):
        return {k: _literal(v, config, name) for k, v in value.items()}
    return value


def _map_args(arch: str, args: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """Bundle-era argument names -> MONAI 1.6 ones, and sizes -> roi_size."""
    if args.pop("spatial_dims", 3) != 3:
        raise ValueError("this bundle's network is not 3D; FreqAdvSegment segments volumes only")
    if arch == "segresnet":
        args.setdefault("out_channels", 2)  # SegResNet's own default; the others require it
    if "out_channels" not in args:
        raise ValueError("this bundle's network_def has no out_channels; pass a ModelSpec")
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


def _transforms(node: Any) -> Iterator[dict[str, Any]]:
    """Every dict with a "_target_" in the config, depth first, in file order."""
    if isinstance(node, dict):
        if isinstance(node.get("_target_"), str):
            yield node
        for value in node.values():
            yield from _transforms(value)
    elif isinstance(node, list):
        for value in node:
            yield from _transforms(value)


def _plain(*values: Any) -> bool:
    return all(not (isinstance(v, str) and v[:1] in "$@%") for v in values)


def _preprocessing(config: dict[str, Any]) -> dict[str, Any]:
    """Spacing, intensity window, orientation and roi size from the inference config, if plain.

    Only the first occurrence of each is used; anything given as an expression is skipped and
    the ModelSpec default stays.
    """
    found: dict[str, Any] = {}
    for node in _transforms(config):
        name = node["_target_"].rsplit(".", 1)[-1].rstrip("d")  # Spacingd -> Spacing
        pixdim, axcodes = node.get("pixdim"), node.get("axcodes")
        if name == "Spacing" and isinstance(pixdim, list):
            found.setdefault("target_spacing", tuple(pixdim))
        elif name == "ScaleIntensityRange" and _window_maps_to_unit(node):
            found.setdefault("intensity_window", (node["a_min"], node["a_max"]))
        elif name == "Orientation" and isinstance(axcodes, str) and _plain(axcodes):
            found.setdefault("orientation", axcodes)
        elif name == "SlidingWindowInferer" and isinstance(node.get("roi_size"), list):
            found.setdefault("roi_size", tuple(node["roi_size"]))
    return found


def _window_maps_to_unit(node: dict[str, Any]) -> bool:
    # ModelSpec's window always maps to [0, 1]; other output ranges cannot be represented.
    values = [node.get(k) for k in ("a_min", "a_max")]
    unit = node.get("b_min", 0.0) == 0.0 and node.get("b_max", 1.0) == 1.0
    return unit and all(isinstance(v, (int, float)) for v in values)


def _label_names(folder: Path, out_channels: int) -> tuple[str, ...]:
    """Names from metadata.json's pred channel_def; else BTCV's if 14, else generic ones."""
    names = _metadata_names(folder / METADATA)
    if names and len(names) == out_channels:
        return names
    if out_channels == len(BTCV_LABELS):
        return BTCV_LABELS
    return ("background",) + tuple(f"label {i}" for i in range(1, out_channels))


def _metadata_names(path: Path) -> tuple[str, ...] | None:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        outputs = meta["network_data_format"]["outputs"]
        channel_def = next(iter(outputs.values()))["channel_def"]
        return tuple(str(channel_def[str(i)]) for i in range(len(channel_def)))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, StopIteration):
        # Labels are a nicety; a bundle without usable metadata still loads.
        return None
