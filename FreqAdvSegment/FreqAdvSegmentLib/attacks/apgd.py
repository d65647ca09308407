"""APGD (Croce & Hein, ICML 2020, Auto-PGD) on the Dice-CE loss, L-inf budget.

APGD replaces PGD's fixed step by a schedule driven by the attack's own progress:

    eta_0 = 2 eps;  x_1 = P(x_0 + eta sign(grad f(x_0)))
    z_{k+1} = P(x_k + eta sign(grad f(x_k)))
    x_{k+1} = P(x_k + a (z_{k+1} - x_k) + (1 - a)(x_k - x_{k-1})),   momentum a = 0.75

At the checkpoints w_j = ceil(p_j N), p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03,
0.06), the step is halved and the iterate restarts from the best point found when

    1. fewer than rho (w_j - w_{j-1}) of the steps since the last checkpoint raised the loss
       (rho = 0.75), or
    2. the step was not halved at the last checkpoint and the best loss has not improved since.

The result is the best point seen (highest loss), not the last. P projects onto the eps-ball
around x and [0, 1]. The schedule is kept for the whole batch (the engine attacks one volume at
a time); with ``steps`` N the attack costs N + 1 gradient passes.
"""

from __future__ import annotations

import math

import torch

from .base import Attack, AttackResult, Progress
from .spec import AttackSpec
from .voxel import EPS_PARAM, EPS_SWEEP, EPS8_PRESET, STEPS_PARAM, check_positive

MOMENTUM = 0.75
RHO = 0.75


def apgd_checkpoints(steps: int) -> list[int]:
    """The iterations w_1 < w_2 < ... <= steps at which APGD may halve its step."""
    p = [0.0, 0.22]
    while True:
        nxt = p[-1] + max(p[-1] - p[-2] - 0.03, 0.06)
        if nxt > 1.0:
            break
        p.append(nxt)
    # round() first: 0.22 * 100 is 22.000000000000004 in floating point, not above 22.
    marks = sorted({math.ceil(round(q * steps, 9)) for q in p[1:]})
    return [w for w in marks if 0 < w <= steps]


def halve_step(raised: int, span: int, halved_last: bool, best_last: float, best_now: float, rho: float = RHO) -> bool:
    """APGD's rule at a checkpoint: halve when ``raised`` (steps since the last checkpoint that
    raised the loss) < rho * ``span``, or when the last checkpoint did not halve and the best loss
    did not improve since (``best_now <= best_last``)."""
    return raised < rho * span or (not halved_last and best_now <= best_last)


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
        noise = torch.rand(x.shape, generator=self.generator, device=x.device) * 2 - 1
        x_cur = self._project(x + self.eps * noise, x)
        f_cur, g_cur = self.loss_grad(x_cur, y)
        x_prev = x_cur
        best = (f_cur, x_cur, g_cur)
        eta = 2.0 * self.eps
        checkpoints, last_mark = set(apgd_checkpoints(self.steps)), 0
        raised, halved_last, best_last = 0, False, f_cur
        history = []
        for k in range(self.steps):
            z = self._project(x_cur + eta * g_cur.sign(), x)
            x_next = z if k == 0 else self._project(x_cur + MOMENTUM * (z - x_cur) + (1 - MOMENTUM) * (x_cur - x_prev), x)
            f_next, g_next = self.loss_grad(x_next, y)
            raised += int(f_next > f_cur)
            if f_next > best[0]:
                best = (f_next, x_next, g_next)
            history.append({"step": k, "loss": f_next, "eta": eta})
            x_prev, x_cur, f_cur, g_cur = x_cur, x_next, f_next, g_next
            if k + 1 in checkpoints:
                halved_last = halve_step(raised, k + 1 - last_mark, halved_last, best_last, best[0])
                if halved_last:  # restart from the best point with half the step
                    eta /= 2.0
                    f_cur, x_cur, g_cur = best
                    x_prev = x_cur
                raised, last_mark, best_last = 0, k + 1, best[0]
            self._tick(progress, k + 1, self.steps)
        return AttackResult(best[1], x, y, history, {"best_loss": best[0]})


SPEC = AttackSpec(
    "apgd", APGD, "APGD",
    "Auto-PGD on Dice-CE: step halving at checkpoints, momentum 0.75, best point kept (Croce & Hein 2020)",
    (EPS_PARAM, STEPS_PARAM), (EPS8_PRESET,), strength="eps", sweep=EPS_SWEEP,
)
