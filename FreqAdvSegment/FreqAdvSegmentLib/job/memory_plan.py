"""A memory plan before any heavy work: the run's peak, estimated from shapes, against what is free.

A run that cannot fit should refuse at once, with the figure and what to lower, rather than fail
after minutes inside an allocator (``DefaultCPUAllocator: can't allocate memory``) or be killed.

The estimate (bytes, float32 unless said):

* the input on its own grid: read (its pixel type); the label maps there (clean, ground truth,
  attacked, body mask: uint8) and the perturbation in HU (float32, mapped back once per attack and
  reused by the budget and the writers); the largest passing copy (the adversarial CT in float32
  and its image while it is written): ``N * (bytes + 4 * 4)``. Metrics, budget and label-change
  maps work on views, boxes and slabs, so they add no full-grid float copy;
* the volume on the model grid (padded to the ROI): input, labels (int64), the blended logits and
  the blend weights, and their float copy: ``M * (4 + 8 + 4 + 8 K)``;
* attack state when attacking: clean, adversarial, perturbation, gradient, best-so-far and the
  target: ``6 * 4 * M``;
* one sliding-window batch: the network's activations for ``sw_batch_size`` windows, measured by a
  forward pass on PyTorch's meta device (shapes only, no memory): the sum of every layer's output
  when gradients flow (attacks keep them for the backward pass), three times the largest when not;
* the weights (and their gradients when attacking).

The estimate is deliberately simple; it errs high rather than low on the windows.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import SimpleITK as sitk
import torch

from ..models.factory import build_model
from ..models.spec import NATIVE, ModelSpec

_PHYSICAL_AXIS = {"L": 0, "R": 0, "P": 1, "A": 1, "I": 2, "S": 2}
# Per voxel of one window, for networks that cannot be traced on the meta device (SwinUNETR
# calls .item() while building): floats per voxel per unit of feature_size, measured high.
_FALLBACK_FLOATS_PER_FEATURE = 30


@dataclass(frozen=True)
class MemoryPlan:
    """Planned peak memory of one run, by part, and what the device has free (bytes)."""

    parts: dict[str, int]
    available: int | None
    device: str
    model_shape: tuple[int, int, int]
    grid_shape: tuple[int, int, int] | None = None  # the model grid before padding to the ROI

    @property
    def peak(self) -> int:
        return sum(self.parts.values())

    def fits(self) -> bool:
        return self.available is None or self.peak <= self.available


def plan_memory(
    image: sitk.Image,
    spec: ModelSpec,
    roi: tuple[int, int, int],
    sw_batch_size: int,
    attacking: bool,
    device: torch.device | str = "cpu",
) -> MemoryPlan:
    """Estimate the peak memory of segmenting (and, if ``attacking``, attacking) ``image``."""
    device = torch.device(device)
    grid_shape = _model_grid_shape(image, spec)
    model_shape = tuple(max(n, r) for n, r in zip(grid_shape, roi))
    voxels_model = math.prod(model_shape)
    voxels_orig = math.prod(image.GetSize())
    k = spec.out_channels
    parts = {
        "input on its own grid": voxels_orig * (image.GetSizeOfPixelComponent() + 16),
        "volume on the model grid": voxels_model * (16 + 8 * k),
        "sliding-window batch": _window_bytes(spec, roi, sw_batch_size, attacking),
        "weights": _weight_bytes(spec) * (2 if attacking else 1),
    }
    if attacking:
        parts["attack state"] = 24 * voxels_model
    return MemoryPlan(parts, available_bytes(device), str(device), model_shape, grid_shape)


# The most voxels a model grid may have, whatever memory is free: 2^28 is a 645^3 grid, twice a
# whole-body CT at 1.5 mm. A tiny file with 150 mm voxels asks for a grid 100x larger per axis, a
# run of days even where memory would hold it, so it is refused like a volume too large to read.
MAX_MODEL_VOXELS = 1 << 28


def check_memory(plan: MemoryPlan) -> None:
    """MemoryError with the figures and what to lower, if the model grid is beyond
    :data:`MAX_MODEL_VOXELS` or the plan exceeds what is free."""
    grid = plan.grid_shape or plan.model_shape  # (an ROI larger than the volume is the memory check's to refuse)
    voxels = math.prod(grid)
    if voxels > MAX_MODEL_VOXELS:
        raise MemoryError(
            f"the volume on the model's grid would be {'x'.join(map(str, grid))} = {voxels:,} voxels, "
            f"more than the limit of {MAX_MODEL_VOXELS:,}: check the image's voxel spacing (a wrong header can "
            f"claim voxels of many cm) or crop the volume"
        )
    if plan.fits():
        return
    biggest = max(plan.parts, key=plan.parts.get)
    shown = ", ".join(f"{name} {_size(b)}" for name, b in sorted(plan.parts.items(), key=lambda p: -p[1])[:3])
    advice = {
        "sliding-window batch": "lower --sw-batch-size or --roi",
        "volume on the model grid": "use a coarser spacing (a model with a larger target_spacing) or crop the volume",
        "input on its own grid": "crop or downsample the volume",
        "attack state": "crop the volume or use a coarser spacing",
        "weights": "use a smaller model",
    }[biggest]
    raise MemoryError(
        f"this run needs about {_size(plan.peak)} of {'GPU ' if plan.device.startswith('cuda') else ''}"
        f"memory ({shown}; model grid {'x'.join(map(str, plan.model_shape))}) but only "
        f"{_size(plan.available or 0)} is free: {advice}"
    )


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device``: MemAvailable for the CPU, cudaMemGetInfo for a GPU."""
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _model_grid_shape(image: sitk.Image, spec: ModelSpec) -> tuple[int, int, int]:
    """The model grid's size: each image axis rescaled to the target spacing of the model axis
    it lies closest to (the same axis ``prepare`` reorients it onto)."""
    size, spacing = image.GetSize(), image.GetSpacing()
    if spec.target_spacing is None:
        return tuple(int(n) for n in size)
    if spec.orientation.upper() == NATIVE:  # the model works on the image's own axes (nnU-Net)
        return tuple(max(1, math.ceil(size[i] * spacing[i] / spec.target_spacing[i])) for i in range(3))
    direction = [image.GetDirection()[r * 3 : r * 3 + 3] for r in range(3)]
    oriented_axis = {_PHYSICAL_AXIS[c]: k for k, c in enumerate(spec.orientation)}
    shape = [0, 0, 0]
    for i in range(3):
        physical = max(range(3), key=lambda r: abs(direction[r][i]))
        k = oriented_axis[physical]
        shape[k] = max(1, math.ceil(size[i] * spacing[i] / spec.target_spacing[k]))
    return tuple(shape)


def _window_bytes(spec: ModelSpec, roi: tuple[int, int, int], batch: int, attacking: bool) -> int:
    """Activations of one window batch, from a shapes-only forward pass."""
    total, largest = [0], [0]

    def hook(_module, _inputs, output) -> None:
        if isinstance(output, torch.Tensor):
            total[0] += output.numel() * 4
            largest[0] = max(largest[0], output.numel() * 4)

    try:
        with torch.device("meta"):
            net = build_model(spec)
            for module in net.modules():
                if not list(module.children()):
                    module.register_forward_hook(hook)
            with torch.no_grad():
                net(torch.empty(batch, spec.in_channels, *roi))
    except (RuntimeError, NotImplementedError, ValueError, TypeError, AssertionError):
        feature = int(spec.arch_args.get("feature_size", 48))
        per_voxel = _FALLBACK_FLOATS_PER_FEATURE * feature * 4
        return batch * math.prod(roi) * per_voxel // (1 if attacking else 10)
    return total[0] if attacking else 3 * largest[0]


def _weight_bytes(spec: ModelSpec) -> int:
    from ..models.size import parameter_count

    count = parameter_count(spec)
    return 4 * count if count is not None else 0


def _size(n: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 1e3:.0f} kB"
