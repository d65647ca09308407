"""The common base of the realistic CT corruptions: HU in, HU out, on the model's grid.

A corruption is registered beside the attacks (same request text, presets, seeds, budgets) so it
runs wherever an attack runs, but it is not adversarial: it never looks at the model's gradient.
It works in physical units: the model's input [B, 1, H, W, D] in [0, 1] is turned back into HU
through the model's intensity window, the corruption changes the HU (noise of a lower dose,
another reconstruction kernel, ...), and the result is windowed again.

Grid: H, W are the in-plane axes and D the axial (through-plane) axis, as the pipeline's RAS model
grid has them; ``spacing_mm`` gives their voxel sides. The pipeline hands each corruption the
model grid's window, spacing and the *unclipped* HU (:meth:`Corruption.use_grid`): the window
clips air to -175 HU, which would make a projection-space simulation see tissue where there is
air. Without them the corruption assumes the paper's preprocessing (window -175..250 HU, 1.5 x 1.5
x 2 mm) and un-windows the input.

    noisy = registry.build("dose:25", model, seed=0)(x, labels)     # like any attack
    hu_out = Dose(model, fraction=0.25, seed=0).apply(hu, (1.5, 1.5, 2.0))   # HU [B, H, W, D] directly
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..attacks.base import Attack, AttackResult, Progress, _generator

PAPER_WINDOW = (-175.0, 250.0)
PAPER_SPACING = (1.5, 1.5, 2.0)
MU_WATER = 0.0192
"""Linear attenuation of water in 1/mm at about 70 keV (a 120 kVp spectrum's effective energy)."""


def hu_to_mu(hu: torch.Tensor) -> torch.Tensor:
    """HU -> linear attenuation in 1/mm (air and below: 0)."""
    return (MU_WATER * (1.0 + hu / 1000.0)).clamp_min(0.0)


def mu_to_hu_change(delta_mu: torch.Tensor) -> torch.Tensor:
    """A change of attenuation (1/mm) as a change of HU."""
    return delta_mu * (1000.0 / MU_WATER)


class Corruption(Attack):
    """Base class: subclasses implement :meth:`corrupt` (HU [B, H, W, D] -> HU, same shape).

    Keyword run options (roi_size, seed, ...) are the attacks' own; ``seed`` makes a corruption
    with randomness reproducible."""

    name = "corruption"
    adversarial = False

    def __init__(self, model: torch.nn.Module, **kwargs) -> None:
        super().__init__(model, **kwargs)
        self.window: tuple[float, float] = PAPER_WINDOW
        self.spacing_mm: tuple[float, float, float] = PAPER_SPACING
        self._hu: torch.Tensor | None = None

    def use_grid(self, window: Sequence[float], spacing_mm: Sequence[float], hu: np.ndarray | torch.Tensor | None = None) -> None:
        """The model grid's intensity window (HU), voxel sides (mm, H, W, D) and, if known, the
        unclipped HU volume [H, W, D] on that grid, whose windowing is the model's input."""
        self.window = (float(window[0]), float(window[1]))
        self.spacing_mm = tuple(float(s) for s in spacing_mm)
        self._hu = None if hu is None else torch.as_tensor(np.asarray(hu, dtype=np.float32))

    # --- the corruption itself ----------------------------------------------------------------

    def corrupt(self, hu: torch.Tensor, spacing_mm: tuple[float, float, float], generator: torch.Generator) -> torch.Tensor:
        """The corrupted HU, [B, H, W, D] -> [B, H, W, D]: a new tensor; ``hu`` must not change."""
        raise NotImplementedError

    def apply(self, hu: torch.Tensor, spacing_mm: Sequence[float] = PAPER_SPACING) -> torch.Tensor:
        """The corruption of ``hu`` ([H, W, D] or [B, H, W, D], HU), seeded by ``seed``; ``hu`` is
        not changed."""
        squeeze = hu.ndim == 3
        volume = (hu[None] if squeeze else hu).detach().float().clone()
        out = self.corrupt(volume, tuple(float(s) for s in spacing_mm), _generator(volume.device, self.seed))
        return out[0] if squeeze else out

    # --- as an attack -------------------------------------------------------------------------

    def _attack(self, x: torch.Tensor, y: torch.Tensor, progress: Progress | None) -> AttackResult:
        a_min, a_max = self.window
        width = a_max - a_min
        if self._hu is not None and tuple(self._hu.shape) == tuple(x.shape[2:]) and x.shape[0] == 1:
            hu = self._hu.to(x.device)[None]  # unclipped: air is air
        else:
            hu = x[:, 0] * width + a_min  # [B, H, W, D]; what the window clipped stays clipped
        corrupted = self.corrupt(hu, self.spacing_mm, self.generator)
        adv = corrupted.sub_(a_min).div_(width).clamp_(0.0, 1.0)[:, None]
        self._tick(progress, 1, 1)
        return AttackResult(adv, x, y, [{"step": 0}], {"corruption": self.name})
