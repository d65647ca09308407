"""Realistic CT corruptions, registered beside the attacks but not adversarial.

    from FreqAdvSegmentLib.attacks import registry
    registry.build("dose:25", model, seed=0)(x, labels)     # x [B, 1, H, W, D] in [0, 1], like an attack
    registry.get("dose").adversarial                          # False

One file per corruption, each with its class and its registry ``SPEC``: ``dose.py`` (reduced
dose: quantum noise via projection space and FBP), ``kernel.py`` (reconstruction kernel, MTF10
in lp/cm), ``thickness.py`` (slices averaged to N mm and back), ``motion.py`` (in-plane motion,
inconsistent views), ``ring.py`` (a detector channel off), ``noise.py`` (Gaussian noise in HU),
``blur.py`` (Gaussian blur, FWHM in mm), ``offset.py`` (HU calibration offset). ``projector.py``
is the parallel-beam projector and FBP they share; ``base.py`` the HU-in, HU-out base class.
"""

from __future__ import annotations

from . import blur, dose, kernel, motion, noise, offset, ring, thickness
from .base import Corruption
from .blur import Blur
from .dose import Dose
from .kernel import Kernel
from .motion import Motion
from .noise import Noise
from .offset import Offset
from .ring import Ring
from .thickness import Thickness

SPECS = (dose.SPEC, kernel.SPEC, thickness.SPEC, motion.SPEC, ring.SPEC, noise.SPEC, blur.SPEC, offset.SPEC)
"""Every corruption's registry entry, in the order menus list them (after the attacks)."""

__all__ = ["SPECS", "Blur", "Corruption", "Dose", "Kernel", "Motion", "Noise", "Offset", "Ring", "Thickness"]
