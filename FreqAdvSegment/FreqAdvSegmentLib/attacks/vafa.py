"""VAFA: the Volumetric Adversarial Frequency Attack (Hanif et al., MICCAI 2023, Alg. 1).

VAFA is an adversarial, learnable 3D JPEG. The volume is cut into cubic blocks; each block's 3D
DCT coefficients c are quantised with a learnable table q and rounded, then de-quantised and
transformed back:  x' = IDCT(round(c / q) * q). The tables are optimised with signed gradient
ascent to make the model fail while staying perceptually close:

    maximise over q:  L_seg(M(x'), y) - ssim_weight * (1 - mean_blocks SSIM(x, x'))
    q <- clip(q + sign(grad_q), q_min, q_max)

Defaults follow the paper's Algorithm 1. ``VAFA.public_code(...)`` reproduces the authors'
public code where it differs (PAPER.md section 1.2/8):

| choice              | paper (default)         | public code (``public_code``)          |
|---------------------|-------------------------|-----------------------------------------|
| table start         | 1 (``q_init=None``)      | q_max                                   |
| table range         | [1, q_max]              | [5, q_max]                              |
| output rounding     | hard round              | soft round at the last alpha (0.005)    |
| output range        | clipped to [0, 1]       | every axial slice min-max renormalised  |
| SSIM term           | on, weight 1            | on when --use_ssim_loss, weight 1       |

Coefficients are computed on the 0-255 scale with a -128 shift (as JPEG and the public code
do), so q is in the familiar JPEG units whatever the volume's range. Gradients flow through a
tanh soft rounding whose sharpness grows over the steps (``rounding="soft"``, the code's
schedule) or through a straight-through hard rounding (``rounding="ste"``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import Attack, AttackInputError, AttackResult, Progress
from .frequency import (
    alpha_schedule,
    from_blocks,
    idct3_blocks,
    blockwise_dct3,
    soft_round,
    ste_round,
)
from .spec import JPEG, STEPS, VOXELS, WEIGHT, AttackSpec, Param, Preset, SameAs
from .ssim import blockwise_ssim3d, ssim3d


class VAFA(Attack):
    """Frequency-domain attack with learnable per-coefficient quantisation tables.

    Args:
        model: segmentation network, logits [N, K, h, w, d].
        q_max: upper bound of the quantisation tables (paper: 20; 30 in Table 5).
        steps: number of sign-gradient steps on the tables (paper: 20).
        block_size: side of the cubic DCT blocks (paper ablations: 8; the paper's AT and Table 5: 32).
        q_min: lower bound of the tables (paper: 1; public code: 5).
        q_init: starting value of every table entry (paper: q_min = 1; public code: q_max).
        ssim_weight: weight of the (1 - SSIM) term; 0 switches it off.
        rounding: ``"soft"`` (tanh with the alpha schedule) or ``"ste"`` (straight-through).
        output_rounding: ``"hard"`` (the paper's round) or ``"soft"`` (the code's last soft round).
        renormalize: ``None`` (clip to [0, 1]) or ``"slice"`` (per-axial-slice min-max, as the code).
        **kwargs: sliding-window, loss, amp and seed options of :class:`Attack`.
    """

    name = "vafa"

    def __init__(
        self,
        model: torch.nn.Module,
        q_max: float = 20.0,
        steps: int = 20,
        block_size: int = 8,
        q_min: float = 1.0,
        q_init: float | None = None,
        ssim_weight: float = 1.0,
        rounding: str = "soft",
        output_rounding: str = "hard",
        renormalize: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(model, **kwargs)
        _check_options(q_min, q_max, q_init, steps, block_size, rounding, output_rounding, renormalize)
        self.q_max = float(q_max)
        self.q_min = float(q_min)
        self.q_init = float(q_init) if q_init is not None else float(q_min)
        self.steps = int(steps)
        self.block_size = int(block_size)
        self.ssim_weight = float(ssim_weight)
        self.rounding = rounding
        self.output_rounding = output_rounding
        self.renormalize = renormalize

    @classmethod
    def public_code(cls, model: torch.nn.Module, q_max: float = 20.0, **kwargs) -> "VAFA":
        """VAFA as the authors' public code runs it (tables start at q_max, q_min 5, per-slice
        renormalisation, soft-rounded output)."""
        options = dict(q_min=5.0, q_init=q_max, output_rounding="soft", renormalize="slice")
        options.update(kwargs)
        return cls(model, q_max=q_max, **options)

    # --- the attack -------------------------------------------------------------------------

    def _attack(self, x: torch.Tensor, y: torch.Tensor, progress: Progress | None) -> AttackResult:
        self._check_volume(x)
        shape = tuple(x.shape[2:])
        coeffs = blockwise_dct3(x * 255.0 - 128.0, self.block_size)  # constant over the steps
        q = torch.full_like(coeffs, self.q_init)
        q_used = q  # the tables of the last x' the model saw (Alg. 1 and the public code return that x')
        history = []
        for step in range(self.steps):
            q_used = q.detach()
            q.requires_grad_(True)
            x_adv = self.compress(coeffs, q, shape, self._round_fn(step))
            seg_loss, grad_x = self.loss_grad(x_adv, y)
            ssim = self._ssim(x, x_adv)
            # Chain rule through the window loop: d(seg_loss)/dq = <grad_x, d x_adv / dq>.
            objective = (x_adv * grad_x).sum() - self.ssim_weight * (1.0 - ssim)
            (grad_q,) = torch.autograd.grad(objective, q)
            q = (q.detach() + grad_q.sign()).clamp_(self.q_min, self.q_max)
            history.append({"step": step, "loss": seg_loss, "ssim": float(ssim.detach())})
            self._tick(progress, step + 1, self.steps)
        # Algorithm 1 and the public code return x' computed before the last update of q; the
        # tables after that update were never seen by the model. The output's rounding is
        # re-applied to those tables (the soft round at the last alpha is exactly the loop's x').
        with torch.no_grad():
            x_adv = self.compress(coeffs, q_used, shape, self._output_round_fn())
        return AttackResult(x_adv, x, y, history, {"q_tables": q_used})

    def compress(self, coeffs: torch.Tensor, q: torch.Tensor, shape: tuple[int, int, int], round_fn) -> torch.Tensor:
        """Quantise, round, de-quantise and invert the DCT.

        Args:
            coeffs: blockwise DCT of (255 x - 128), [B, C, nH, nW, nD, b, b, b].
            q: quantisation tables, same shape.
            shape: the volume's (H, W, D).
        Returns:
            x' [B, C, H, W, D] in [0, 1].
        """
        blocks = idct3_blocks(round_fn(coeffs / q) * q)
        x_adv = (from_blocks(blocks, shape) + 128.0) / 255.0
        if self.renormalize == "slice":
            return _minmax_per_axial_slice(x_adv)
        return x_adv.clamp(0.0, 1.0)

    def _ssim(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        """Mean SSIM over the DCT blocks (whole-volume SSIM for blocks under the 3-voxel window)."""
        if self.block_size >= 3:
            return blockwise_ssim3d(x, x_adv, self.block_size).mean()
        return ssim3d(x, x_adv).mean()

    def _round_fn(self, step: int):
        if self.rounding == "ste":
            return ste_round
        alpha = alpha_schedule(step, self.steps)
        return lambda v: soft_round(v, alpha)

    def _output_round_fn(self):
        if self.output_rounding == "hard":
            return torch.round
        return self._round_fn(self.steps - 1)

    def _check_volume(self, x: torch.Tensor) -> None:
        if min(x.shape[2:]) < self.block_size:
            raise AttackInputError(
                f"block_size {self.block_size} is larger than the volume's smallest side "
                f"{min(x.shape[2:])} (shape {tuple(x.shape[2:])}); choose a block of at most that size"
            )


def _minmax_per_axial_slice(x: torch.Tensor) -> torch.Tensor:
    """The public code's per-slice contrast stretch: each (H, W) slice at fixed D mapped to [0, 1].

    A constant slice would divide by zero in the code; here it maps to 0 instead.
    """
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-8)


def _check_options(
    q_min: float,
    q_max: float,
    q_init: float | None,
    steps: int,
    block_size: int,
    rounding: str,
    output_rounding: str,
    renormalize: str | None,
) -> None:
    if q_min <= 0:
        raise ValueError(f"q_min must be > 0 (a zero quantisation step divides by zero), got {q_min}")
    if q_min > q_max:
        raise ValueError(f"q_min ({q_min}) must not exceed q_max ({q_max})")
    if q_init is not None and not q_min <= q_init <= q_max:
        raise ValueError(f"q_init ({q_init}) must lie in [q_min, q_max] = [{q_min}, {q_max}]")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    if rounding not in ("soft", "ste"):
        raise ValueError(f"rounding must be 'soft' or 'ste', got {rounding!r}")
    if output_rounding not in ("hard", "soft"):
        raise ValueError(f"output_rounding must be 'hard' or 'soft', got {output_rounding!r}")
    if renormalize not in (None, "slice"):
        raise ValueError(f"renormalize must be None or 'slice', got {renormalize!r}")


_PUBLIC_CODE = {"q_min": 5.0, "q_init": SameAs("q_max"), "output_rounding": "soft", "renormalize": "slice"}

SPEC = AttackSpec(
    name="vafa",
    cls=VAFA,
    title="VAFA",
    summary="learnable adversarial 3D JPEG: blockwise DCT quantisation tables (Hanif et al., MICCAI 2023)",
    domain="frequency",
    params=(
        Param("q_max", float, "largest quantisation step (paper: 20; 30 in its Table 5)", JPEG, 1, 255),
        Param("steps", int, "sign-gradient steps on the tables (paper: 20)", STEPS, 0, 1000),
        Param("block_size", int, "side of the cubic DCT blocks (paper ablations: 8; its AT and Table 5: 32)", VOXELS, 1, 128),
        Param("q_min", float, "smallest quantisation step (paper: 1; public code: 5)", JPEG, 0.01, 255),
        Param("q_init", float, "starting table value; none = q_min (paper); the public code starts at q_max", JPEG, 0.01, 255, optional=True),
        Param("ssim_weight", float, "weight of the (1 - SSIM) term; 0 turns it off (paper: 1)", WEIGHT, 0, 1000),
        Param("rounding", str, "differentiable rounding during the steps: tanh soft round or straight-through", choices=("soft", "ste")),
        Param("output_rounding", str, "rounding of the returned volume: hard (paper) or the last soft round (public code)", choices=("hard", "soft")),
        Param("renormalize", str, "output range: none = clip to [0, 1] (paper); slice = per-axial-slice min-max (public code)", choices=(None, "slice")),
    ),
    presets=(
        Preset("paper", "Algorithm 1 of the paper: tables from 1 in [1, q_max], hard-rounded, clipped output"),
        Preset("public-code", "the public code's mechanics: tables from q_max in [5, q_max], soft-rounded output, "
               "every axial slice min-max renormalised (the renormalisation is what does most of the damage); "
               "8^3 blocks (its command-line default) with the SSIM term on, weight 1 (its --use_ssim_loss)",
               _PUBLIC_CODE),
        Preset("authors-run", "the authors' documented run (their README attack command): the public code's mechanics "
               "with q_max 20, 20 steps, 32^3 blocks, SSIM term on (weight 1)",
               {**_PUBLIC_CODE, "q_max": 20.0, "steps": 20, "block_size": 32, "ssim_weight": 1.0}),
        Preset("table5", "the paper's Table 5 and adversarial-training setting: q_max 20 on 32^3 blocks",
               {"q_max": 20.0, "block_size": 32}),
    ),
    strength="q_max",
    sweep=(2.0, 5.0, 10.0, 20.0, 30.0),
    training_preset="table5",
)


__all__: Sequence[str] = ["SPEC", "VAFA"]
