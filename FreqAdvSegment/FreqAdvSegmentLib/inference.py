"""Running a segmentation model: device choice, model loading, sliding-window inference."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from monai.inferers import sliding_window_inference

from .models import ModelSpec, load_model, resolve_model
from .models.registry import registry_spec
from .shapes import padded_forward

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class LoadedModel:
    """A network with the metadata that says how to run it (see :class:`ModelSpec`)."""

    model: torch.nn.Module
    spec: ModelSpec
    name: str
    device: torch.device


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r} is not supported; use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count() > 0:
        raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} GPU(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but this machine has no CUDA GPU; use --device cpu")
    return dev


def load_segmentation_model(
    name_or_path: str | os.PathLike = "demo-unet", device: str | torch.device = "cpu", spec: ModelSpec | None = None
) -> LoadedModel:
    """A registry model (see ``freqadv models``) or a checkpoint file/bundle folder, in eval mode."""
    dev = resolve_device(device) if isinstance(device, str) else device
    path = resolve_model(name_or_path)
    if spec is None and isinstance(name_or_path, str):
        spec = registry_spec(name_or_path)
    model, spec = load_model(path, spec=spec, device=str(dev))
    return LoadedModel(model.to(dev).eval(), spec, str(name_or_path), dev)


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
) -> torch.Tensor:
    """Logits [B, K, H, W, D] for images [B, C, H, W, D]; Gaussian-blended sliding windows of
    ``roi_size`` (MONAI's SlidingWindowInferer), or one pass when ``roi_size`` is None."""
    device = next(model.parameters()).device
    x = x.to(device)
    with autocast(device, amp):
        if roi_size is None:
            logits = padded_forward(model, x)  # padded to the model's multiple, cropped back
        else:
            logits = sliding_window_inference(x, tuple(roi_size), sw_batch_size, model, overlap=overlap, mode="gaussian")
    return logits.float()


def segment(
    model: torch.nn.Module,
    x: torch.Tensor,
    roi_size: Sequence[int] | None,
    overlap: float = 0.25,
    sw_batch_size: int = 2,
    amp: str | None = None,
) -> torch.Tensor:
    """Label map [B, 1, H, W, D] (argmax of :func:`predict_logits`)."""
    return predict_logits(model, x, roi_size, overlap, sw_batch_size, amp).argmax(1, keepdim=True)
