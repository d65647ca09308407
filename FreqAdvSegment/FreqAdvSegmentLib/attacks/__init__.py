"""Adversarial attacks on volumetric segmentation models, torchattacks-style.

    from FreqAdvSegmentLib.attacks import VAFA, SA2, PGD, SegPGD, CosPGD, APGD, WorstCase, registry
    attack = VAFA(model, q_max=20, steps=20, block_size=8)
    attack = registry.build("vafa:public-code", model, {"q_max": 30})   # by name, preset, params
    x_adv = attack(images, labels)      # images [B, 1, H, W, D] in [0, 1], labels [B, 1, H, W, D] or None

Where things live: ``registry.py`` (the one list of attacks), ``spec.py`` (how an attack describes
its parameters and presets), ``vafa.py`` and ``sa2.py`` (the frequency attacks), ``frequency.py``
(blockwise 3D DCT and rounding), ``voxel.py`` (FGSM, PGD, BIM, CW, noise), ``segpgd.py``,
``cospgd.py``, ``apgd.py`` (PGD variants), ``ensemble.py`` (the worst-case ensemble),
``options.py`` (command-line flags from the registry), ``base.py`` (shared checks, gradients,
sliding windows, padding), ``measures.py`` (perturbation size and spectrum).
"""

from __future__ import annotations

import torch

from .base import Attack, AttackInputError, AttackResult, eps_from_255
from .apgd import APGD
from .cospgd import CosPGD
from .ensemble import WorstCase
from .sa2 import SA2
from .segpgd import SegPGD
from .vafa import VAFA
from .voxel import BIM, CW, FGSM, PGD, GaussianNoise

from . import registry
from .spec import AttackSpec, Param, Preset, SameAs


def build_attack(method: str, model: torch.nn.Module, **params) -> Attack:
    """An attack by its method (``vafa``, ``pgd``, ``vafa:public-code``, ...; see ``registry.names()``)
    with its parameters; the run options roi_size, overlap, sw_batch_size, amp, seed pass through."""
    run_keys = ("roi_size", "overlap", "sw_batch_size", "loss", "amp", "seed")
    run_options = {k: params.pop(k) for k in run_keys if k in params}
    return registry.build(method, model, params, **run_options)


__all__ = [
    "APGD",
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
    "CosPGD",
    "FGSM",
    "GaussianNoise",
    "PGD",
    "SA2",
    "SegPGD",
    "VAFA",
    "WorstCase",
    "build_attack",
    "eps_from_255",
]
