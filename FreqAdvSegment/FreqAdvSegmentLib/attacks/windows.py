"""Sliding windows for attacking whole volumes with bounded memory.

An attack on a whole CT keeps its state (a perturbation, or VAFA's quantisation tables) over the
whole volume, but the model only ever sees ROI-sized windows, a few at a time. The gradient of the
attack loss with respect to the whole adversarial volume is accumulated window batch by window
batch; overlapping windows add their gradients where they overlap, so the attack is optimised
through every window that sees a voxel. Peak memory is that of one window batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

Window = tuple[slice, slice, slice]


def axis_starts(length: int, roi: int, overlap: float) -> list[int]:
    """Window start offsets along one axis: a regular grid plus a last window flush with the end.

    Follows MONAI's sliding-window rule (interval = roi * (1 - overlap), at least 1 voxel).
    ``length`` must be >= ``roi`` (callers pad smaller volumes first).
    """
    interval = max(int(roi * (1.0 - overlap)), 1)
    starts = list(range(0, length - roi + 1, interval))
    if starts[-1] != length - roi:
        starts.append(length - roi)
    return starts


def nnunet_axis_starts(length: int, roi: int, overlap: float) -> list[int]:
    """Window start offsets as nnU-Net v2 places its tiles (``tile_step_size = 1 - overlap``).

    nnU-Net takes the fewest tiles whose step is at most ``roi * step`` and spreads them evenly
    from 0 to ``length - roi``, rounding each start: 110 voxels, tile 64, step 0.5 -> 0, 23, 46,
    where MONAI's rule gives 0, 32, 46. Every voxel then meets other tiles and other Gaussian
    weights than under MONAI's rule, which changed 24% of the voxels of a real CT's label map.
    """
    if length <= roi:
        return [0]
    step = roi * (1.0 - overlap)
    count = int(np.ceil((length - roi) / step)) + 1
    spacing = (length - roi) / (count - 1)
    return [int(np.round(spacing * i)) for i in range(count)]


# How windows are placed along each axis, by the blend mode a model was validated with.
PLACEMENT_RULES = {"nnunet": nnunet_axis_starts}


def window_grid(shape: Sequence[int], roi: Sequence[int], overlap: float, mode: str = "gaussian") -> list[Window]:
    """All windows covering a [H, W, D] volume (already padded to at least ``roi``).

    ``mode`` is the model's blend mode: "nnunet" places windows by nnU-Net's rule
    (:func:`nnunet_axis_starts`), any other by MONAI's (:func:`axis_starts`).
    """
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    starts = PLACEMENT_RULES.get(mode, axis_starts)
    grids = [starts(n, r, overlap) for n, r in zip(shape, roi)]
    return [
        (slice(i, i + roi[0]), slice(j, j + roi[1]), slice(k, k + roi[2]))
        for i in grids[0]
        for j in grids[1]
        for k in grids[2]
    ]


def batched(windows: list[Window], size: int) -> Iterator[list[Window]]:
    """Consecutive groups of at most ``size`` windows."""
    for start in range(0, len(windows), max(size, 1)):
        yield windows[start : start + size]


def pad_amounts(shape: Sequence[int], roi: Sequence[int]) -> tuple[int, ...]:
    """F.pad amounts (last axis first) that grow ``shape`` to at least ``roi`` on every axis."""
    pads: list[int] = []
    for n, r in reversed(list(zip(shape, roi))):
        pads += [0, max(r - n, 0)]
    return tuple(pads)
