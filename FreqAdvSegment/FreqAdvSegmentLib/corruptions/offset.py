"""HU calibration offset: every voxel shifted by the same HU (a scanner's water calibration drift)."""

from __future__ import annotations

import torch

from ..attacks.spec import AttackSpec, Param
from .base import Corruption


class Offset(Corruption):
    """Every voxel plus ``offset_hu``."""

    name = "offset"

    def __init__(self, model: torch.nn.Module, offset_hu: float = 10.0, **kwargs) -> None:
        super().__init__(model, **kwargs)
        self.offset_hu = float(offset_hu)

    def corrupt(self, hu, spacing_mm, generator):
        return hu + self.offset_hu


SPEC = AttackSpec(
    "offset", Offset, "HU offset", "not adversarial: calibration offset, every voxel shifted by the same HU",
    (Param("offset_hu", float, "the shift", "HU", -500, 500),),
    domain="corruption", strength="offset_hu", sweep=(5.0, 10.0, 20.0, 40.0), trainable=False, adversarial=False,
)
