"""Robustness curves: Dice against the size of the change, one line per attack and model.

An attack's Dice drop means nothing without the size of the change that caused it: VAFA with
per-slice renormalisation moves whole slices by hundreds of HU, PGD at 4/255 by 7 HU. A curve
sweeps each attack's own strength (its registry spec's ``strength``: eps, q_max, ...) and plots
Dice against in-body SSIM and against the largest HU change, so attacks are compared at equal
budget:

    points = sweep(start_job(ct, model, labels), [CurveAttack.parse("vafa"), CurveAttack.parse("pgd")])
    write_curve(points, "out/")      # curve.csv, curve.png, curve.html (atomically)

Sweep values are the spec's ``sweep`` unless overridden (``{"vafa": [5, 10, 20]}``, engine units);
a preset that fixes the strength (``dose:25``, ``pgd:eps8``) is one point. Realistic CT corruptions
(``dose``, ``kernel``, ...; :mod:`FreqAdvSegmentLib.corruptions`) go on the same axes, dashed, and
the summary then names the worst realistic change and the worst attack at equal SSIM.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..attacks import registry
from ..attacks.spec import AttackSpec
from ..job import pipeline
from ..job.records import AttackOutcome, AttackRequest, JobResult
from .curve_files import (  # noqa: F401  (the curve's files, named here as they always were)
    COLUMNS,
    EQUAL_SSIM,
    PartialSweep,
    curve_csv,
    curve_figure,
    curve_html,
    is_corruption,
    strongest_at,
    summary_sentence,
    write_curve,
    write_curve_files,
)
from .results import CurvePoint


@dataclass(frozen=True)
class CurveAttack:
    """One line of a curve: an attack request (``vafa:public-code,steps=10``) minus its strength."""

    text: str
    spec: AttackSpec
    preset: str | None
    params: Mapping[str, Any]

    @classmethod
    def parse(cls, text: str) -> "CurveAttack":
        """From the request text ``name[:preset][,key=value...]``; ValueError when it sets the
        parameter the curve sweeps, or the attack has none."""
        spec, preset, params = registry.parse_request(text)
        if spec.strength is None:
            raise ValueError(f"{spec.name} has no strength parameter to sweep; choose another attack for the curve")
        if spec.strength in params:
            raise ValueError(f"{text!r}: the curve sweeps {spec.strength} itself; give its values with "
                             f"--points {spec.name}=V1,V2,... instead")
        return cls(text.replace(" ", ""), spec, preset, params)

    @property
    def method(self) -> str:
        return self.spec.name if self.preset is None else f"{self.spec.name}:{self.preset}"

    def request(self, value: float) -> AttackRequest:
        """The pipeline's request for one point of the sweep."""
        return AttackRequest(self.method, {**self.params, self.spec.strength: value})




def parse_points(texts: Sequence[str], attacks: Sequence[CurveAttack]) -> dict[str, tuple[float, ...]]:
    """``["vafa=5,10,20", "pgd=1/255,4/255"]`` -> values per attack name or request text, parsed
    and checked by the strength parameter (engine units, fractions allowed)."""
    out: dict[str, tuple[float, ...]] = {}
    for text in texts:
        key, sep, values = text.partition("=")
        key = key.strip()
        match = [a for a in attacks if key in (a.spec.name, a.text, a.method)]
        if not sep or not match:
            known = ", ".join(sorted({a.spec.name for a in attacks}))
            raise ValueError(f"--points {text!r}: expected ATTACK=V1,V2,... for one of the chosen attacks ({known})")
        param = match[0].spec.param(match[0].spec.strength)
        parsed = tuple(sorted(param.parse(v) for v in values.split(",") if v.strip()))
        if not parsed:
            raise ValueError(f"--points {text!r}: give at least one value")
        out[key] = parsed
    return out


def sweep_values(attack: CurveAttack, points: Mapping[str, Sequence[float]] | None = None) -> tuple[float, ...]:
    """The strengths to run for ``attack``: its own override, its name's, else the spec's sweep."""
    points = points or {}
    for key in (attack.text, attack.method, attack.spec.name):
        if key in points:
            return tuple(points[key])
    if attack.preset is not None and attack.spec.strength in attack.spec.preset(attack.preset).values:
        return (float(attack.spec.resolve(attack.preset)[attack.spec.strength]),)  # dose:25 is one point
    if not attack.spec.sweep:
        raise ValueError(f"{attack.spec.name} has no default sweep; give one with --points {attack.spec.name}=V1,V2,...")
    return tuple(attack.spec.sweep)


def point_from_outcome(job: JobResult, outcome: AttackOutcome, attack: CurveAttack, value: float) -> CurvePoint:
    """A curve point from a finished :class:`~..job.records.AttackOutcome` of ``job``."""
    m = outcome.metrics
    clean = job.clean_metrics.mean_dice if job.clean_metrics is not None else 1.0
    dice = m.vs_reference.mean_dice
    param = attack.spec.param(attack.spec.strength)
    b = m.budget
    return CurvePoint(
        model=job.loaded.name, attack=attack.text, param=param.name, value=float(value),
        shown=float(value) * param.display_scale, unit=param.unit,
        reference="ground truth" if job.ground_truth is not None else "clean prediction",
        clean_dice=clean, mean_dice=dice, dice_drop=clean - dice,
        mean_dice_vs_clean=m.vs_clean_prediction.mean_dice,
        linf_hu=b.linf_hu, rms_hu=b.rms_hu, psnr_db=b.psnr_db, ssim=b.ssim,
        visible=m.visible is not None, seconds=outcome.seconds,
    )


Progress = Callable[[str, int, int], None]


def sweep(
    job: JobResult,
    attacks: Sequence[CurveAttack],
    points: Mapping[str, Sequence[float]] | None = None,
    progress: Progress | None = None,
    done: Mapping[tuple[str, str, float], CurvePoint] | None = None,
    on_point: Callable[[CurvePoint], None] | None = None,
    count_from: tuple[int, int] | None = None,
) -> list[CurvePoint]:
    """Every point of every attack's sweep on one started job (:func:`~..job.pipeline.start_job`).

    Args:
        done: points already measured (``--resume``), by :attr:`CurvePoint.key`; they are not rerun.
        on_point: called with each new point as soon as it is measured (to save it).
        count_from: (done, total) over a whole multi-model curve, for the progress bar.
    """
    done = done or {}
    plan = [(a, v) for a in attacks for v in sweep_values(a, points)]
    finished, total = count_from or (0, len(plan))
    out = []
    for attack, value in plan:
        key = (job.loaded.name, attack.text, float(value))
        if key in done:
            point = done[key]
        else:
            point = point_from_outcome(job, pipeline.run_attack(job, attack.request(value)), attack, value)
            if on_point is not None:
                on_point(point)
        out.append(point)
        finished += 1
        if progress is not None:
            progress("curve", finished, total)
    return out


