"""Another reconstruction kernel: an in-plane filter that moves the scan's MTF to a target's.

A CT kernel is, to first order, an in-plane modulation transfer function (MTF); vendors and
physicists state it by the frequency where it falls to 10%, MTF10, in line pairs per cm (a smooth
kernel about 3-4 lp/cm, a standard soft-tissue one about 6, a bone kernel 10 or more). Both the
scan's own kernel and the target are modelled as Gaussian MTFs, MTF(f) = 10^-(f / MTF10)^2, so the
filter applied to every axial slice is MTF_target / MTF_scan: smoothing for a lower MTF10,
sharpening (and noise amplification, as a sharp kernel does) for a higher one. The scan's MTF10
is an assumption the user can set (``scan_mtf10_lpcm``). At 1.5 mm pixels the grid holds only
frequencies up to 3.3 lp/cm: kernels differ there most in how much they keep of that range.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..attacks.spec import AttackSpec, Param, Preset
from .base import Corruption
from .dose import fast_size

MAX_GAIN = 20.0
"""Sharpening gain cap, so a very sharp target cannot blow up the last frequencies."""


def gaussian_mtf(f_lpcm: torch.Tensor, mtf10_lpcm: float) -> torch.Tensor:
    """A Gaussian MTF with the given MTF10: 10^-(f / MTF10)^2 (so MTF(MTF10) = 0.1)."""
    return torch.exp(-math.log(10.0) * (f_lpcm / mtf10_lpcm) ** 2)


def kernel_gain(shape: tuple[int, int], pixel_mm: tuple[float, float], target: float, scan: float, device=None) -> torch.Tensor:
    """The in-plane filter MTF_target / MTF_scan on the FFT grid of ``shape``, [H, W]."""
    fa = torch.fft.fftfreq(shape[0], d=pixel_mm[0], device=device)[:, None]
    fb = torch.fft.fftfreq(shape[1], d=pixel_mm[1], device=device)[None, :]
    f_lpcm = 10.0 * torch.sqrt(fa**2 + fb**2)  # cycles/mm -> line pairs/cm
    ratio = torch.exp(-math.log(10.0) * f_lpcm**2 * (1 / target**2 - 1 / scan**2))
    return ratio.clamp(max=MAX_GAIN)


def filter_slices(hu: torch.Tensor, gain_of, pad: int = 16) -> torch.Tensor:
    """Filter every axial slice of ``hu`` [B, H, W, D] by FFT with ``gain_of(shape)`` [H', W'];
    slices are padded by reflection first so the FFT's wrap-around does not mix opposite edges."""
    b, h, w, d = hu.shape
    slices = hu.permute(0, 3, 1, 2).reshape(b * d, 1, h, w)
    p = min(pad, h - 1, w - 1)
    size = (fast_size(h + 2 * p), fast_size(w + 2 * p))
    pads = (p, size[1] - w - p, p, size[0] - h - p)
    padded = F.pad(slices, pads, mode="reflect" if max(pads) < min(h, w) else "replicate")[:, 0]
    out = torch.fft.irfft2(torch.fft.rfft2(padded) * gain_of(size)[:, : size[1] // 2 + 1], s=size)
    out = out[:, p:p + h, p:p + w]
    return out.reshape(b, d, h, w).permute(0, 2, 3, 1).contiguous()


class Kernel(Corruption):
    """Reconstruction with another kernel: MTF10 ``mtf10_lpcm`` instead of the scan's own."""

    name = "kernel"

    def __init__(self, model: torch.nn.Module, mtf10_lpcm: float = 3.5, scan_mtf10_lpcm: float = 6.0, **kwargs) -> None:
        super().__init__(model, **kwargs)
        if mtf10_lpcm <= 0 or scan_mtf10_lpcm <= 0:
            raise ValueError("mtf10_lpcm and scan_mtf10_lpcm must be > 0")
        self.mtf10_lpcm, self.scan_mtf10_lpcm = float(mtf10_lpcm), float(scan_mtf10_lpcm)

    def corrupt(self, hu, spacing_mm, generator):
        pixel = spacing_mm[:2]
        return filter_slices(hu, lambda shape: kernel_gain(shape, pixel, self.mtf10_lpcm, self.scan_mtf10_lpcm, hu.device))


LPCM = "line pairs / cm"
SPEC = AttackSpec(
    "kernel", Kernel, "Reconstruction kernel",
    "not adversarial: another reconstruction kernel, as an in-plane MTF filter (MTF10 in lp/cm)",
    (
        Param("mtf10_lpcm", float, "the target kernel's MTF10 (smooth ~3.5, standard ~6, bone ~10 lp/cm)", LPCM, 0.5, 30),
        Param("scan_mtf10_lpcm", float, "assumed MTF10 of the scan's own kernel", LPCM, 0.5, 30),
    ),
    (
        Preset("smooth", "a smooth kernel, MTF10 3.5 lp/cm", {"mtf10_lpcm": 3.5}),
        Preset("sharp", "a sharp (bone) kernel, MTF10 10 lp/cm", {"mtf10_lpcm": 10.0}),
    ),
    domain="corruption", strength="mtf10_lpcm", sweep=(10.0, 4.5, 3.5, 2.5), trainable=False, adversarial=False,
)
