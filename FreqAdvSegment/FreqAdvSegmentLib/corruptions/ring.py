"""Ring artefact: one detector channel off by a gain error, in every view.

A channel whose gain is off by g reads counts (1 + g) times too high, so its line integrals are
off by -log(1 + g) in every view. That constant error at one detector position is filtered and
back-projected like any projection data: a ring of radius ``radius_mm`` around the rotation axis
(taken to be the centre of the slice), dark for a channel that reads high. The ring is the same in
every axial slice: the channel is taken to be off in every detector row.
"""

from __future__ import annotations

import math

import torch

from ..attacks.spec import AttackSpec, Param, Preset
from .base import Corruption, mu_to_hu_change
from .projector import ParallelBeam

VIEWS = 180


def ring_hu(shape: tuple[int, int], pixel_mm: tuple[float, float], radius_mm: float, channel_error: float, device=None) -> torch.Tensor:
    """The HU change [H, W] a channel at ``radius_mm`` with ``channel_error`` (a fraction) makes."""
    beam = ParallelBeam(shape, pixel_mm, views=VIEWS, chunk=30)
    sino = torch.zeros(1, VIEWS, beam.detectors, device=device)
    channel = int(round(radius_mm / beam.pitch)) + (beam.detectors - 1) // 2
    if not 0 <= channel < beam.detectors:  # the ring lies outside the slice: nothing in it changes
        return torch.zeros(shape, device=device)
    sino[0, :, channel] = -math.log1p(channel_error)
    return mu_to_hu_change(beam.fbp(sino)[0])


class Ring(Corruption):
    """A detector channel at ``radius_mm`` from the axis with gain error ``channel_error`` (%)."""

    name = "ring"

    def __init__(self, model: torch.nn.Module, channel_error: float = 1.0, radius_mm: float = 40.0, **kwargs) -> None:
        super().__init__(model, **kwargs)
        if channel_error <= -100:
            raise ValueError(f"channel_error must be > -100 %, got {channel_error}")
        self.channel_error, self.radius_mm = float(channel_error), float(radius_mm)

    def corrupt(self, hu, spacing_mm, generator):
        ring = ring_hu(hu.shape[1:3], spacing_mm[:2], self.radius_mm, self.channel_error / 100.0, hu.device)
        return hu + ring[None, :, :, None]


SPEC = AttackSpec(
    "ring", Ring, "Ring artefact",
    "not adversarial: one detector channel off (gain error), a ring around the rotation axis",
    (
        Param("channel_error", float, "the channel's gain error (positive: reads high, a dark ring)", "%", -99, 1000),
        Param("radius_mm", float, "the channel's distance from the rotation axis (the ring's radius)", "mm", 0, 500),
    ),
    (Preset("strong", "a 5% gain error", {"channel_error": 5.0}),),
    domain="corruption", strength="channel_error", sweep=(0.5, 1.0, 2.0, 5.0), trainable=False, adversarial=False,
)
