"""SA²: the spectral adversarial attack (Hanif et al., ISBI 2025; public code asif-hanif/saa).

Where VAFA learns a quantisation table per DCT block (a lossy 3D JPEG), SA² learns a
multiplicative factor per blockwise 3D DCT coefficient and never rounds:

    x' = clip(IDCT(DCT(x) * f), 0, 1),   f in [1 - rho, 1 + rho] per coefficient
    f <- clip(f + 0.1 * sign(grad_f [L_seg(M(x'), y) - ssim_weight * (1 - SSIM(x, x'))]), 1 - rho, 1 + rho)

The factors start uniform in [1 - rho, 1 + rho]. The DC coefficient of each block is never
scaled (a block's mean intensity stays), and ``band`` restricts the factors to the low, middle
or high frequencies of the block (:func:`band_mask`); every other coefficient keeps factor 1.
Because each coefficient changes by at most rho of itself, the perturbation follows the image's
own spectrum, which keeps SSIM high at a given Dice drop (the paper: UNETR on Synapse, Dice
74.3 -> 37.2 at SSIM about 0.95, where VAFA reaches 37.9 at SSIM about 0.66).

During the steps the model sees x' unclipped, as in the public code (clipping would zero the
gradient of saturated voxels); the returned volume is clipped to [0, 1]. As in the public code,
the returned volume is the x' of the last step, computed before the last update of the factors.
"""

from __future__ import annotations

import torch

from .base import Attack, AttackInputError, AttackResult, Progress
from .frequency import blockwise_dct3, from_blocks, idct3_blocks
from .spec import RATIO, STEPS, VOXELS, WEIGHT, AttackSpec, Param, Preset
from .ssim import ssim3d

BANDS = ("all", "low", "middle", "high")
FACTOR_STEP = 0.1  # the paper's signed step on the factors
# The authors' README runs loss = -0.2 DiceCE + 0.75 (1 - SSIM). Signed steps only see the sign of
# the gradient, so dividing by 0.2 changes nothing: DiceCE - 3.75 (1 - SSIM) in this module's form.
README_SSIM_WEIGHT = 0.75 / 0.2


def band_mask(block: int, band: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """Which coefficients of a [b, b, b] DCT block SA² scales (bool [b, b, b]).

    With s = i + j + k the coefficient's index sum (0 at DC, 3(b-1) at the highest frequency) and
    h = b // 2: low is s <= b - 1 - h with k < h, high is s >= 2(b - 1) + h, middle is the rest:
    the public code's ``get_masks`` (triangles stacked along the last axis) written as index
    sums, odd block sizes included. ``all`` is every coefficient. DC is never scaled, whatever
    the band.
    """
    if band not in BANDS:
        raise ValueError(f"band must be one of {', '.join(BANDS)}, got {band!r}")
    r = torch.arange(block, device=device)
    s = r[:, None, None] + r[None, :, None] + r[None, None, :]
    half = block // 2
    masks = {
        "all": torch.ones_like(s, dtype=torch.bool),
        "low": (s <= block - 1 - half) & (r[None, None, :] < half),
        "high": s >= 2 * (block - 1) + half,
    }
    masks["middle"] = ~(masks["low"] | masks["high"])
    mask = masks[band].clone()
    mask[0, 0, 0] = False
    return mask


class SA2(Attack):
    """SA² (see the module docstring).

    Args:
        rho: factor range [1 - rho, 1 + rho] (paper: 0.2).
        steps: signed steps of 0.1 on the factors (paper: 10).
        block_size: side of the cubic DCT blocks (paper: 8).
        band: ``all``, ``low``, ``middle`` or ``high`` frequencies of each block.
        ssim_weight: weight of the (1 - SSIM) term; 0 (the default) turns it off.
    """

    name = "sa2"

    def __init__(
        self,
        model: torch.nn.Module,
        rho: float = 0.2,
        steps: int = 10,
        block_size: int = 8,
        band: str = "all",
        ssim_weight: float = 0.0,
        **kwargs,
    ) -> None:
        super().__init__(model, **kwargs)
        if not 0.0 <= rho < 1.0:
            raise ValueError(f"rho must lie in [0, 1) (factors in [1 - rho, 1 + rho]), got {rho}")
        if steps < 0 or block_size < 1 or ssim_weight < 0:
            raise ValueError(f"steps, block_size and ssim_weight must be >= 0, 1, 0; got {steps}, {block_size}, {ssim_weight}")
        band_mask(1, band)  # checks the name
        self.rho, self.steps, self.block_size = float(rho), int(steps), int(block_size)
        self.band, self.ssim_weight = band, float(ssim_weight)

    def _attack(self, x: torch.Tensor, y: torch.Tensor, progress: Progress | None) -> AttackResult:
        if min(x.shape[2:]) < self.block_size:
            raise AttackInputError(
                f"block_size {self.block_size} is larger than the volume's smallest side {min(x.shape[2:])}; "
                "choose a block of at most that size"
            )
        shape = tuple(x.shape[2:])
        coeffs = blockwise_dct3(x, self.block_size)  # [B, C, nH, nW, nD, b, b, b], constant over the steps
        mask = band_mask(self.block_size, self.band, x.device)
        lo, hi = 1.0 - self.rho, 1.0 + self.rho
        factors = lo + (hi - lo) * torch.rand(coeffs.shape, generator=self.generator, device=x.device)
        used = factors  # the factors of the last x' the model saw: the public code returns that x'
        history = []
        for step in range(self.steps):
            used = factors.detach()
            factors.requires_grad_(True)
            x_adv = self.transform(coeffs, factors, mask, shape)
            seg_loss, grad_x = self.loss_grad(x_adv, y)
            # Chain rule through the window loop: d(seg_loss)/df = <grad_x, d x_adv / df>.
            objective = (x_adv * grad_x).sum()
            ssim = None
            if self.ssim_weight > 0:
                ssim = ssim3d(x, x_adv).mean()
                objective = objective - self.ssim_weight * (1.0 - ssim)
            (grad_f,) = torch.autograd.grad(objective, factors)
            factors = (factors.detach() + FACTOR_STEP * grad_f.sign()).clamp_(lo, hi)
            entry = {"step": step, "loss": seg_loss}
            if ssim is not None:
                entry["ssim"] = float(ssim.detach())
            history.append(entry)
            self._tick(progress, step + 1, self.steps)
        with torch.no_grad():
            x_adv = self.transform(coeffs, used, mask, shape).clamp(0.0, 1.0)
            effective = torch.where(mask, used, torch.ones_like(used))
        return AttackResult(x_adv, x, y, history, {"factors": effective})

    @staticmethod
    def transform(coeffs: torch.Tensor, factors: torch.Tensor, mask: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
        """IDCT(coeffs * f) with f = factors inside ``mask`` and 1 elsewhere, unclipped.

        Args:
            coeffs, factors: [B, C, nH, nW, nD, b, b, b]; mask: bool [b, b, b].
        Returns:
            [B, C, H, W, D] cropped to ``shape``.
        """
        scaled = torch.where(mask, coeffs * factors, coeffs)
        return from_blocks(idct3_blocks(scaled), shape)


SPEC = AttackSpec(
    name="sa2",
    cls=SA2,
    title="SA²",
    summary="spectral attack: learnable factor in [1-rho, 1+rho] per blockwise DCT coefficient (Hanif et al., ISBI 2025)",
    domain="frequency",
    params=(
        Param("rho", float, "factor range [1 - rho, 1 + rho] per DCT coefficient (paper: 0.2)", RATIO, 0, 0.99),
        Param("steps", int, "attack steps (paper: 10 for SA²)", STEPS, 0, 1000),
        Param("block_size", int, "side of the cubic DCT blocks (paper: 8)", VOXELS, 1, 128),
        Param("band", str, "frequencies of each block SA² scales: all, low, middle or high", choices=BANDS),
        Param("ssim_weight", float, "weight of the (1 - SSIM) term; 0 turns it off (SA² default: off)", WEIGHT, 0, 1000),
    ),
    presets=(
        Preset("paper", "the paper's text and the public code's class defaults: rho 0.2, 10 steps, 8^3 blocks, "
               "every band, no SSIM term"),
        Preset("authors-run", "the authors' documented run (their README command): rho 0.4, 10 steps, 16^3 blocks, "
               "SSIM on with lambda_ssim 0.75 against lambda_dice 0.2 (weight 3.75 here)",
               {"rho": 0.4, "block_size": 16, "ssim_weight": README_SSIM_WEIGHT}),
        Preset("ssim", "with the optional SSIM term, weight 1", {"ssim_weight": 1.0}),
    ),
    strength="rho",
    sweep=(0.05, 0.1, 0.2, 0.3, 0.5),
)
