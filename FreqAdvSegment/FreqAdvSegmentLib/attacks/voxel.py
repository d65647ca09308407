"""Voxel-domain attacks: FGSM, PGD, BIM, CW and Gaussian noise.

eps, alpha and std are on the [0, 1] intensity scale; the paper gives them in 0-255 units
(eps 4 or 8), so use ``eps_from_255(4)`` (= 4/255) to reproduce it. All attacks maximise the
paper's DiceCE loss by default (CW uses its own margin loss) and keep the result in [0, 1].
"""

from __future__ import annotations

import torch

from .base import Attack, AttackResult, Progress
from .losses import SegLoss, cw_margin_loss
from .spec import INTENSITY, RATIO, STEPS, WEIGHT, AttackSpec, Param, Preset


def check_positive(**values: float) -> None:
    """ValueError naming the first negative value (the voxel attacks' and the ensemble's check)."""
    for name, value in values.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


class FGSM(Attack):
    """Fast gradient sign method: x' = clip(x + eps * sign(grad), 0, 1), one step."""

    name = "fgsm"

    def __init__(self, model: torch.nn.Module, eps: float = 4 / 255, **kwargs) -> None:
        super().__init__(model, **kwargs)
        check_positive(eps=eps)
        self.eps = float(eps)

    def _attack(self, x: torch.Tensor, y: torch.Tensor, progress: Progress | None) -> AttackResult:
        loss, grad = self.loss_grad(x, y)
        self._tick(progress, 1, 1)
        x_adv = (x + self.eps * grad.sign()).clamp(0.0, 1.0)
        return AttackResult(x_adv, x, y, [{"step": 0, "loss": loss}])


class BIM(Attack):
    """Basic iterative method: signed steps of ``alpha``, projected to the L-inf ball of ``eps``
    around x and to [0, 1]; no random start."""

    name = "bim"
    random_start = False

    def __init__(
        self, model: torch.nn.Module, eps: float = 4 / 255, alpha: float = 0.01, steps: int = 20, **kwargs
    ) -> None:
        super().__init__(model, **kwargs)
        check_positive(eps=eps, alpha=alpha, steps=steps)
        self.eps, self.alpha, self.steps = float(eps), float(alpha), int(steps)

    def _attack(self, x: torch.Tensor, y: torch.Tensor, progress: Progress | None) -> AttackResult:
        x_adv = self._start(x)
        history = []
        for step in range(self.steps):
            loss_fn, notes = self._step_loss(step)
            loss, grad = self.loss_grad(x_adv, y, loss_fn)
            x_adv = self._project(x_adv + self.alpha * grad.sign(), x)
            history.append({"step": step, "loss": loss, **notes})
            self._tick(progress, step + 1, self.steps)
        return AttackResult(x_adv, x, y, history)

    def _step_loss(self, step: int) -> tuple[SegLoss | None, dict[str, float]]:
        """The loss to ascend at ``step`` (None: the attack's own, DiceCE by default) and what to
        note in the step's history. Variants of PGD (SegPGD, CosPGD) change only this."""
        return None, {}

    def _start(self, x: torch.Tensor) -> torch.Tensor:
        if not self.random_start:
            return x.clone()
        noise = torch.rand(x.shape, generator=self.generator, device=x.device) * 2 - 1
        return self._project(x + self.eps * noise, x)

    def _project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.min(torch.max(x_adv, x - self.eps), x + self.eps).clamp(0.0, 1.0)


class PGD(BIM):
    """Projected gradient descent (L-inf) with a uniform random start in the eps-ball
    (Madry et al.); the paper uses eps 4/255, alpha 0.01, 20 steps."""

    name = "pgd"
    random_start = True


class CW(Attack):
    """Carlini-Wagner L2 attack adapted to segmentation.

    Minimises ||x' - x||_2^2 + c * mean_voxels max(z_y - max_{j != y} z_j, -kappa) over
    x' = (tanh(w) + 1) / 2 with Adam, so x' stays in [0, 1] without clipping.
    """

    name = "cw"

    def __init__(
        self,
        model: torch.nn.Module,
        c: float = 1.0,
        kappa: float = 0.0,
        steps: int = 50,
        lr: float = 0.01,
        **kwargs,
    ) -> None:
        super().__init__(model, **kwargs)
        check_positive(c=c, kappa=kappa, steps=steps, lr=lr)
        self.c, self.kappa, self.steps, self.lr = float(c), float(kappa), int(steps), float(lr)

    def _attack(self, x: torch.Tensor, y: torch.Tensor, progress: Progress | None) -> AttackResult:
        margin = cw_margin_loss(self.kappa)
        # atanh of exactly 0 or 1 is infinite; squeeze the start into the open interval.
        w = torch.atanh((x * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6)).requires_grad_(True)
        optimiser = torch.optim.Adam([w], lr=self.lr)
        history = []
        for step in range(self.steps):
            x_adv = (torch.tanh(w) + 1) / 2
            neg_margin, grad_x = self.loss_grad(x_adv, y, margin)
            distance = ((x_adv - x) ** 2).flatten(1).sum(1).sum()
            # grad_x is d(-margin)/dx'; chaining it through x'(w) minimises c * margin + distance.
            objective = distance - self.c * (x_adv * grad_x).sum()
            optimiser.zero_grad()
            objective.backward()
            optimiser.step()
            history.append({"step": step, "loss": neg_margin, "l2": float(distance.detach().sqrt())})
            self._tick(progress, step + 1, self.steps)
        with torch.no_grad():
            x_adv = (torch.tanh(w) + 1) / 2
        return AttackResult(x_adv, x, y, history)


class GaussianNoise(Attack):
    """Additive Gaussian noise of standard deviation ``std``, clipped to [0, 1] (a baseline that
    uses no gradient; the paper's GN with sigma 4 or 8 in 0-255 units)."""

    name = "gn"

    def __init__(self, model: torch.nn.Module, std: float = 4 / 255, **kwargs) -> None:
        super().__init__(model, **kwargs)
        check_positive(std=std)
        self.std = float(std)

    def _attack(self, x: torch.Tensor, y: torch.Tensor, progress: Progress | None) -> AttackResult:
        noise = torch.randn(x.shape, generator=self.generator, device=x.device)
        self._tick(progress, 1, 1)
        return AttackResult((x + self.std * noise).clamp(0.0, 1.0), x, y)


# --- descriptions (the registry's; every surface is derived from these) -------------------------

EPS_PARAM = Param("eps", float, "L-inf budget (paper: 4/255 and 8/255)", INTENSITY, 0, 1, display_scale=255)
ALPHA_PARAM = Param("alpha", float, "step size (paper: 0.01, about 2.55/255)", INTENSITY, 0, 1, display_scale=255)
STEPS_PARAM = Param("steps", int, "attack steps (paper: 20)", STEPS, 1, 1000)
EPS_SWEEP = tuple(v / 255 for v in (1.0, 2.0, 4.0, 8.0, 16.0))
EPS8_PRESET = Preset("eps8", "the paper's larger budget, eps 8/255", {"eps": 8 / 255})

PGD_SPEC = AttackSpec(
    "pgd", PGD, "PGD", "projected gradient descent, L-inf, random start (Madry et al. 2018)",
    (EPS_PARAM, ALPHA_PARAM, STEPS_PARAM), (EPS8_PRESET,), strength="eps", sweep=EPS_SWEEP,
)
FGSM_SPEC = AttackSpec(
    "fgsm", FGSM, "FGSM", "fast gradient sign method, one step (Goodfellow et al. 2015)",
    (EPS_PARAM,), (EPS8_PRESET,), strength="eps", sweep=EPS_SWEEP,
)
BIM_SPEC = AttackSpec(
    "bim", BIM, "BIM", "basic iterative method: PGD without the random start (Kurakin et al. 2017)",
    (EPS_PARAM, ALPHA_PARAM, STEPS_PARAM), (EPS8_PRESET,), strength="eps", sweep=EPS_SWEEP,
)
CW_SPEC = AttackSpec(
    "cw", CW, "CW", "Carlini-Wagner L2 with a per-voxel margin loss (Carlini & Wagner 2017)",
    (
        Param("c", float, "weight of the margin term against the L2 distance", WEIGHT, 0, 1e6),
        Param("kappa", float, "confidence margin on the logits", "logit", 0, 1e6),
        Param("steps", int, "Adam steps", STEPS, 1, 10000),
        Param("lr", float, "Adam learning rate", RATIO, 0, 10),
    ),
    strength="c", sweep=(0.1, 1.0, 10.0, 100.0), trainable=False,
)
GN_SPEC = AttackSpec(
    "gn", GaussianNoise, "Noise", "additive Gaussian noise, no gradient (the paper's GN baseline)",
    (Param("std", float, "noise standard deviation (paper: 4/255 and 8/255)", INTENSITY, 0, 1, display_scale=255),),
    (Preset("std8", "the paper's larger noise, std 8/255", {"std": 8 / 255}),),
    domain="noise", strength="std", sweep=tuple(v / 255 for v in (4.0, 8.0, 16.0, 32.0)),
)
