"""Validation during training: sliding-window Dice on whole volumes, clean and under VAFA.

Cases are sharded across ranks (case i goes to rank i mod world_size) and the per-case numbers
are gathered, so N processes validate N times faster and every rank agrees on the result.
Dice is the mean over classes of MONAI's Dice, as ``freqadv evaluate`` reports it: background
excluded unless asked for, a class absent from both maps not counted, a false organ scoring 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..attacks import registry
from ..job.inference import predict_logits
from ..evaluation.metrics import dice_per_class
from ..models import ModelSpec
from .distributed import DistContext, all_gather_objects


def mean_dice(pred: torch.Tensor, ref: torch.Tensor, n_classes: int, include_background: bool) -> float:
    """Mean Dice over classes of label maps [H, W, D] (NaN if no class is present in either)."""
    dice = dice_per_class(pred.cpu().long(), ref.cpu().long(), n_classes)
    values = [d for d in dice[0 if include_background else 1:] if not math.isnan(d)]
    return float(np.mean(values)) if values else float("nan")


def validate(
    model: torch.nn.Module,
    cases: Sequence[dict[str, Any]],
    spec: ModelSpec,
    ctx: DistContext,
    overlap: float,
    sw_batch_size: int,
    include_background: bool = False,
    amp: str | None = None,
    vafa_params: dict[str, Any] | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Mean Dice over this rank's ``cases`` gathered over all ranks.

    Args:
        model: the bare network (not the DDP wrapper); put in eval mode and left there.
        cases: this rank's share of preprocessed volumes, dicts with ``image`` and ``label``
            [1, H, W, D] (a validation CacheDataset shard).
        vafa_params: when given, also attack every volume with VAFA (these parameters, sliding
            windows of the spec's roi) against its labels and report the Dice under attack.
    Returns:
        ``{"dice_clean": ..., "dice_vafa": ... (NaN without vafa_params), "cases": n}``.
    """
    model.eval()
    rows = []
    for case in cases:
        x = torch.as_tensor(case["image"])[None].float().to(ctx.device)
        y = torch.as_tensor(case["label"])[None].long().to(ctx.device)
        logits = predict_logits(model, x, spec.roi_size, overlap, sw_batch_size, amp)
        row = {"clean": mean_dice(logits.argmax(1)[0], y[0, 0], spec.out_channels, include_background)}
        if vafa_params is not None:
            attack = registry.build("vafa", model, vafa_params, roi_size=spec.roi_size, overlap=overlap,
                                    sw_batch_size=sw_batch_size, amp=amp, seed=seed)
            x_adv = attack.run(x, y).adv
            adv_pred = attack.predict(x_adv)
            row["vafa"] = mean_dice(adv_pred[0, 0], y[0, 0], spec.out_channels, include_background)
        rows.append(row)
    gathered = [r for part in all_gather_objects(ctx, rows) for r in part]
    return {
        "dice_clean": _nanmean([r["clean"] for r in gathered]),
        "dice_vafa": _nanmean([r.get("vafa", float("nan")) for r in gathered]),
        "cases": len(gathered),
    }


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")
