"""APGD (Croce & Hein, ICML 2020, Auto-PGD) on the Dice-CE loss, L-inf budget, with the schedule
of the reference implementation (fra31/auto-attack, ``APGDAttack``), which differs from the
paper's formula in several places:

    start:  x_0 = clip(x + eps * t / max|t|, 0, 1), t uniform in [-1, 1]
    step:   z = P(x_k + eta sign(grad f(x_k)))
            x_{k+1} = P(x_k + a (z - x_k) + (1 - a)(x_k - x_{k-1})),  a = 1 at the first step, 0.75 after
    eta_0 = 2 eps, per volume

Checkpoints: the first after k = max(int(0.22 N), 1) steps, then every k steps with k shrinking by
max(int(0.03 N), 1) down to max(int(0.06 N), 1) (14 checkpoints at N = 20, where the paper's
formula gives 8). At a checkpoint the step is halved, and the iterate restarts from the best
point, when

    1. at most 0.75 k (``<=``) of the last k steps raised the loss (the reference counts the
       first step of the run against an initial zero), or
    2. the step was *not* halved at the last checkpoint and the best loss has not improved since
       (``>=``); at the first checkpoint this test is off (the reference starts as "just halved").

A restart keeps the momentum term: x_{k-1} stays the point before the last step. The result is
the best point (highest loss), not the last. Every volume of a batch runs its own schedule and
step size; the attack costs N + 1 gradient passes per volume.
"""

from __future__ import annotations

import torch

from .base import Attack, AttackResult, Progress
from .spec import AttackSpec, Preset
from .voxel import EPS_PARAM, EPS_SWEEP, EPS8_PRESET, STEPS_PARAM, check_positive

MOMENTUM = 0.75
RHO = 0.75


def apgd_schedule(steps: int) -> tuple[int, int, int]:
    """(first span, smallest span, span decrement) of the reference's checkpoints for ``steps``."""
    return max(int(0.22 * steps), 1), max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)


def apgd_checkpoints(steps: int) -> list[int]:
    """The iterations (1-based counts of steps) at which APGD checks its step size."""
    first, smallest, decrement = apgd_schedule(steps)
    marks, k, at = [], first, 0
    while at + k <= steps:
        at += k
        marks.append(at)
        k = max(k - decrement, smallest)
    return marks


def halve_step(raised: int, span: int, halved_last: bool, best_last: float, best_now: float, rho: float = RHO) -> bool:
    """APGD's rule at a checkpoint: halve when ``raised`` (of the last ``span`` steps, those that
    raised the loss) <= rho * span, or when the last checkpoint did not halve and the best loss
    did not improve since (``best_last >= best_now``)."""
    return raised <= rho * span or (not halved_last and best_last >= best_now)


class APGD(Attack):
    """Auto-PGD, L-inf, on the attack loss (the paper's Dice-CE by default)."""

    name = "apgd"

    def __init__(self, model: torch.nn.Module, eps: float = 4 / 255, steps: int = 20, **kwargs) -> None:
        super().__init__(model, **kwargs)
        check_positive(eps=eps, steps=steps)
        self.eps, self.steps = float(eps), int(steps)

    def _project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.min(torch.max(x_adv, x - self.eps), x + self.eps).clamp(0.0, 1.0)

    def _attack(self, x: torch.Tensor, y: torch.Tensor, progress: Progress | None) -> AttackResult:
        advs, bests, history = [], [], []
        for b in range(x.shape[0]):  # one schedule and step size per volume, as the reference
            adv, best, steps = self._single(x[b : b + 1], y[b : b + 1], progress)
            advs.append(adv)
            bests.append(best)
            history += [{**h, "volume": b} for h in steps] if x.shape[0] > 1 else steps
        best_loss = bests[0] if len(bests) == 1 else bests
        return AttackResult(torch.cat(advs), x, y, history, {"best_loss": best_loss})

    def _single(self, x: torch.Tensor, y: torch.Tensor, progress: Progress | None):
        t = torch.rand(x.shape, generator=self.generator, device=x.device) * 2 - 1
        x_adv = (x + self.eps * t / t.abs().max()).clamp(0.0, 1.0)
        f, grad = self.loss_grad(x_adv, y)
        best_f, best_x, best_g = f, x_adv, grad
        eta, x_old = 2.0 * self.eps, x_adv
        first, smallest, decrement = apgd_schedule(self.steps)
        span, counter, halved_last, best_last = first, 0, True, best_f
        losses = [0.0] * self.steps  # the reference's loss_steps: its wrap-around reads the zeros
        history = []
        for i in range(self.steps):
            a = MOMENTUM if i > 0 else 1.0
            momentum, x_old = x_adv - x_old, x_adv
            z = self._project(x_adv + eta * grad.sign(), x)
            x_adv = self._project(x_adv + a * (z - x_adv) + (1 - a) * momentum, x)
            f, grad = self.loss_grad(x_adv, y)
            losses[i] = f
            if f > best_f:
                best_f, best_x, best_g = f, x_adv, grad
            history.append({"step": i, "loss": f, "eta": eta})
            counter += 1
            if counter == span:
                raised = sum(losses[i - j] > losses[i - j - 1] for j in range(span))
                halved_last = halve_step(raised, span, halved_last, best_last, best_f)
                best_last = best_f
                if halved_last:  # restart from the best point with half the step; momentum stays
                    eta /= 2.0
                    x_adv, grad = best_x, best_g
                span, counter = max(span - decrement, smallest), 0
            self._tick(progress, i + 1, self.steps)
        return best_x, best_f, history


SPEC = AttackSpec(
    "apgd", APGD, "APGD",
    "Auto-PGD on Dice-CE: the reference code's step halving at checkpoints, momentum 0.75, best point kept (Croce & Hein 2020)",
    (EPS_PARAM, STEPS_PARAM),
    (EPS8_PRESET, Preset("autoattack", "AutoAttack's standard run of APGD: 100 iterations", {"steps": 100})),
    strength="eps", sweep=EPS_SWEEP,
)
