"""Thicker slices: the scan reconstructed at ``thickness_mm`` slices, then resampled back.

Every thick slice is the mean of the thin slices it covers (each thin voxel weighted by how much
of its own extent lies in the thick one), centred every ``thickness_mm`` along the axial axis; the
thin grid is then filled back by linear interpolation between thick-slice centres. Both steps
have weights that sum to one, so a uniform region keeps its HU exactly; partial-volume blur
along z is what changes.
"""

from __future__ import annotations

import math

import torch

from ..attacks.spec import AttackSpec, Param, Preset
from .base import Corruption


def slab_weights(depth: int, slice_mm: float, thickness_mm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(average [J, D], interpolate [D, J]): thin -> thick slice means, thick -> thin linear."""
    length = depth * slice_mm
    count = max(1, math.ceil(length / thickness_mm))
    start = (length - count * thickness_mm) / 2  # thick slices centred on the volume
    lo_thin = torch.arange(depth, dtype=torch.float64) * slice_mm
    hi_thin = lo_thin + slice_mm
    lo_thick = start + torch.arange(count, dtype=torch.float64) * thickness_mm
    hi_thick = lo_thick + thickness_mm
    overlap = (torch.minimum(hi_thick[:, None], hi_thin[None]) - torch.maximum(lo_thick[:, None], lo_thin[None])).clamp(min=0)
    average = overlap / overlap.sum(1, keepdim=True)
    centres_thick = (lo_thick + hi_thick) / 2
    centres_thin = (lo_thin + hi_thin) / 2
    pos = ((centres_thin - centres_thick[0]) / thickness_mm).clamp(0, count - 1)
    left = pos.floor().long().clamp(max=count - 1)
    right = (left + 1).clamp(max=count - 1)
    frac = pos - left
    interpolate = torch.zeros(depth, count, dtype=torch.float64)
    interpolate[torch.arange(depth), left] += 1 - frac
    interpolate[torch.arange(depth), right] += frac
    return average, interpolate


class Thickness(Corruption):
    """Slices of ``thickness_mm`` (e.g. 3 or 5 mm), averaged from the thin ones and back."""

    name = "thickness"

    def __init__(self, model: torch.nn.Module, thickness_mm: float = 5.0, **kwargs) -> None:
        super().__init__(model, **kwargs)
        if thickness_mm <= 0:
            raise ValueError(f"thickness_mm must be > 0, got {thickness_mm}")
        self.thickness_mm = float(thickness_mm)

    def corrupt(self, hu, spacing_mm, generator):
        b, h, w, d = hu.shape
        average, interpolate = slab_weights(d, spacing_mm[2], self.thickness_mm)
        matrix = (interpolate @ average).to(hu.device, hu.dtype)  # [D, D] thin -> thin, banded
        columns = hu.permute(3, 0, 1, 2).reshape(d, -1)  # [D, B*H*W]: z first, for a sparse product
        out = torch.sparse.mm(matrix.to_sparse(), columns)
        return out.reshape(d, b, h, w).permute(1, 2, 3, 0)


SPEC = AttackSpec(
    "thickness", Thickness, "Slice thickness",
    "not adversarial: thicker slices (averaged along z to N mm and back)",
    (Param("thickness_mm", float, "thickness of the reconstructed slices", "mm", 0.1, 50),),
    (
        Preset("3mm", "3 mm slices", {"thickness_mm": 3.0}),
        Preset("5mm", "5 mm slices", {"thickness_mm": 5.0}),
    ),
    domain="corruption", strength="thickness_mm", sweep=(3.0, 5.0, 8.0), trainable=False, adversarial=False,
)
