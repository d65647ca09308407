"""SegPGD (Gu et al., ECCV 2022): PGD whose loss shifts from the correct to the wrong voxels.

Plain PGD spends its budget on voxels already misclassified, whose cross-entropy keeps growing.
SegPGD splits the per-voxel cross-entropy by whether the current prediction is right, and moves
the weight over the steps:

    L_t = ((1 - lambda_t) * sum_{correct} CE + lambda_t * sum_{wrong} CE) / N_voxels
    lambda_t = (t - 1) / (2T)   for steps t = 1 .. T   (0 at the first step, ~0.5 at the last)

The L-inf budget, step, random start and projection are PGD's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .losses import SegLoss
from .spec import AttackSpec
from .voxel import ALPHA_PARAM, EPS_PARAM, EPS_SWEEP, EPS8_PRESET, STEPS_PARAM, PGD


def segpgd_lambda(step: int, steps: int) -> float:
    """lambda for 0-based ``step`` of ``steps``: the paper's (t - 1) / (2T) with t = step + 1."""
    return step / (2.0 * steps)


def segpgd_loss(lam: float) -> SegLoss:
    """Per-voxel CE weighted 1 - lam where the prediction is right, lam where it is wrong;
    mean over voxels (logits [N, K, h, w, d], labels [N, 1, h, w, d] -> scalar)."""

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        target = labels[:, 0].long()
        ce = F.cross_entropy(logits.float(), target, reduction="none")  # [N, h, w, d]
        correct = (logits.detach().argmax(1) == target).float()
        weights = (1.0 - lam) * correct + lam * (1.0 - correct)
        return (weights * ce).mean()

    return loss


class SegPGD(PGD):
    """SegPGD: PGD-L-inf with the SegPGD loss and its lambda schedule (see the module)."""

    name = "segpgd"

    own_loss = True  # its loss is the point of the attack: the loss option is refused

    def _step_loss(self, step: int) -> tuple[SegLoss, dict[str, float]]:
        lam = segpgd_lambda(step, self.steps)
        return segpgd_loss(lam), {"lambda": lam}

SPEC = AttackSpec(
    "segpgd", SegPGD, "SegPGD",
    "PGD with a loss moving from correct to wrong voxels, lambda 0 -> 0.5 over the steps (Gu et al., ECCV 2022)",
    (EPS_PARAM, ALPHA_PARAM, STEPS_PARAM), (EPS8_PRESET,), strength="eps", sweep=EPS_SWEEP,
)
