"""The losses of adversarial training: DiceCE and VAFT's frequency consistency loss.

VAFT (Hanif et al., MICCAI 2023, Eq. 3-4) minimises

    L_seg(M(x), y) + L_seg(M(x'), y) + L_fr,   L_fr = || DCT3(M(x)) - DCT3(M(x')) ||_1

on the segmentation LOGITS of the clean patch x and its VAFA version x'. Two forms of L_fr:

* ``"l1"`` (the paper's Eq. 4): the mean absolute difference of the DCT coefficients (the
  unnormalised L1, divided by the number of coefficients so its scale does not grow with the
  patch; all classes, all batch items);
* ``"normalized"`` (the public code, ``trainer.py`` L250-259):
  sum |D(clean) - D(adv)| / sum |D(clean)|, a relative error.

The DCT is orthonormal (DCT-II), over the whole patch by default (the code's hard-coded
(96, 96, 96) block on 96^3 patches), or over cubic blocks of ``block`` voxels. Gradients flow
into both the clean and the adversarial branch (nothing is detached), as in the code.
"""

from __future__ import annotations

import torch

from ..attacks.frequency import blockwise_dct3, dct_matrix
from ..attacks.losses import SegLoss, paper_dice_ce


def dct3(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal 3D DCT-II over the last three axes of ``x`` ([..., H, W, D], any sizes)."""
    h, w, d = x.shape[-3:]
    mh, mw, md = (dct_matrix(n, x.device, x.dtype) for n in (h, w, d))
    x = x @ md.t()  # along D
    x = (x.transpose(-1, -2) @ mw.t()).transpose(-1, -2)  # along W
    return (x.transpose(-1, -3) @ mh.t()).transpose(-1, -3)  # along H


def logits_dct(logits: torch.Tensor, block: int | None = None) -> torch.Tensor:
    """DCT coefficients of logits [B, K, H, W, D]: one DCT over the patch, or per cubic block
    (sides that are not multiples of ``block`` are edge-padded, as VAFA pads images)."""
    logits = logits.float()
    if block is None:
        return dct3(logits)
    return blockwise_dct3(logits, block)


def frequency_consistency_loss(
    clean_logits: torch.Tensor,
    adv_logits: torch.Tensor,
    form: str = "l1",
    block: int | None = None,
) -> torch.Tensor:
    """L_fr between the logits of a clean batch and of its adversarial version.

    Args:
        clean_logits, adv_logits: [B, K, H, W, D], the same shape.
        form: ``"l1"`` (paper: mean |D(c) - D(a)|) or ``"normalized"`` (public code:
            sum |D(c) - D(a)| / sum |D(c)|).
        block: DCT block side; None = one DCT over the whole patch.
    Returns:
        A scalar tensor (float32), zero when the logits are identical.
    """
    if clean_logits.shape != adv_logits.shape:
        raise ValueError(
            f"clean and adversarial logits differ in shape: {tuple(clean_logits.shape)} vs "
            f"{tuple(adv_logits.shape)}"
        )
    dc = logits_dct(clean_logits, block)
    da = logits_dct(adv_logits, block)
    diff = (dc - da).abs()
    if form == "l1":
        return diff.mean()
    if form == "normalized":
        return diff.sum() / dc.abs().sum().clamp_min(torch.finfo(dc.dtype).tiny)
    raise ValueError(f"form must be 'l1' or 'normalized', got {form!r}")


def segmentation_loss() -> SegLoss:
    """DiceCE as the paper trains with it (the same loss its attacks maximise; PAPER.md 1.2)."""
    return paper_dice_ce()
