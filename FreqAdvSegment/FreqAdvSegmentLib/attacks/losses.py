"""Losses the attacks maximise.

Each takes logits [N, K, h, w, d] and integer labels [N, 1, h, w, d] and returns a scalar that the
attack drives UP.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.losses import DiceCELoss

SegLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def paper_dice_ce() -> SegLoss:
    """The segmentation loss of the paper's attacks: MONAI DiceCE with its exact settings.

    One-hot labels, softmax, squared denominators, smooth_nr 0, smooth_dr 1e-6, Dice and CE
    weighted 1 each (PAPER.md 1.2, step 9: the paper's "L_dice" is really Dice + CE).
    """
    return DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=True, smooth_nr=0.0, smooth_dr=1e-6)


def cw_margin_loss(kappa: float = 0.0) -> SegLoss:
    """Negative Carlini-Wagner margin, averaged over voxels.

    Per voxel, margin = z_true - max_{j != true} z_j; CW minimises max(margin, -kappa), so this
    returns its negative for an attack that maximises.
    """

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        true = logits.gather(1, labels.long())
        others = logits.scatter(1, labels.long(), float("-inf")).amax(1, keepdim=True)
        return -torch.clamp(true - others, min=-kappa).mean()

    return loss
