"""Adversarial attacks on volumetric segmentation models, torchattacks-style.

    from FreqAdvSegmentLib.attacks import VAFA, SA2, PGD, SegPGD, CosPGD, APGD, WorstCase, registry
    attack = VAFA(model, q_max=20, steps=20, block_size=8)
    attack = registry.build("vafa:public-code", model, {"q_max": 30})   # by name, preset, params
    x_adv = attack(images, labels)      # images [B, 1, H, W, D] in [0, 1], labels [B, 1, H, W, D] or None

Where things live: ``registry.py`` (the one list of attacks), ``spec.py`` (how an attack describes
its parameters and presets), ``catalog.py`` (the descriptions by name and the request grammar,
read without PyTorch from ``resources/attack_catalog.json`` where the registry is not imported),
``vafa.py`` and ``sa2.py`` (the frequency attacks), ``frequency.py`` (blockwise 3D DCT and
rounding), ``voxel.py`` (FGSM, PGD, BIM, CW, noise), ``segpgd.py``, ``cospgd.py``, ``apgd.py``
(PGD variants), ``ensemble.py`` (the worst-case ensemble), ``options.py`` (command-line flags
from the registry), ``base.py`` (shared checks, gradients, sliding windows), ``network.py``
(autocast, whole-volume prediction), ``padding.py`` (padding to the network's multiple),
``measures.py`` (perturbation size and spectrum), ``docs.py`` (the README table and the catalog file).

``attacks/`` imports nothing else from the engine. Importing this package imports no PyTorch:
each name below is imported when first used (PEP 562), so ``attacks.catalog`` and
``attacks.spec`` work where PyTorch cannot be imported (Slicer's GUI process).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Attack": "base", "AttackInputError": "base", "AttackResult": "base", "eps_from_255": "base",
    "APGD": "apgd", "CosPGD": "cospgd", "WorstCase": "ensemble", "SA2": "sa2", "SegPGD": "segpgd",
    "VAFA": "vafa", "BIM": "voxel", "CW": "voxel", "FGSM": "voxel", "PGD": "voxel", "GaussianNoise": "voxel",
    "AttackSpec": "spec", "AttackInfo": "spec", "Param": "spec", "Preset": "spec", "SameAs": "spec",
    "build_attack": "registry",
}

__all__ = sorted([*_EXPORTS, "registry", "catalog"])


def __getattr__(name: str) -> Any:
    """Import a submodule only when one of its names is first used (PEP 562)."""
    if name in ("registry", "catalog"):
        return import_module(f".{name}", __name__)
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _EXPORTS[name]
    if module not in ("spec", "base"):
        import_module(".registry", __name__)  # an attack class's members (the ensemble's) are looked up there
    return getattr(import_module(f".{module}", __name__), name)
