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

ATTACKS: dict[str, type[Attack]] = {
    "vafa": VAFA,
    "pgd": PGD,
    "fgsm": FGSM,
    "bim": BIM,
    "cw": CW,
    "gn": GaussianNoise,
}


# The parameters each attack takes by name: constructor keywords, and the command line's options
# (dashes become underscores). One table for the CLI, the trainer and the Slicer module.
ATTACK_PARAMETERS: dict[str, tuple[str, ...]] = {
    "vafa": ("steps", "q_max", "q_min", "q_init", "block_size", "ssim_weight", "rounding",
             "output_rounding", "renormalize"),
    "pgd": ("steps", "eps", "alpha"),
    "bim": ("steps", "eps", "alpha"),
    "fgsm": ("eps",),
    "gn": ("std",),
    "cw": ("steps", "c", "kappa", "lr"),
}


def build_attack(method: str, model: torch.nn.Module, **params) -> Attack:
    """An attack by its short name (vafa, pgd, fgsm, bim, cw, gn) with its parameters."""
    try:
        cls = ATTACKS[method.lower()]
    except KeyError:
        raise ValueError(f"unknown attack {method!r}; choose one of {', '.join(ATTACKS)}") from None
    return cls(model, **params)


__all__ = [
    "ATTACKS",
    "ATTACK_PARAMETERS",
    "Attack",
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
