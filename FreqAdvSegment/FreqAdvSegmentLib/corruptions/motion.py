"""In-plane patient motion: streaks from views that do not agree, made in projection space.

During one rotation the patient moves by ``shift_mm`` (anterior-posterior, as breathing does)
after a share of the views: the last ``moved_views`` of the views see the shifted anatomy. The
reconstruction of such a sinogram is the scan plus the FBP of (projections of the shifted slice
- projections of the slice) over the moved views; FBP being linear, only that difference is
projected and reconstructed. Inconsistent views leave streaks tangent to high-contrast edges
(bone, air) and a doubled edge, the artefact radiologists know.

To fit in about a second per CT, the difference is projected and reconstructed on a grid of
about ``GRID_MM`` pixels with ``VIEWS`` views and interpolated back: the streaks keep their
course, not their finest detail.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..attacks.spec import AttackSpec, Param, Preset
from .base import Corruption, hu_to_mu, mu_to_hu_change
from .projector import ParallelBeam

GRID_MM = 4.5
VIEWS = 40


def shift_along_w(image: torch.Tensor, shift_px: float) -> torch.Tensor:
    """``image`` [N, H, W] moved by ``shift_px`` pixels along W (linear interpolation; zeros,
    i.e. air, come in)."""
    n, h, w = image.shape
    whole = math.floor(shift_px)
    frac = shift_px - whole
    padded = F.pad(image, (abs(whole) + 1, abs(whole) + 1))
    offset = abs(whole) + 1 - whole
    a = padded[..., offset:offset + w]
    b = padded[..., offset - 1:offset - 1 + w]
    return a * (1 - frac) + b * frac


class Motion(Corruption):
    """The patient moved by ``shift_mm`` part-way through each rotation."""

    name = "motion"

    def __init__(self, model: torch.nn.Module, shift_mm: float = 5.0, moved_views: float = 0.5, **kwargs) -> None:
        super().__init__(model, **kwargs)
        if not 0 < moved_views < 1:
            raise ValueError(f"moved_views must be in (0, 1), got {moved_views}")
        self.shift_mm, self.moved_views = float(shift_mm), float(moved_views)

    def corrupt(self, hu, spacing_mm, generator):
        b, h, w, d = hu.shape
        k = max(1, int(round(GRID_MM / min(spacing_mm[:2]))))
        pixel = (spacing_mm[0] * k, spacing_mm[1] * k)
        mu = hu_to_mu(hu.permute(0, 3, 1, 2).reshape(b * d, h, w))
        coarse = F.avg_pool2d(mu[:, None], k, ceil_mode=True, count_include_pad=False)[:, 0] if k > 1 else mu
        moved = shift_along_w(coarse, self.shift_mm / pixel[1]) - coarse
        beam = ParallelBeam(coarse.shape[1:], pixel, views=VIEWS, chunk=VIEWS)
        first = int(round(VIEWS * (1 - self.moved_views)))
        views = torch.arange(first, VIEWS)
        delta = beam.fbp(beam.project(moved, views), views)  # the moved views' disagreement
        if k > 1:
            delta = F.interpolate(delta[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
        delta = mu_to_hu_change(delta).reshape(b, d, h, w).permute(0, 2, 3, 1)
        return hu + delta


SPEC = AttackSpec(
    "motion", Motion, "Patient motion",
    "not adversarial: in-plane motion during the rotation (inconsistent views, made in projection space)",
    (
        Param("shift_mm", float, "how far the patient moved (anterior-posterior)", "mm", -100, 100),
        Param("moved_views", float, "share of each rotation's views taken after the move", "fraction of views", 0.01, 0.99),
    ),
    (
        Preset("small", "a 3 mm move", {"shift_mm": 3.0}),
        Preset("large", "a 10 mm move", {"shift_mm": 10.0}),
    ),
    domain="corruption", strength="shift_mm", sweep=(2.0, 5.0, 10.0), trainable=False, adversarial=False,
)
