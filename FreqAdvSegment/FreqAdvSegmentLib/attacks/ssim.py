"""3D structural similarity (SSIM), for whole volumes and per cubic block.

VAFA's perceptual term is L_ssim = 1 - mean_i SSIM(x_i, x'_i) over its DCT blocks (paper Eq. 2).
The public code computes it with pytorch_msssim (Gaussian window of size 3, sigma 1.5, data
range 1, nonnegative_ssim: the *mean* SSIM of each volume or block clamped to zero, not each
local value); this module does the same in plain torch, with the
window applied inside each block only ("valid" filtering), so blocks never see their neighbours.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .frequency import to_blocks

C1 = 0.01**2  # (K1 * data_range)^2 with data_range = 1
C2 = 0.03**2


def _gaussian_kernel3d(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Normalised separable Gaussian window [1, 1, size, size, size]."""
    r = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    k = g[:, None, None] * g[None, :, None] * g[None, None, :]
    return k[None, None]


def ssim3d_map(x: torch.Tensor, y: torch.Tensor, win_size: int = 3, sigma: float = 1.5) -> torch.Tensor:
    """Local SSIM over a batch of single-channel volumes.

    Args:
        x, y: [N, 1, h, w, d] in [0, 1], each side >= win_size.
    Returns:
        [N] mean SSIM per volume ("valid" window positions only), clamped to >= 0 after the mean
        as pytorch_msssim's nonnegative_ssim does.
    """
    return F.relu(ssim3d_local(x, y, win_size, sigma, clamp=False).flatten(1).mean(1))


def ssim3d_local(
    x: torch.Tensor, y: torch.Tensor, win_size: int = 3, sigma: float = 1.5, clamp: bool = True
) -> torch.Tensor:
    """The local SSIM values themselves, so a caller can average them over a mask.

    Args:
        x, y: [N, 1, h, w, d] in [0, 1], each side >= win_size.
    Returns:
        [N, h - win_size + 1, w - win_size + 1, d - win_size + 1] ("valid" positions; the value
        at index i belongs to the voxel i + win_size // 2; with ``clamp``, negative
        structure terms are clamped to 0, which suits a map shown to people).
    """
    k = _gaussian_kernel3d(win_size, sigma, x.device, x.dtype)
    # One conv for the five local moments keeps the work in a single kernel call.
    stacked = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # [N, 5, h, w, d]
    n = stacked.shape[1]
    moments = F.conv3d(stacked, k.expand(n, 1, *k.shape[2:]), groups=n)
    mu_x, mu_y, xx, yy, xy = moments.unbind(1)
    var_x = xx - mu_x**2
    var_y = yy - mu_y**2
    cov = xy - mu_x * mu_y
    cs = (2 * cov + C2) / (var_x + var_y + C2)
    lum = (2 * mu_x * mu_y + C1) / (mu_x**2 + mu_y**2 + C1)
    return lum * (F.relu(cs) if clamp else cs)


def blockwise_ssim3d(x: torch.Tensor, y: torch.Tensor, block: int, win_size: int = 3) -> torch.Tensor:
    """SSIM of every cubic block.

    Args:
        x, y: [B, C, H, W, D] in [0, 1]; padded like the DCT blocks when not multiples of ``block``.
    Returns:
        [B, C, nH, nW, nD] SSIM per block.
    """
    if block < win_size:
        raise ValueError(f"SSIM needs blocks of at least {win_size} voxels per side, got {block}")
    bx, by = to_blocks(x, block), to_blocks(y, block)
    lead = bx.shape[:5]
    flat = (-1, 1, block, block, block)
    return ssim3d_map(bx.reshape(flat), by.reshape(flat), win_size).reshape(lead)


def ssim3d(x: torch.Tensor, y: torch.Tensor, win_size: int = 3) -> torch.Tensor:
    """Whole-volume 3D SSIM: x, y [B, C, H, W, D] in [0, 1] -> [B] (mean over channels)."""
    b, c = x.shape[:2]
    flat = (b * c, 1, *x.shape[2:])
    return ssim3d_map(x.reshape(flat), y.reshape(flat), win_size).reshape(b, c).mean(1)
