"""How big, and where in frequency, a perturbation is.

All measures take the clean and adversarial volumes [B, C, H, W, D] in [0, 1] and return one
value per batch item, so a report can show them per case.
"""

from __future__ import annotations

import math

import torch

from .ssim import ssim3d


def linf(clean: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """Largest absolute voxel change, [B]."""
    return (adv - clean).abs().flatten(1).amax(1)


def l2(clean: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of the perturbation, [B]."""
    return (adv - clean).flatten(1).norm(dim=1)


def psnr(clean: torch.Tensor, adv: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, [B] (inf for an unchanged volume)."""
    mse = ((adv - clean) ** 2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range**2 / mse)


def ssim(clean: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """Whole-volume 3D SSIM, [B]."""
    return ssim3d(clean, adv)


def band_energy(clean: torch.Tensor, adv: torch.Tensor, bands: int = 4) -> torch.Tensor:
    """Share of the perturbation's energy in each radial frequency band.

    The 3D FFT power of (adv - clean) is binned by normalised radial frequency |f| / f_max into
    ``bands`` equal-width bands, lowest first. Returns [B, bands] summing to 1 per item (0 for an
    unchanged volume). VAFA's quantisation removes mostly high frequencies; voxel attacks with
    sign steps spread energy over all bands.
    """
    delta = (adv - clean).float()
    power = torch.fft.fftn(delta, dim=(-3, -2, -1)).abs() ** 2  # [B, C, H, W, D]
    radius = _normalised_radius(delta.shape[-3:], delta.device)
    index = (radius * bands).long().clamp_(max=bands - 1).flatten()
    flat = power.sum(1).flatten(1)  # [B, HWD]
    energy = torch.zeros(flat.shape[0], bands, device=delta.device).index_add_(1, index, flat)
    total = energy.sum(1, keepdim=True)
    return torch.where(total > 0, energy / total.clamp_min(1e-30), torch.zeros_like(energy))


def _normalised_radius(shape: torch.Size, device: torch.device) -> torch.Tensor:
    """|f| / max|f| on the FFT grid of ``shape``, [H, W, D] in [0, 1]."""
    freqs = [torch.fft.fftfreq(n, device=device) for n in shape]
    grid = torch.meshgrid(*freqs, indexing="ij")
    radius = torch.sqrt(sum(g**2 for g in grid))
    return radius / (math.sqrt(3) * 0.5)


def summarize(clean: torch.Tensor, adv: torch.Tensor, bands: int = 4) -> list[dict[str, object]]:
    """All measures, one dict per batch item (plain floats, ready for JSON)."""
    values = {
        "linf": linf(clean, adv),
        "l2": l2(clean, adv),
        "psnr_db": psnr(clean, adv),
        "ssim": ssim(clean, adv),
    }
    energy = band_energy(clean, adv, bands)
    return [
        {**{k: float(v[i]) for k, v in values.items()}, "band_energy": [float(e) for e in energy[i]]}
        for i in range(clean.shape[0])
    ]
