"""Adversarial attacks on volumetric segmentation models, torchattacks-style.

    from FreqAdvSegmentLib.attacks import VAFA, FGSM, PGD, BIM, CW, GaussianNoise
    attack = VAFA(model, q_max=20, steps=20, block_size=8)
    x_adv = attack(images, labels)      # images [B, 1, H, W, D] in [0, 1], labels [B, 1, H, W, D] or None

Where things live: ``vafa.py`` (the frequency attack), ``frequency.py`` (blockwise 3D DCT and
rounding), ``voxel.py`` (FGSM, PGD, BIM, CW, noise), ``base.py`` (shared checks, gradients and
sliding windows), ``measures.py`` (perturbation size and spectrum).
"""

from __future__ import annotations

import torch

from .base import Attack, AttackInputError, AttackResult, eps_from_255
from .vafa import VAFA
from .voxel import BIM, CW, FGSM, PGD, GaussianNoise

from . import registry
from .spec import AttackSpec, Param, Preset, SameAs

# Views of the registry kept for old callers; new code asks ``registry`` (they miss attacks
# registered after import).
ATTACKS: dict[str, type[Attack]] = {s.name: s.cls for s in registry.specs()}
ATTACK_PARAMETERS: dict[str, tuple[str, ...]] = {s.name: s.param_names for s in registry.specs()}


def build_attack(method: str, model: torch.nn.Module, **params) -> Attack:
    """An attack by its method (``vafa``, ``pgd``, ``vafa:public-code``, ...; see ``registry.names()``)
    with its parameters; the run options roi_size, overlap, sw_batch_size, amp, seed pass through."""
    run_keys = ("roi_size", "overlap", "sw_batch_size", "loss", "amp", "seed")
    run_options = {k: params.pop(k) for k in run_keys if k in params}
    return registry.build(method, model, params, **run_options)


__all__ = [
    "ATTACKS",
    "ATTACK_PARAMETERS",
    "Attack",
    "AttackSpec",
    "Param",
    "Preset",
    "SameAs",
    "registry",
    "AttackInputError",
    "AttackResult",
    "BIM",
    "CW",
    "FGSM",
    "GaussianNoise",
    "PGD",
    "VAFA",
    "build_attack",
    "eps_from_255",
]
