"""CosPGD (Agnihotri et al., ICML 2024): PGD with a per-voxel loss weighted by the cosine
similarity between the softmax prediction and the one-hot target.

    L = mean_v cos(softmax(z_v), onehot(y_v)) * CE(z_v, y_v)

A voxel the model still gets right with confidence has cosine near 1 and keeps its full weight;
a voxel already fooled has a small cosine, so the attack stops wasting its budget there. The
cosine is per voxel (not one mean over the volume, which would only rescale PGD's gradient) and
is a weight: it is detached, as in the authors' code, so the gradient is that of the weighted CE.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .losses import SegLoss
from .spec import AttackSpec
from .voxel import ALPHA_PARAM, EPS_PARAM, EPS_SWEEP, EPS8_PRESET, STEPS_PARAM, PGD


def cosine_weights(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """cos(softmax(z_v), onehot(y_v)) = p_y / ||p||_2 per voxel: [N, K, h, w, d] -> [N, h, w, d]."""
    p = logits.float().softmax(1)
    p_true = p.gather(1, labels.long())[:, 0]
    return p_true / p.norm(dim=1).clamp_min(1e-12)


def cospgd_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The CosPGD loss: mean over voxels of the detached cosine times the voxel's CE."""
    ce = F.cross_entropy(logits.float(), labels[:, 0].long(), reduction="none")
    return (cosine_weights(logits, labels).detach() * ce).mean()


class CosPGD(PGD):
    """CosPGD: PGD-L-inf (random start, signed steps, projection) on :func:`cospgd_loss`."""

    name = "cospgd"

    own_loss = True  # its loss is the point of the attack: the loss option is refused

    def _step_loss(self, step: int) -> tuple[SegLoss, dict[str, float]]:
        return cospgd_loss, {}

SPEC = AttackSpec(
    "cospgd", CosPGD, "CosPGD",
    "PGD with per-voxel CE weighted by cos(softmax, one-hot target) (Agnihotri et al., ICML 2024)",
    (EPS_PARAM, ALPHA_PARAM, STEPS_PARAM), (EPS8_PRESET,), strength="eps", sweep=EPS_SWEEP,
)
