"""The worst-case ensemble: several attacks under one budget, the most damaging kept per volume.

AutoAttack's idea (Croce & Hein 2020) for segmentation: run every member attack on the same
volumes with the same L-inf budget and step count, segment each result, and keep, per volume,
the adversarial volume whose prediction has the lowest mean foreground Dice against the labels
attacked. A model is only as robust as its worst case, and which attack is worst differs between
models and volumes.

Members are written ``pgd+segpgd+cospgd+apgd`` (any registered ``name`` or ``name:preset``); the
ensemble's ``eps`` and ``steps`` go to every member that takes them (frequency attacks keep their
own budgets, q_max or rho). The result says which member won: ``extras["winner"]`` (one name per
volume) and every member's Dice in ``extras["dice"]``.
"""

from __future__ import annotations

import torch

from .base import Attack, AttackResult, Progress
from .catalog import REGISTERED as registry  # the registry's own store: registry.py imports this file
from .spec import STEPS, AttackSpec, Param, Preset
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

    def __init__(self, model: torch.nn.Module, attacks: str = DEFAULT_MEMBERS, eps: float = 4 / 255, steps: int = 20, **kwargs) -> None:
        super().__init__(model, **kwargs)
        check_positive(eps=eps, steps=steps)
        self.members = split_members(attacks)
        self.eps, self.member_steps = float(eps), int(steps)
        self.run_options = kwargs  # roi_size, overlap, sw_batch_size, loss, amp, seed: the same for every member
        self.attacks = [self._member(m) for m in self.members]
        # ``steps`` is what the progress bar counts: every member's steps, one after the other.
        self.steps = sum(int(getattr(a, "steps", 1)) or 1 for a in self.attacks)

    def _member(self, method: str) -> Attack:
        spec, _ = registry.split_method(method)
        budget = {k: v for k, v in (("eps", self.eps), ("steps", self.member_steps)) if k in spec.param_names}
        return registry.build(method, self.model, budget, **self.run_options)

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
        }
        return AttackResult(adv, x, y, [{**h, "winner": names[0]} for h in first.history], extras)


SPEC = AttackSpec(
    "worst-case", WorstCase, "Worst case",
    "runs several attacks under one budget and keeps, per volume, the one that lowers Dice most (AutoAttack's idea)",
    (
        Param("attacks", str, "the member attacks, joined by '+' (name or name:preset each)"),
        EPS_PARAM,
        Param("steps", int, "attack steps (paper: 20)", STEPS, 1, 1000),
    ),
    (EPS8_PRESET, Preset("frequency", "the frequency attacks too: PGD, SegPGD, CosPGD, APGD, VAFA and SA²",
                   {"attacks": "pgd+segpgd+cospgd+apgd+vafa+sa2"})),
    domain="ensemble", strength="eps", sweep=EPS_SWEEP, trainable=False,
)
