"""Gradient checkpointing: recompute activations in the backward pass instead of storing them.

SwinUNETR has its own switch (``use_checkpoint``); it is turned on in place. For the other
networks (UNETR, UNet, SegResNet) the forward of each outermost building block (transformer
block, residual unit, convolution block, up-sampling block) is wrapped in
``torch.utils.checkpoint.checkpoint`` (non-reentrant, so it works under DDP and with inputs that
do not require gradients). The wrapping replaces the instance's ``forward`` only: parameter
names and the saved weights are unchanged, and in eval mode or under ``no_grad`` (attacks,
validation) the blocks run as usual.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

# MONAI building blocks worth one checkpoint each (outermost match wins).
CHECKPOINT_BLOCKS = frozenset({
    "TransformerBlock",  # UNETR's ViT
    "UnetrBasicBlock", "UnetrUpBlock", "UnetrPrUpBlock", "UnetResBlock", "UnetBasicBlock",
    "ResidualUnit", "Convolution",  # UNet
    "ResBlock",  # SegResNet
})


def enable_gradient_checkpointing(model: torch.nn.Module) -> int:
    """Turn on activation checkpointing in ``model``; returns how many places were switched."""
    native = [m for m in model.modules() if hasattr(m, "use_checkpoint")]
    if native:
        for module in native:
            module.use_checkpoint = True
        return len(native)
    count = 0
    stack = list(model.children())
    while stack:
        module = stack.pop()
        if type(module).__name__ in CHECKPOINT_BLOCKS:
            _wrap_forward(module)
            count += 1
        else:
            stack.extend(module.children())
    return count


def _wrap_forward(module: torch.nn.Module) -> None:
    forward = module.forward

    def checkpointed(*args, **kwargs):
        if module.training and torch.is_grad_enabled():
            return checkpoint(forward, *args, use_reentrant=False, **kwargs)
        return forward(*args, **kwargs)

    module.forward = checkpointed
