"""Blur in mm: an isotropic 3D Gaussian of the given full width at half maximum, in physical units
(sigma per axis from the voxel spacing). Separable 1D convolutions: MONAI's GaussianSmooth does
the same but took about ten times as long on the sample CT (CPU)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..attacks.spec import AttackSpec, Param
from .base import Corruption

FWHM_PER_SIGMA = 2 * math.sqrt(2 * math.log(2))


class Blur(Corruption):
    """A 3D Gaussian blur of ``fwhm_mm`` full width at half maximum."""

    name = "blur"

    def __init__(self, model: torch.nn.Module, fwhm_mm: float = 2.0, **kwargs) -> None:
        super().__init__(model, **kwargs)
        if fwhm_mm < 0:
            raise ValueError(f"fwhm_mm must be >= 0, got {fwhm_mm}")
        self.fwhm_mm = float(fwhm_mm)

    def corrupt(self, hu, spacing_mm, generator):
        if self.fwhm_mm == 0:
            return hu.clone()
        out = hu
        for axis, spacing in zip((1, 2, 3), spacing_mm):
            out = gaussian_along(out, axis, self.fwhm_mm / FWHM_PER_SIGMA / spacing)
        return out


def gaussian_along(volume: torch.Tensor, axis: int, sigma: float) -> torch.Tensor:
    """``volume`` convolved along ``axis`` with a Gaussian of ``sigma`` voxels (truncated at 4
    sigma, normalised; edges replicated so a uniform volume stays uniform). A sum of shifted
    views, one multiply-add per tap: no copies of the volume per axis."""
    radius = max(1, int(math.ceil(4 * sigma)))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (taps / sigma) ** 2)
    weights = (weights / weights.sum()).tolist()
    n = volume.shape[axis]
    first, last = volume.narrow(axis, 0, 1), volume.narrow(axis, n - 1, 1)
    shape = list(volume.shape)
    shape[axis] = radius
    padded = torch.cat([first.expand(shape), volume, last.expand(shape)], dim=axis)
    out = padded.narrow(axis, 0, n) * weights[0]
    for k in range(1, 2 * radius + 1):
        out.add_(padded.narrow(axis, k, n), alpha=weights[k])
    return out


SPEC = AttackSpec(
    "blur", Blur, "Blur (mm)", "not adversarial: isotropic 3D Gaussian blur, FWHM in mm",
    (Param("fwhm_mm", float, "full width at half maximum of the Gaussian", "mm", 0, 50),),
    domain="corruption", strength="fwhm_mm", sweep=(1.0, 2.0, 4.0, 8.0), trainable=False, adversarial=False,
)
