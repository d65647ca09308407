"""White Gaussian noise in HU: the generic corruption users expect (no CT physics; see ``dose``
for the noise a lower dose really adds)."""

from __future__ import annotations

import torch

from ..attacks.spec import AttackSpec, Param
from .base import Corruption


class Noise(Corruption):
    """Independent Gaussian noise of standard deviation ``sigma_hu`` in every voxel."""

    name = "noise"

    def __init__(self, model: torch.nn.Module, sigma_hu: float = 10.0, **kwargs) -> None:
        super().__init__(model, **kwargs)
        if sigma_hu < 0:
            raise ValueError(f"sigma_hu must be >= 0, got {sigma_hu}")
        self.sigma_hu = float(sigma_hu)

    def corrupt(self, hu, spacing_mm, generator):
        return hu + self.sigma_hu * torch.randn(hu.shape, generator=generator, device=hu.device)


SPEC = AttackSpec(
    "noise", Noise, "Noise (HU)", "not adversarial: white Gaussian noise in HU",
    (Param("sigma_hu", float, "noise standard deviation", "HU", 0, 1000),),
    domain="corruption", strength="sigma_hu", sweep=(5.0, 10.0, 20.0, 40.0), trainable=False, adversarial=False,
)
