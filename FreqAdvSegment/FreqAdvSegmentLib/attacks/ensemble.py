"""The worst-case ensemble: several attacks under one budget, the most damaging kept per volume.

AutoAttack's idea (Croce & Hein 2020) for segmentation: run every member attack on the same
volumes with the same L-inf budget and step count, segment each result, and keep, per volume,
the adversarial volume whose prediction has the lowest mean foreground Dice against the labels
attacked. A model is only as robust as its worst case, and which attack is worst differs between
models and volumes.

Members are written ``pgd+segpgd+cospgd+apgd`` (any registered ``name`` or ``name:preset``). One
ensemble holds one threat model: every member must be an L-inf attack (it takes ``eps``), and the
ensemble's ``eps`` is every member's budget. A member whose preset fixes another budget
(``pgd:eps8`` in a 4/255 ensemble) and a member with a budget of another kind (VAFA's q_max,
SA²'s rho, noise's std, CW's c) are refused with one line, never silently re-budgeted. Members
keep their own settings otherwise (SA²'s 10 steps stay 10); ``steps``, when given, sets the step
count of every member that has one. The result says which member won: ``extras["winner"]`` (one
name per volume), every member's Dice in ``extras["dice"]`` and its budget in
``extras["budgets"]``.
"""

from __future__ import annotations

import torch

from .base import Attack, AttackResult, Progress
from .catalog import REGISTERED as registry  # the registry's own store: registry.py imports this file
from .spec import STEPS, AttackSpec, Param
from .voxel import EPS_PARAM, EPS_SWEEP, EPS8_PRESET, check_positive

DEFAULT_MEMBERS = "pgd+segpgd+cospgd+apgd"


def split_members(text: str) -> list[str]:
    """``"pgd+vafa:public-code"`` -> ["pgd", "vafa:public-code"], each checked in the registry."""
    members = [m.strip() for m in text.split("+") if m.strip()]
    if not members:
        raise ValueError("attacks needs at least one member, e.g. pgd+segpgd")
    for member in members:
        spec, _ = registry.split_method(member)
        if spec.cls is WorstCase:
            raise ValueError(f"the worst-case ensemble cannot contain itself ({member!r})")
    return members


def mean_dice(pred: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean foreground Dice per volume: label maps [B, 1, H, W, D] -> [B].

    Classes present in neither map are skipped; a volume without foreground in both scores 1."""
    scores = []
    for p, r in zip(pred, reference):
        labels = torch.unique(torch.cat([p.flatten(), r.flatten()]))
        dices = [2 * ((p == c) & (r == c)).sum() / ((p == c).sum() + (r == c).sum()) for c in labels if c != 0]
        scores.append(torch.stack(dices).float().mean() if dices else torch.tensor(1.0, device=pred.device))
    return torch.stack(scores)


def pick_worst(dice: torch.Tensor) -> torch.Tensor:
    """Index of the member with the lowest Dice per volume: [members, B] -> [B] (ties: first)."""
    return dice.argmin(0)


class WorstCase(Attack):
    """Runs ``attacks`` (members joined by '+') and keeps the lowest-Dice result per volume."""

    name = "worst-case"

    def __init__(
        self, model: torch.nn.Module, attacks: str = DEFAULT_MEMBERS, eps: float = 4 / 255, steps: int | None = None, **kwargs
    ) -> None:
        super().__init__(model, **kwargs)
        check_positive(eps=eps, steps=steps or 0)
        self.members = split_members(attacks)
        self.eps = float(eps)
        self.member_steps = int(steps) if steps is not None else None
        self.run_options = kwargs  # roi_size, overlap, sw_batch_size, loss, amp, seed: the same for every member
        self.attacks = [self._member(m) for m in self.members]
        # ``steps`` is what the progress bar counts: every member's steps, one after the other.
        self.steps = sum(int(getattr(a, "steps", 1)) or 1 for a in self.attacks)

    def _member(self, method: str) -> Attack:
        spec, preset = registry.split_method(method)
        if "eps" not in spec.param_names:
            raise ValueError(
                f"{method} is not an L-inf attack (no eps); one worst-case ensemble holds one threat model: "
                f"combine L-inf attacks ({', '.join(s.name for s in registry.takers('eps') if s.cls is not WorstCase)})"
            )
        fixed = spec.preset(preset).values.get("eps") if preset is not None else None
        if fixed is not None and abs(fixed - self.eps) > 1e-12:
            raise ValueError(
                f"{method} runs at eps {fixed * 255:g}/255 but the ensemble's budget is {self.eps * 255:g}/255; "
                f"give the ensemble eps={fixed * 255:g}/255 or drop the member's preset"
            )
        params = {"eps": self.eps}
        if self.member_steps is not None and "steps" in spec.param_names:
            params["steps"] = self.member_steps
        return registry.build(method, self.model, params, **self.run_options)

    def _attack(self, x: torch.Tensor, y: torch.Tensor, progress: Progress | None) -> AttackResult:
        results, dice, done = [], [], 0
        for attack in self.attacks:
            span = int(getattr(attack, "steps", 1)) or 1
            offset = done
            result = attack.run(x, y, None if progress is None else (lambda d, t, o=offset: progress(o + d, self.steps)))
            done += span
            results.append(result)
            dice.append(mean_dice(self.predict(result.adv), y))
        dice_t = torch.stack(dice)  # [members, B]
        winners = pick_worst(dice_t)
        adv = torch.stack([results[int(w)].adv[b] for b, w in enumerate(winners)])
        names = [self.members[int(w)] for w in winners]
        first = results[int(winners[0])]
        extras = {
            "winner": names[0] if len(names) == 1 else names,
            "winners": names,
            "dice": {m: [float(v) for v in d] for m, d in zip(self.members, dice_t)},
            "budgets": {m: float(a.eps) for m, a in zip(self.members, self.attacks)},
        }
        return AttackResult(adv, x, y, [{**h, "winner": names[0]} for h in first.history], extras)


SPEC = AttackSpec(
    "worst-case", WorstCase, "Worst case",
    "runs several L-inf attacks under one eps and keeps, per volume, the one that lowers Dice most (AutoAttack's idea)",
    (
        Param("attacks", str, "the member attacks, joined by '+' (name or name:preset each)"),
        EPS_PARAM,
        Param("steps", int, "attack steps of every member; none = each member's own", STEPS, 1, 1000, optional=True),
    ),
    (EPS8_PRESET,),
    domain="ensemble", strength="eps", sweep=EPS_SWEEP, trainable=False,
)
