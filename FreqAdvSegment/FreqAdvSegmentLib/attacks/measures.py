"""How big, and where in frequency, a perturbation is.

The first measures take the clean and adversarial volumes [B, C, H, W, D] in [0, 1] on the model
grid and return one value per batch item. The budget measures (:func:`budget`) work on the
input's own grid, in HU, inside the patient's body: they are what every result reports beside its
Dice, and what :func:`visibility` judges.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from . import registry
from .spec import INTENSITY
from .ssim import ssim3d, ssim3d_local


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


# --- budgets on the input's own grid, inside the body ---------------------------------------------
#
# What a radiologist would see is the change to the CT they gave us, on its own grid and in HU, so
# the budget of every result is measured there and not on the model's resampled [0, 1] grid. Air
# around the patient is left out: it is most of a CT, so it would pull RMS down and SSIM up (or,
# where the attack stretches it, the other way) and make a visible change look small.

VISIBLE_HU = 50.0
"""A largest in-body change above this many HU is called visible (a soft-tissue contrast step)."""
VISIBLE_SSIM = 0.9
"""An in-body 3D SSIM below this is called visible."""
BODY_THRESHOLD_HU = -500.0
"""Voxels above this HU belong to the body (air is about -1000, fat about -100)."""

METRIC_HELP = {
    "linf_hu": "largest change of any voxel inside the body, in HU",
    "rms_hu": "root-mean-square change over the voxels inside the body, in HU",
    "psnr_db": "peak signal-to-noise ratio inside the body, the peak being the model's HU window width; higher is closer",
    "ssim": "3D structural similarity inside the body at the model's HU window (1 = identical; under 0.9 is visible)",
    "strength": "the attack's own budget parameter (eps for voxel attacks, q_max for VAFA)",
}
"""One line per budget figure, for reports and help texts."""


def body_mask(hu: np.ndarray, threshold_hu: float = BODY_THRESHOLD_HU) -> np.ndarray:
    """The patient's body in a CT: the largest connected region above ``threshold_hu``, holes filled.

    Args:
        hu: CT values [Z, Y, X] (a SimpleITK array) in HU.
    Returns:
        bool [Z, Y, X]; the whole volume when nothing is above the threshold (e.g. a volume cropped
        inside the body has no outside air to leave out).
    """
    import SimpleITK as sitk  # only here: the attacks themselves need no SimpleITK

    above = sitk.GetImageFromArray((hu > threshold_hu).astype(np.uint8))
    if not np.any(hu > threshold_hu):
        return np.ones(hu.shape, dtype=bool)
    largest = sitk.RelabelComponent(sitk.ConnectedComponent(above), sortByObjectSize=True) == 1
    # Lungs and bowel gas are inside the patient: fill every cavity the body encloses.
    filled = sitk.BinaryFillhole(sitk.Cast(largest, sitk.sitkUInt8))
    return sitk.GetArrayFromImage(filled).astype(bool)


def budget(
    original_hu: np.ndarray,
    delta_hu: np.ndarray,
    window: tuple[float, float],
    mask: np.ndarray | None = None,
) -> dict[str, float]:
    """How large a change is, as a radiologist would see it.

    Works on the body's bounding box, a slab of slices at a time, in float32 (sums in float64):
    a 66 Mvox CT needs no full-grid float copy, so the inputs may be views of SimpleITK images
    (``GetArrayViewFromImage``) in their own pixel type.

    Args:
        original_hu: the clean CT [Z, Y, X] in HU, on the input's own grid (any real dtype).
        delta_hu: the change [Z, Y, X] in HU on the same grid (adversarial - original).
        window: the model's intensity window (a_min, a_max) in HU; PSNR's peak is its width and
            SSIM compares the two volumes as the model sees them (windowed to [0, 1]).
        mask: bool [Z, Y, X] voxels to measure (default: :func:`body_mask` of ``original_hu``).
    Returns:
        ``{"linf_hu", "rms_hu", "psnr_db", "ssim", "body_voxels", "linf_hu_anywhere"}`` (plain
        floats; psnr_db is inf for no change, ssim NaN for a volume thinner than 3 voxels).
    """
    if original_hu.shape != delta_hu.shape:
        raise ValueError(f"the CT {original_hu.shape} and its change {delta_hu.shape} must be on one grid")
    mask = body_mask(original_hu) if mask is None else np.asarray(mask, dtype=bool)
    box = _box(mask)
    linf_hu, sum_sq, body_voxels, ssim_value = 0.0, 0.0, 0, float("nan")
    if box is not None:
        hu, delta, inside = original_hu[box], delta_hu[box], mask[box]
        slab = max(1, _SLAB_VOXELS // max(1, hu.shape[1] * hu.shape[2]))
        for start in range(0, hu.shape[0], slab):
            change = delta[start : start + slab][inside[start : start + slab]]
            if change.size:
                linf_hu = max(linf_hu, float(np.abs(change).max()))
                change = change.astype(np.float64)
                sum_sq += float(np.dot(change, change))
                body_voxels += change.size
        # The box keeps one voxel around the body: every in-body voxel keeps its SSIM window, and
        # the voxels it leaves out (on the volume's faces) are the ones masked_ssim leaves out.
        ssim_value = _ssim_over_mask(hu, delta, inside, window, slab)
    rms_hu = math.sqrt(sum_sq / body_voxels) if body_voxels else 0.0
    width = float(window[1] - window[0])
    return {
        "linf_hu": linf_hu,
        "rms_hu": rms_hu,
        "psnr_db": 20.0 * math.log10(width / rms_hu) if rms_hu > 0 else float("inf"),
        "ssim": ssim_value,
        "body_voxels": body_voxels,
        "linf_hu_anywhere": max(float(delta_hu.max()), -float(delta_hu.min())) if delta_hu.size else 0.0,
    }


def masked_ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray, slab: int = 32) -> float:
    """Mean local 3D SSIM (3-voxel Gaussian window, as VAFA's own term) over ``mask``.

    Args:
        a, b: [Z, Y, X] in [0, 1]; mask: bool [Z, Y, X].
        slab: Z-slices per pass, so a 512 x 512 x 600 CT never needs its five moment volumes at once.
    Returns:
        the mean over the masked voxels at least one voxel from the border; NaN if there are none.
    """
    total, count = 0.0, 0
    for start, stop in _halo_slabs(a.shape, slab):
        part, n = _local_ssim_sum(a[start:stop], b[start:stop], mask[start:stop])
        total, count = total + part, count + n
    return total / count if count else float("nan")


# Voxels per slab of the budget's passes: bounds the SSIM's moment volumes to ~0.3 GB.
_SLAB_VOXELS = 1 << 22


def _ssim_over_mask(hu: np.ndarray, delta: np.ndarray, mask: np.ndarray, window: tuple[float, float], slab: int) -> float:
    """masked_ssim of the windowed clean and changed CT, each slab windowed as it is needed."""
    total, count = 0.0, 0
    for start, stop in _halo_slabs(hu.shape, slab):
        clean = hu[start:stop].astype(np.float32)
        changed = clean + delta[start:stop]
        part, n = _local_ssim_sum(_windowed(clean, window), _windowed(changed, window), mask[start:stop])
        total, count = total + part, count + n
    return total / count if count else float("nan")


def _halo_slabs(shape: tuple[int, ...], slab: int) -> list[tuple[int, int]]:
    """(start, stop) Z ranges of ``slab`` output slices plus the SSIM window's 2-slice halo;
    none for a volume thinner than the window."""
    if min(shape) < 3:
        return []
    return [(start, min(start + slab + 2, shape[0])) for start in range(0, shape[0] - 2, slab)]


def _local_ssim_sum(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> tuple[float, int]:
    """Sum and count of the local SSIM over the masked voxels away from the slab's border, [z, Y, X]
    slabs of a, b in [0, 1]; slabs with no such voxel cost nothing."""
    inner = mask[1:-1, 1:-1, 1:-1]
    count = int(inner.sum())
    if count == 0:
        return 0.0, 0
    x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]
    y = torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32))[None, None]
    local = ssim3d_local(x, y)[0].numpy()  # [z - 2, Y - 2, X - 2]
    return float(local[inner].sum(dtype=np.float64)), count


def _box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The bounding box of ``mask`` widened by one voxel (inside the volume); None if empty."""
    from scipy.ndimage import find_objects

    found = find_objects(mask.view(np.uint8), max_label=1)[0] if mask.size else None
    if found is None:
        return None
    return tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(found, mask.shape))


def _windowed(hu: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """HU to the model's [0, 1] scale, clipped (as preprocessing does)."""
    a_min, a_max = window
    return np.clip((hu.astype(np.float32) - a_min) / (a_max - a_min), 0.0, 1.0)


def visibility(measured: dict[str, float], max_hu: float = VISIBLE_HU, min_ssim: float = VISIBLE_SSIM) -> str | None:
    """A plain-words warning when a change could be seen on the CT, else None.

    Args:
        measured: a :func:`budget` dict.
    """
    reasons = []
    if measured["linf_hu"] > max_hu:
        reasons.append(f"some voxels change by {measured['linf_hu']:.0f} HU (more than {max_hu:g} HU)")
    ssim = measured["ssim"]
    if ssim == ssim and ssim < min_ssim:  # NaN (too thin to measure) is not a finding
        reasons.append(f"the structural similarity is {ssim:.2f} (below {min_ssim:g})")
    if not reasons:
        return None
    return "VISIBLE CHANGE: " + " and ".join(reasons) + "; a reader could see this on the CT, so this is not an imperceptible attack"


def strength(attack: Any, window: tuple[float, float] | None = None) -> dict[str, Any] | None:
    """The attack's own budget parameter (its registry spec's ``strength``), as a dict.

    Args:
        attack: a built attack object (``registry.build(...)``).
        window: the model's HU window; intensity budgets (eps, std) are also given in HU through it.
    Returns:
        ``{"param", "value", "shown", "unit", "hu", "text"}`` (``shown`` in the units people type,
        e.g. 4 for eps 4/255; ``hu`` None unless an intensity), or None for an unregistered attack.
    """
    spec = next((s for s in registry.specs() if type(attack) is s.cls), None)
    if spec is None or spec.strength is None:
        return None
    param = spec.param(spec.strength)
    value = float(getattr(attack, spec.strength))
    shown = value * param.display_scale
    hu = value * (window[1] - window[0]) if (window is not None and param.unit == INTENSITY) else None
    text = f"{param.name} {shown:g}" + (f"/{param.display_scale:g}" if param.display_scale != 1 else "")
    if hu is not None:
        text += f" (= {hu:.1f} HU on the model's window)"
    return {"param": param.name, "value": value, "shown": shown, "unit": param.unit, "hu": hu, "text": text}
