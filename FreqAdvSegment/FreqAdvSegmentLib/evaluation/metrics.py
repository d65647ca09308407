"""Segmentation quality: per-organ Dice and HD95 (mm), and the fraction of voxels an attack flips.

Dice and HD95 come from MONAI (``compute_dice``, the function behind ``DiceMetric``, and
``compute_hausdorff_distance``) so that numbers match MONAI-based papers. MONAI's HD95 is: take
the boundary voxels of each mask (mask XOR its erosion with a 6-connected cross), compute the
Euclidean distance (scaled by ``spacing``) from every boundary voxel of one mask to the nearest
boundary voxel of the other, take the 95th percentile (linear interpolation) in each direction
separately, and report the LARGER of the two directed values.

Absent organs: MONAI gives Dice NaN (``ignore_empty=True``) or 1/0 and HD95 inf/NaN; here the rule
is explicit. Dice: absent from both -> NaN (not counted in means), absent from one -> 0. HD95:
NaN whenever either is absent (a distance to nothing is undefined), with a note saying why.

The paper (PAPER.md section 4) averages over all 14 classes INCLUDING background, with HD95 in
voxels of the resampled grid; ``mean_dice_with_background`` reports that convention alongside the
usual foreground-only mean.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance

from .results import OrganMetrics, SegmentationMetrics


def segmentation_metrics(
    pred: np.ndarray | torch.Tensor,
    ref: np.ndarray | torch.Tensor,
    spacing: Sequence[float],
    label_names: Sequence[str],
    include_background: bool = False,
) -> SegmentationMetrics:
    """Per-organ Dice and HD95 between a predicted and a reference label map.

    Args:
        pred: integer labels ``[H, W, D]`` (or ``[1, 1, H, W, D]``), values < len(label_names).
        ref: reference labels, same shape and grid.
        spacing: voxel size in mm along (H, W, D), e.g. ``GridContext.model.spacing``.
        label_names: name of each label value; index 0 is background.
        include_background: also report label 0 in ``per_class`` and in the means.

    Returns:
        :class:`~.results.SegmentationMetrics`: ``per_class`` {name: OrganMetrics (dice,
        hd95_mm, ref_voxels, pred_voxels, note)}, ``mean_dice``, ``mean_hd95_mm``,
        ``mean_dice_with_background``. Means are NaN-ignoring means over the reported classes
        (NaN if no class counts); ``note`` is None or says why a value is NaN.
    """
    pred_t, ref_t = _label_pair(pred, ref, len(label_names))
    spacing_mm = _spacing(spacing)
    dice = dice_per_class(pred_t, ref_t, len(label_names))
    first = 0 if include_background else 1
    per_class = {
        label_names[c]: _class_metrics(pred_t == c, ref_t == c, dice[c], spacing_mm)
        for c in range(first, len(label_names))
    }
    return SegmentationMetrics(
        per_class=per_class,
        mean_dice=_nanmean([v.dice for v in per_class.values()]),
        mean_hd95_mm=_nanmean([v.hd95_mm for v in per_class.values()]),
        mean_dice_with_background=_nanmean(dice),
    )


def flip_rate(pred_a: np.ndarray | torch.Tensor, pred_b: np.ndarray | torch.Tensor) -> float:
    """Fraction of voxels whose label differs between two label maps of the same shape.

    Args:
        pred_a: integer labels, any shape (e.g. clean prediction ``[H, W, D]``).
        pred_b: integer labels, same shape (e.g. adversarial prediction).

    Returns:
        A float in [0, 1]; 0.0 for empty inputs.
    """
    a, b = _as_tensor(pred_a), _as_tensor(pred_b)
    if a.shape != b.shape:
        raise ValueError(
            f"label maps have different shapes {tuple(a.shape)} and {tuple(b.shape)}; compare "
            f"predictions on the same grid"
        )
    if a.numel() == 0:
        return 0.0
    return float((a != b.to(a.device)).sum().item() / a.numel())


def dice_per_class(pred: torch.Tensor, ref: torch.Tensor, n_labels: int) -> list[float]:
    """MONAI Dice for every label value 0..n_labels-1; NaN where the label is in neither map.

    ``ignore_empty=False`` makes MONAI score "absent in ref, present in pred" as 0 (with True it
    would be NaN and a false positive organ would go unpunished); both-absent becomes NaN here.
    """
    dice = compute_dice(
        pred[None, None], ref[None, None], include_background=True, ignore_empty=False,
        num_classes=n_labels,
    )[0]
    present = (torch.bincount(pred.flatten(), minlength=n_labels) > 0) | (
        torch.bincount(ref.flatten(), minlength=n_labels) > 0
    )
    return [float(d) if p else float("nan") for d, p in zip(dice.tolist(), present.tolist())]


def _class_metrics(p: torch.Tensor, r: torch.Tensor, dice: float, spacing: list[float]) -> OrganMetrics:
    """The per_class entry for one label from its boolean masks [H, W, D]."""
    n_pred, n_ref = int(p.sum()), int(r.sum())
    note = None
    if n_pred == 0 and n_ref == 0:
        note = "absent in reference and prediction: not counted"
    elif n_ref == 0:
        note = "absent in reference, present in prediction: Dice 0, HD95 undefined"
    elif n_pred == 0:
        note = "absent in prediction: Dice 0, HD95 undefined"
    # Only when both are present: MONAI would give inf (one absent) or NaN (both absent).
    hd95 = float("nan") if note is not None else _hd95(p, r, spacing)
    return OrganMetrics(dice=dice, hd95_mm=hd95, ref_voxels=n_ref, pred_voxels=n_pred, note=note)


def _hd95(p: torch.Tensor, r: torch.Tensor, spacing: list[float]) -> float:
    """MONAI's HD95 (mm) between two non-empty boolean masks [H, W, D]."""
    with warnings.catch_warnings():
        # MONAI 1.5-1.6 passes its own deprecated argument internally and warns on every call.
        warnings.filterwarnings(
            "ignore", message=".*always_return_as_numpy.*", category=FutureWarning
        )
        hd = compute_hausdorff_distance(
            p[None, None], r[None, None], include_background=True, percentile=95, spacing=spacing
        )
    return float(hd[0, 0])


def _label_pair(pred, ref, n_labels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Both label maps as [H, W, D] integer tensors on one device, checked against the names."""
    tensors = []
    for name, value in (("pred", pred), ("ref", ref)):
        t = _as_tensor(value)
        if t.ndim == 5 and t.shape[:2] == (1, 1):
            t = t[0, 0]
        if t.ndim != 3:
            raise ValueError(f"{name} must be [H, W, D] labels, got shape {tuple(t.shape)}")
        if t.is_floating_point() or t.is_complex():
            raise ValueError(f"{name} must hold integer labels (argmax of logits), got {t.dtype}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n_labels):
            raise ValueError(
                f"{name} holds label values {int(t.min())}..{int(t.max())} but label_names has "
                f"{n_labels} names (0..{n_labels - 1}); pass the matching label map"
            )
        tensors.append(t.long())
    if tensors[0].shape != tensors[1].shape:
        raise ValueError(
            f"pred {tuple(tensors[0].shape)} and ref {tuple(tensors[1].shape)} differ in shape; "
            f"put both on the same grid first"
        )
    return tensors[0], tensors[1].to(tensors[0].device)


def _as_tensor(value: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A tensor view of ``value``; numpy arrays from flips/transposes (negative strides) are
    copied because torch cannot wrap them."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    return torch.from_numpy(np.ascontiguousarray(value))


def _spacing(spacing: Sequence[float]) -> list[float]:
    """Three positive voxel sizes in mm."""
    values = [float(s) for s in spacing]
    if len(values) != 3 or not all(np.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing must be three positive voxel sizes in mm, got {spacing}")
    return values


def _nanmean(values: Sequence[float]) -> float:
    """Mean ignoring NaN; NaN (without numpy's RuntimeWarning) when nothing is left."""
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")
