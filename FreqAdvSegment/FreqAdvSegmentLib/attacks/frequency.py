"""Blockwise 3D DCT-II (orthonormal), its inverse, and differentiable rounding.

This is the frequency-domain machinery of VAFA (Hanif et al., MICCAI 2023, Sec. 2.1): a volume
is cut into non-overlapping cubic blocks, each block is transformed with a separable 3D DCT-II,
quantised, rounded and transformed back, like a 3D JPEG.

Everything is vectorised: the volume is reshaped into a "block view"
``[B, C, nH, nW, nD, b, b, b]`` and the DCT is three small matrix products over the last three
axes, so there is no Python loop over blocks and the cost grows linearly with the volume.
Volumes whose sides are not multiples of the block size are padded (edge-replicated, which keeps
padding from adding artificial high frequencies at the border) and cropped back.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F


@lru_cache(maxsize=32)
def _dct_matrix_cpu(n: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix M (float64), so that ``M @ x`` is the DCT of a length-n vector."""
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    i = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    m = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    m[0] /= math.sqrt(2.0)
    return m


def dct_matrix(n: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Orthonormal DCT-II matrix [n, n]; its transpose is the inverse (DCT-III)."""
    return _dct_matrix_cpu(n).to(device=device, dtype=dtype)


def padded_shape(shape: tuple[int, int, int], block: int) -> tuple[int, int, int]:
    """Spatial shape rounded up to a multiple of ``block`` on every axis."""
    return tuple(int(math.ceil(s / block) * block) for s in shape)  # type: ignore[return-value]


def to_blocks(x: torch.Tensor, block: int) -> torch.Tensor:
    """Cut a volume into cubic blocks.

    Args:
        x: [B, C, H, W, D]; sides that are not multiples of ``block`` are edge-padded.
    Returns:
        [B, C, nH, nW, nD, b, b, b] with b = block (a copy; ``x`` is untouched).
    """
    b_, c_, h, w, d = x.shape
    ph, pw, pd = padded_shape((h, w, d), block)
    if (ph, pw, pd) != (h, w, d):
        x = F.pad(x, (0, pd - d, 0, pw - w, 0, ph - h), mode="replicate")
    nh, nw, nd = ph // block, pw // block, pd // block
    x = x.reshape(b_, c_, nh, block, nw, block, nd, block)
    return x.permute(0, 1, 2, 4, 6, 3, 5, 7)


def from_blocks(blocks: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Inverse of :func:`to_blocks`: [B, C, nH, nW, nD, b, b, b] -> [B, C, H, W, D] cropped to ``shape``."""
    b_, c_, nh, nw, nd, bh, bw, bd = blocks.shape
    x = blocks.permute(0, 1, 2, 5, 3, 6, 4, 7).reshape(b_, c_, nh * bh, nw * bw, nd * bd)
    h, w, d = shape
    return x[:, :, :h, :w, :d]


def dct3_blocks(blocks: torch.Tensor) -> torch.Tensor:
    """Orthonormal 3D DCT-II of every block: [..., b, b, b] -> [..., b, b, b]."""
    m = dct_matrix(blocks.shape[-1], blocks.device, blocks.dtype)
    return _separable(blocks, m)


def idct3_blocks(coeffs: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`dct3_blocks` (orthonormal DCT-III): [..., b, b, b] -> [..., b, b, b]."""
    m = dct_matrix(coeffs.shape[-1], coeffs.device, coeffs.dtype)
    return _separable(coeffs, m.t())


def _separable(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Apply the matrix ``m`` along each of the last three axes of ``x`` ([..., b, b, b])."""
    x = x @ m.t()  # last axis
    x = (x.transpose(-1, -2) @ m.t()).transpose(-1, -2)  # second-to-last axis
    x = (x.transpose(-1, -3) @ m.t()).transpose(-1, -3)  # third-to-last axis
    return x


def blockwise_dct3(x: torch.Tensor, block: int) -> torch.Tensor:
    """Blockwise 3D DCT of a volume: [B, C, H, W, D] -> coefficients [B, C, nH, nW, nD, b, b, b]."""
    return dct3_blocks(to_blocks(x, block))


def blockwise_idct3(coeffs: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Inverse of :func:`blockwise_dct3`: coefficients -> [B, C, H, W, D] cropped to ``shape``."""
    return from_blocks(idct3_blocks(coeffs), shape)


# --- rounding -------------------------------------------------------------------------------


def soft_round(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Differentiable tanh rounding of the public VAFA code (after AdvDrop / DSQ).

    floor(x) + 1/2 * (1 + s * tanh(k * (x - floor(x) - 1/2))), with k = ln(2/alpha - 1) and
    s = 1/(1 - alpha): continuous across integers, and a hard round as alpha -> 0.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"soft rounding needs 0 < alpha < 1, got {alpha}")
    k = math.log(2.0 / alpha - 1.0)
    s = 1.0 / (1.0 - alpha)
    floor = torch.floor(x).detach()  # floor has zero gradient; the tanh carries it
    return floor + 0.5 * (1.0 + s * torch.tanh(k * (x - floor - 0.5)))


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Hard rounding in the forward pass, identity gradient (straight-through estimator)."""
    return x + (torch.round(x) - x).detach()


def alpha_schedule(step: int, steps: int, alpha_start: float = 0.1, alpha_end: float = 1e-20) -> float:
    """The public code's linear alpha schedule: 0.1 at step 0 moving linearly toward ~0.

    With 20 steps alpha_t = 0.1 - 0.005 t, so rounding gets harder as the attack proceeds.
    """
    frac = step / max(steps, 1)
    return max(alpha_start + (alpha_end - alpha_start) * frac, 1e-12)
