"""Make a state dict written elsewhere fit a freshly built network, or say exactly why it cannot.

Handles the wrappers and renames seen in practice: DDP's "module." prefix, torch.compile's
"_orig_mod." prefix, and MONAI 0.7-era UNETR (the paper's checkpoints), which has
``vit.patch_embedding.cls_token`` and lacks ``vit.blocks.N.norm_cross_attn.{weight,bias}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from .spec import KNOWN_ARCHS

StateDict = dict[str, torch.Tensor]

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")

# MONAI 0.7 ViT kept a classification token even without a classification head; today's ViT
# only has one when classification=True. It never influenced segmentation outputs.
_LEGACY_UNETR_DROPPED = ("vit.patch_embedding.cls_token",)

# Present in today's TransformerBlock whether or not cross-attention is used; without
# cross-attention these LayerNorm parameters are never touched in forward().
_CROSS_ATTN_NORM = re.compile(r"^vit\.blocks\.\d+\.norm_cross_attn\.(weight|bias)$")

# First key prefixes that identify each MONAI network, most specific first.
_ARCH_PREFIXES = (
    ("swinViT.", "swinunetr"),
    ("vit.", "unetr"),
    ("convInit.", "segresnet"),
    ("model.0.", "unet"),
)

_SHOW = 5  # names listed per category in an error message


def strip_wrapper_prefixes(state: Mapping[str, torch.Tensor]) -> StateDict:
    """Drop "module." (DDP/DataParallel) and "_orig_mod." (torch.compile) prefixes.

    A prefix is only stripped when every key has it, so a real submodule named "module" in
    part of a network is left alone.
    """
    state = dict(state)
    changed = True
    while changed and state:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(key.startswith(prefix) for key in state):
                state = {key[len(prefix) :]: value for key, value in state.items()}
                changed = True
    return state


def remap_legacy_unetr(state: StateDict, reference: Mapping[str, torch.Tensor]) -> StateDict:
    """MONAI 0.7 UNETR names -> today's: drop cls_token, fill norm_cross_attn from reference.

    reference: the freshly built model's state dict (its norm_cross_attn values are the
    LayerNorm initial ones, which is all an unused layer needs).
    """
    state = {k: v for k, v in state.items() if k not in _LEGACY_UNETR_DROPPED or k in reference}
    for key, value in reference.items():
        if key not in state and _CROSS_ATTN_NORM.match(key):
            state[key] = value.detach().clone()
    return state


def guess_arch(keys: list[str] | tuple[str, ...]) -> str | None:
    """Which of KNOWN_ARCHS a state dict with these keys most likely belongs to, or None."""
    for prefix, arch in _ARCH_PREFIXES:
        if any(key.startswith(prefix) for key in keys):
            return arch
    return None


def fit_state_dict(
    state: Mapping[str, torch.Tensor],
    reference: Mapping[str, torch.Tensor],
    arch: str,
    source: str = "checkpoint",
) -> StateDict:
    """state remapped so that its names and shapes equal reference's, else ValueError.

    reference: state dict of the model built from the spec (arch). source: what to call the
    checkpoint in the message (its path).
    """
    state = strip_wrapper_prefixes(state)
    original_keys = list(state)
    if arch == "unetr" and guess_arch(original_keys) == "unetr":
        state = remap_legacy_unetr(state, reference)
    missing = [k for k in reference if k not in state]
    unexpected = [k for k in state if k not in reference]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(reference[k].shape)}"
        for k in reference
        if k in state and tuple(state[k].shape) != tuple(reference[k].shape)
    ]
    if missing or unexpected or mismatched:
        message = _misfit_message(source, arch, missing, unexpected, mismatched, original_keys)
        raise ValueError(message)
    return state


def _misfit_message(
    source: str,
    arch: str,
    missing: list[str],
    unexpected: list[str],
    mismatched: list[str],
    keys: list[str],
) -> str:
    lines = [f"{source} does not fit the {arch} network built from the model spec:"]
    for title, names in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("shape mismatch", mismatched),
    ):
        if names:
            shown = "".join(f"\n    {name}" for name in names[:_SHOW])
            more = f"\n    ... and {len(names) - _SHOW} more" if len(names) > _SHOW else ""
            lines.append(f"  {title} ({len(names)}):{shown}{more}")
    lines.append(_hint(arch, guess_arch(keys)))
    return "\n".join(lines)


def _hint(arch: str, guessed: str | None) -> str:
    if guessed is None:
        return (
            "Its parameter names match none of the known networks "
            f"({', '.join(KNOWN_ARCHS)}); it may not be a MONAI segmentation model."
        )
    if guessed != arch:
        return (
            f"Its parameter names look like a {guessed} checkpoint: try --arch {guessed} "
            f"(or ModelSpec(arch={guessed!r}, ...))."
        )
    return (
        f"Its parameter names are those of a {arch}, so the sizes differ: check arch_args "
        "(e.g. feature_size, hidden_size, channels, in_channels, out_channels) against the "
        "settings it was trained with."
    )
