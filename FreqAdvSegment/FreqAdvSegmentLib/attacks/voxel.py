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


def _refuse_loss(name: str, options: dict, why: str = "maximises its own loss") -> None:
    """An attack that cannot honour the ``loss`` option refuses it rather than ignoring it."""
    if options.get("loss") is not None:
        raise ValueError(f"{name} {why} and cannot take the loss option; drop it")


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
    own_loss = False  # variants with a loss of their own (SegPGD, CosPGD) refuse the loss option

    def __init__(
        self, model: torch.nn.Module, eps: float = 4 / 255, alpha: float = 0.01, steps: int = 20, **kwargs
    ) -> None:
        if self.own_loss:
            _refuse_loss(self.name, kwargs)
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
    """Carlini-Wagner L2 (Carlini & Wagner 2017) for a dense output.

    Per volume b, with x' = (tanh(w) + 1) / 2 (so x' stays in [0, 1] without clipping) and the
    per-voxel margin m_v = max(z_{y_v} - max_{j != y_v} z_j, -kappa), Adam minimises

        ||x'_b - x_b||_2^2 + c_b * sum_v m_v

    The margin is *summed* over voxels, like the squared distance, so c is the same per-voxel
    trade-off at every volume size (averaging it would shrink c's weight by the voxel count).
    In sliding-window mode the sum is the windows' mean margin times the volume's voxel count.

    A binary search over c (``search_steps`` rounds of ``steps`` Adam steps each, every round from
    the clean volume) finds, per volume, the smallest c that still succeeds; an iterate succeeds
    when at least ``target_fraction`` of the foreground voxels get a label other than the one
    attacked. The
    result is the best iterate seen over all rounds (best-so-far tracking): the successful one
    with the smallest L2 distance, or, for a volume that never succeeded, the one that fooled the
    most voxels. As in C&W, c grows tenfold after a failure until an upper bound is known, then
    bisects. Voxels labelled background (0) are not counted for success while the volume has
    foreground: a fraction of all voxels would be dominated by the background.
    """

    name = "cw"

    def __init__(
        self,
        model: torch.nn.Module,
        c: float = 1.0,
        kappa: float = 0.0,
        steps: int = 50,
        lr: float = 0.01,
        search_steps: int = 3,
        target_fraction: float = 0.5,
        **kwargs,
    ) -> None:
        _refuse_loss(self.name, kwargs)
        super().__init__(model, **kwargs)
        check_positive(c=c, kappa=kappa, steps=steps, lr=lr)
        if search_steps < 1 or not 0.0 < target_fraction <= 1.0:
            raise ValueError(f"search_steps must be >= 1 and target_fraction in (0, 1]; got {search_steps}, {target_fraction}")
        self.c, self.kappa, self.steps, self.lr = float(c), float(kappa), int(steps), float(lr)
        self.search_steps, self.target_fraction = int(search_steps), float(target_fraction)

    def _attack(self, x: torch.Tensor, y: torch.Tensor, progress: Progress | None) -> AttackResult:
        batch = x.shape[0]
        c = torch.full((batch,), self.c, device=x.device)
        lower, upper = torch.zeros_like(c), torch.full_like(c, float("inf"))
        best = _CWBest(x)
        history, total = [], self.steps * self.search_steps
        for round_ in range(self.search_steps):
            succeeded = self._round(x, y, c, best, history, progress, round_ * self.steps, total)
            # C&W's search: a success bounds c from above, a failure from below.
            upper = torch.where(succeeded, torch.minimum(upper, c), upper)
            lower = torch.where(succeeded, lower, torch.maximum(lower, c))
            c = torch.where(torch.isinf(upper), c * 10, (lower + upper) / 2)
        extras = {"l2": best.l2.tolist(), "fooled": best.fooled.tolist(), "succeeded": best.success.tolist()}
        return AttackResult(best.adv, x, y, history, extras)

    def _round(self, x, y, c, best, history, progress, done, total) -> torch.Tensor:
        """One round of Adam steps at the per-volume weights ``c`` [B]; updates ``best``.
        Returns which volumes succeeded at least once in the round (bool [B])."""
        margin = cw_margin_loss(self.kappa)
        voxels = float(y.numel())  # cw_margin_loss averages over the batch's voxels; this undoes it
        weight = (c * voxels).view(-1, 1, 1, 1, 1)
        # atanh of exactly 0 or 1 is infinite; squeeze the start into the open interval.
        w = torch.atanh((x * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6)).requires_grad_(True)
        optimiser = torch.optim.Adam([w], lr=self.lr)
        succeeded = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for step in range(self.steps):
            x_adv = (torch.tanh(w) + 1) / 2
            neg_margin, grad_x = self.loss_grad(x_adv, y, margin)
            distance = ((x_adv - x) ** 2).flatten(1).sum(1)  # [B]
            fooled = _fooled_fraction(self.predict(x_adv.detach()), y)
            succeeded |= best.update(x_adv.detach(), distance.detach(), fooled, self.target_fraction)
            # grad_x is d(-mean margin)/dx'; chaining it through x'(w) minimises c * sum margin + distance.
            objective = distance.sum() - (weight * x_adv * grad_x).sum()
            optimiser.zero_grad()
            objective.backward()
            optimiser.step()
            history.append({"step": done + step, "loss": neg_margin * voxels, "l2": float(distance.detach().sum().sqrt()),
                            "c": float(c.mean())})
            self._tick(progress, done + step + 1, total)
        return succeeded


def _fooled_fraction(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Share of the foreground voxels (all voxels where a volume has none) whose predicted label
    differs from the one attacked: [B, 1, H, W, D] twice -> [B]."""
    wrong, fg = (pred != y).flatten(1).float(), (y != 0).flatten(1).float()
    counted = torch.where(fg.sum(1, keepdim=True) > 0, fg, torch.ones_like(fg))
    return (wrong * counted).sum(1) / counted.sum(1)


class _CWBest:
    """CW's best-so-far iterate per volume: successful with the least L2, else the most fooled."""

    def __init__(self, x: torch.Tensor) -> None:
        batch = x.shape[0]
        self.adv = x.clone()
        self.l2 = torch.full((batch,), float("inf"), device=x.device)
        self.fooled = torch.zeros(batch, device=x.device)
        self.success = torch.zeros(batch, dtype=torch.bool, device=x.device)

    def update(self, x_adv: torch.Tensor, l2: torch.Tensor, fooled: torch.Tensor, target: float) -> torch.Tensor:
        """Offer iterate ``x_adv`` [B, C, H, W, D] with squared distances ``l2`` [B] and fooled
        fractions ``fooled`` [B]; returns which volumes it makes succeed (bool [B])."""
        success = fooled >= target
        better = torch.where(
            success,
            ~self.success | (l2 < self.l2),
            ~self.success & (fooled > self.fooled),
        )
        self.adv[better] = x_adv[better]
        self.l2 = torch.where(better, l2, self.l2)
        self.fooled = torch.where(better, fooled, self.fooled)
        self.success |= success
        return success


class GaussianNoise(Attack):
    """Additive Gaussian noise of standard deviation ``std``, clipped to [0, 1] (a baseline that
    uses no gradient; the paper's GN with sigma 4 or 8 in 0-255 units)."""

    name = "gn"

    def __init__(self, model: torch.nn.Module, std: float = 4 / 255, **kwargs) -> None:
        _refuse_loss(self.name, kwargs, "adds noise without a loss")
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
    "cw", CW, "CW", "Carlini-Wagner L2: voxel-summed margin, binary search over c, best iterate kept (Carlini & Wagner 2017)",
    (
        Param("c", float, "starting weight of the voxel-summed margin against the squared L2 distance (per voxel, "
              "the same at every volume size); the binary search moves it per volume", WEIGHT, 0, 1e6),
        Param("kappa", float, "confidence margin on the logits", "logit", 0, 1e6),
        Param("steps", int, "Adam steps per binary-search round", STEPS, 1, 10000),
        Param("lr", float, "Adam learning rate", RATIO, 0, 10),
        Param("search_steps", int, "binary-search rounds over c (Carlini & Wagner: 9; each costs steps passes)", STEPS, 1, 100),
        Param("target_fraction", float, "share of voxels that must be mislabelled for a round to count as a success", RATIO, 0.001, 1),
    ),
    strength="c", sweep=(0.01, 0.1, 1.0, 10.0), trainable=False,
)
GN_SPEC = AttackSpec(
    "gn", GaussianNoise, "Noise", "additive Gaussian noise, no gradient (the paper's GN baseline)",
    (Param("std", float, "noise standard deviation (paper: 4/255 and 8/255)", INTENSITY, 0, 1, display_scale=255),),
    (Preset("std8", "the paper's larger noise, std 8/255", {"std": 8 / 255}),),
    domain="noise", strength="std", sweep=tuple(v / 255 for v in (4.0, 8.0, 16.0, 32.0)),
)
