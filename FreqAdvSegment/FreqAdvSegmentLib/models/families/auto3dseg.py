"""Family: an Auto3DSeg model.pt ({state_dict, config{network, normalize_mode, ...}}), as
SlicerMONAIAuto3DSeg ships them, with label names from a labels.csv beside it.

Read with weights_only=True. The config's network must be a MONAI network the factory builds
(SegResNetDS, SegResNet, DynUNet, ...). Normalisation modes "range" and "ct" (ScaleIntensityRange
of intensity_bounds to [-1, 1], unclipped, then a sigmoid) go inside the module as a sigmoid of an
affine map. Because the attack input is clipped to its window, the window is the bounds widened by
four widths on each side: beyond that the sigmoid is within 1.3e-4 of saturation. Image-statistics
modes (meanstd, mri, pet) are refused.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from .bundle import BUNDLE_TARGETS
from ..spec import ModelSpec
from .common import LoadOptions, Source, generic_labels, read_torch, tensors_only

NAME = "auto3dseg"
DESCRIPTION = "Auto3DSeg model.pt (state_dict + config; labels.csv beside it)"
SIGMOID_MODES = ("range", "ct")
WIDEN = 4.0  # window = bounds widened by this many widths on each side (see module docstring)
_NORM_ALIASES = {"instance_nvfuser": "instance"}  # a fused kernel of the same InstanceNorm


def detect(path: Path) -> bool:
    """A .pt file holding both "state_dict" and a "config" with a "network"."""
    if not (path.is_file() and path.suffix == ".pt"):
        return False
    try:
        content = read_torch(path)
    except ValueError:
        return False  # the plain-checkpoint family will report why it cannot be read
    config = content.get("config") if isinstance(content, dict) else None
    return isinstance(config, dict) and isinstance(config.get("network"), dict) and "state_dict" in content


def read(path: Path, options: LoadOptions) -> Source:
    content = read_torch(path)
    state = tensors_only(content["state_dict"], path, " under state_dict")
    spec = options.spec or auto3dseg_spec(content["config"], path)
    return Source(spec, state, NAME)


def auto3dseg_spec(config: dict[str, Any], path: Path) -> ModelSpec:
    """ModelSpec from an Auto3DSeg config: network, normalisation, resolution, labels."""
    network = dict(config["network"])
    target = str(network.pop("_target_", "")).rsplit(".", 1)[-1]
    if target not in BUNDLE_TARGETS:
        raise ValueError(f"{path}: Auto3DSeg network {target!r} is not one FreqAdvSegment builds ({', '.join(BUNDLE_TARGETS)})")
    if network.pop("spatial_dims", 3) != 3:
        raise ValueError(f"{path}: the Auto3DSeg network is not 3D")
    if isinstance(network.get("norm"), str):
        network["norm"] = _NORM_ALIASES.get(network["norm"].lower(), network["norm"])
    network.setdefault("in_channels", int(config.get("input_channels", 1)))
    network.setdefault("out_channels", int(config.get("output_classes", 2)))
    if network["in_channels"] != 1:
        raise ValueError(f"{path}: this Auto3DSeg model takes {network['in_channels']} input channels; FreqAdvSegment feeds one CT volume")
    if config.get("sigmoid"):
        raise ValueError(f"{path}: this Auto3DSeg model has sigmoid (multi-label) outputs; FreqAdvSegment needs softmax label maps")
    window, scale, shift = _normalisation(config, path)
    spacing = config.get("resample_resolution")
    if not config.get("resample", True) or not isinstance(spacing, (list, tuple)):
        raise ValueError(f"{path}: this Auto3DSeg model does not resample to a fixed resolution; FreqAdvSegment needs one")
    return ModelSpec(
        arch=BUNDLE_TARGETS[target],
        arch_args=network,
        label_names=_labels(path, network["out_channels"]),
        intensity_window=window,
        input_scale=scale,
        input_shift=shift,
        input_activation="sigmoid",
        target_spacing=tuple(float(s) for s in spacing),
        roi_size=tuple(int(r) for r in config.get("roi_size", (96, 96, 96))),
        orientation="RAS" if config.get("orientation_ras", True) else "native",
    )


def _normalisation(config: dict[str, Any], path: Path) -> tuple[tuple[float, float], float, float]:
    mode = config.get("normalize_mode", "range")
    if mode not in SIGMOID_MODES:
        raise ValueError(
            f"{path}: Auto3DSeg normalize_mode {mode!r} depends on each image's statistics or is not "
            f"a CT mode; FreqAdvSegment represents {', '.join(SIGMOID_MODES)} exactly"
        )
    try:
        low, high = (float(v) for v in config["intensity_bounds"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path}: Auto3DSeg normalize_mode {mode!r} needs intensity_bounds [low, high]") from None
    width = high - low
    window = (low - WIDEN * width, high + WIDEN * width)
    # z = 2 (hu - low) / width - 1 for hu = window_low + x * window_width.
    scale = 2.0 * (window[1] - window[0]) / width
    shift = 2.0 * (window[0] - low) / width - 1.0
    return window, scale, shift


def _labels(path: Path, count: int) -> tuple[str, ...]:
    """Names from labels.csv (columns value/name or name/value, header optional) beside model.pt."""
    csv_path = next((p for p in (path.parent / "labels.csv", path.parent.parent / "labels.csv") if p.is_file()), None)
    names: dict[int, str] = {0: "background"}
    if csv_path is not None:
        with open(csv_path, newline="", encoding="utf-8") as file:
            for row in csv.reader(file):
                cells = [c.strip() for c in row]
                value = next((int(c) for c in cells if c.isdigit()), None)
                name = next((c for c in cells if c and not c.isdigit()), None)
                if value is not None and name is not None:
                    names[value] = name
    if all(i in names for i in range(count)):
        return tuple(names[i] for i in range(count))
    return generic_labels(count)
