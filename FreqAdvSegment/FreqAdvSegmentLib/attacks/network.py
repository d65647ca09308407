"""Running the network an attack works against: mixed precision, and whole-volume prediction.

An attack needs the model's clean prediction (the labels it attacks when there is no ground
truth) and its logits under autocast. This lives here, inside ``attacks/``, so that the attacks
depend on nothing else in the engine; the job's inference (:mod:`..job.inference`) builds on it.

    with autocast(device, "bf16"):
        logits = padded_forward(model, x)               # see .padding
    labels = predict_labels(model, x, roi_size=(96, 96, 96))   # [B, 1, H, W, D]
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from monai.inferers import sliding_window_inference

from .padding import padded_forward

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, amp: str | None) -> contextlib.AbstractContextManager:
    """Autocast for ``amp`` in (None, "bf16", "fp16"); fp16 only on CUDA."""
    if amp is None:
        return contextlib.nullcontext()
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp must be None, 'bf16' or 'fp16', got {amp!r}")
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("fp16 autocast needs a CUDA device; use amp='bf16' or None on CPU")
    return torch.autocast(device.type, dtype=AMP_DTYPES[amp])


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    x: torch.Tensor,
    roi_size: Sequence[int] | None,
    overlap: float = 0.25,
    sw_batch_size: int = 2,
    amp: str | None = None,
    mode: str = "gaussian",
    roi_weight_map: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits [B, K, H, W, D] (float32) for images [B, C, H, W, D]: one padded pass when
    ``roi_size`` is None, else sliding windows of ``roi_size`` blended by ``mode`` ("gaussian" or
    "constant", MONAI's) or by ``roi_weight_map`` [h, w, d] when one is given."""
    device = next(model.parameters()).device
    x = x.to(device)
    with autocast(device, amp):
        if roi_size is None:
            logits = padded_forward(model, x)  # padded to the model's multiple, cropped back
        else:
            logits = sliding_window_inference(
                x, tuple(roi_size), sw_batch_size, model, overlap=overlap, mode=mode, roi_weight_map=roi_weight_map
            )
    return logits.float()


def predict_labels(
    model: torch.nn.Module,
    x: torch.Tensor,
    roi_size: Sequence[int] | None,
    overlap: float = 0.25,
    sw_batch_size: int = 2,
    amp: str | None = None,
) -> torch.Tensor:
    """Label map [B, 1, H, W, D]: the argmax of :func:`predict_logits` (Gaussian blending)."""
    return predict_logits(model, x, roi_size, overlap, sw_batch_size, amp).argmax(1, keepdim=True)
