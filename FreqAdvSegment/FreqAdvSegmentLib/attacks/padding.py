"""Volumes a network cannot take as they are: pad to its required multiple, crop the logits back.

A MONAI UNet with two stride-2 levels needs sides divisible by 4: on a 30 x 27 x 21 volume its
skip connections no longer line up and torch fails deep inside ("Sizes of tensors must match").
:func:`padded_forward` pads the input (edge-replicated, inside the autograd graph, so gradients
of the padding flow back to the real border voxels) and crops the logits to the input's grid, so
losses and predictions only ever see real voxels. A network of one fixed input size (UNETR) is
padded up to it, and a larger volume is refused with a message naming the size.

    multiple, fixed = input_rule(model)           # (4, None) for a UNet with strides (2, 2)
    logits = padded_forward(model, x)             # x [B, C, H, W, D] -> [B, K, H, W, D]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


class ShapeError(ValueError):
    """A volume the model cannot take even after padding; the message says what to do."""


def input_rule(model: torch.nn.Module) -> tuple[int, tuple[int, int, int] | None]:
    """(multiple every side must have, fixed input size or None) of the first known network in
    ``model`` (wrappers are looked through). Unknown networks: (1, None), no padding."""
    from monai.networks.nets import UNETR, SegResNet, SwinUNETR, UNet

    for module in model.modules():
        if isinstance(module, UNet):
            return math.prod(_stride(s) for s in module.strides), None
        if isinstance(module, SegResNet):
            return 2 ** (len(module.blocks_down) - 1), None
        if isinstance(module, SwinUNETR):
            return 32, None
        if isinstance(module, UNETR):
            return 1, tuple(int(f * p) for f, p in zip(module.feat_size, module.patch_size))  # type: ignore[return-value]
    return 1, None


def padded_shape_for(model: torch.nn.Module, shape: Sequence[int]) -> tuple[int, ...]:
    """The (H, W, D) the model is run on for a volume of ``shape`` (ShapeError if none fits)."""
    multiple, fixed = input_rule(model)
    if fixed is not None:
        if any(s > f for s, f in zip(shape, fixed)):
            raise ShapeError(
                f"the model takes volumes of at most {fixed} (its fixed input size), got {tuple(shape)}; "
                f"attack or segment it with sliding windows of {fixed} (roi_size, or --roi on the command line)"
            )
        return tuple(fixed)
    return tuple(int(math.ceil(s / multiple) * multiple) for s in shape)


def padded_forward(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` for any x [B, C, H, W, D] the model can take after padding; logits
    [B, K, H, W, D] on x's grid. Differentiable with respect to x."""
    shape = tuple(x.shape[2:])
    target = padded_shape_for(model, shape)
    if target == shape:
        return model(x)
    pads = [amount for s, t in zip(reversed(shape), reversed(target)) for amount in (0, t - s)]
    logits = model(F.pad(x, pads, mode="replicate"))
    h, w, d = shape
    return logits[:, :, :h, :w, :d]


def _stride(stride: int | Sequence[int]) -> int:
    # A per-axis stride (2, 2, 1) needs the largest multiple on every axis; keep it simple.
    return int(stride) if isinstance(stride, int) else max(int(s) for s in stride)
