"""The per-organ table, bar chart and budget figures of the page, from the engine's report.json.

Nothing is measured here: the numbers are report.json's. What this module decides is what a
reader sees at a glance:

* every organ that counts in the mean is a row, including one the attack made up (no voxel in
  the reference, a few predicted: Dice 0, HD95 undefined), so the mean shown is the mean of the
  rows shown (HD95's mean is over the rows that have one, as the engine's);
* "Dice change" is attack minus clean: negative is worse, and the row's colour says how much;
  rows are sorted worst first, the mean last;
* without ground truth the reference is the clean prediction, whose Dice is 1 and HD95 0 by
  definition: no "clean" columns are sent then, only the attack's;
* :func:`budget_figures` is the one place an attack's budget figures (L-inf in HU, SSIM...) are
  picked from its report entry, so more can be added in one spot.

The page gets plain JSON-able rows (text already formatted, bar lengths in percent).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ..evaluation.results import AttackEntry, OrganMetrics, ReportMetrics, SegmentationMetrics

MEAN_ROW = "mean (organs)"
# HD95 beyond this is almost always a stray blob far from the organ, not a shifted border.
FAR_HD95_MM = 50.0
HD95_NOTE = ("HD95 is the 95th percentile of the distance between the two borders: a few stray voxels "
             "far from the organ make it large even when the Dice hardly moves")


@dataclass
class MetricsRow:
    """One organ (or the mean) under one attack."""

    organ: str
    dice_clean: str
    dice_attack: str
    dice_change: str  # attack - clean: negative = worse
    hd95_clean: str
    hd95_attack: str
    bar_clean: float  # percent of the bar's full width (Dice 1.0)
    bar_attack: float
    change_style: str  # the change cell's background: redder for a larger drop
    note: str  # why a value is missing or odd (tooltip)
    is_mean: bool
    dice_value: float | None  # the attack's Dice as a number (for checks and sorting)


def page_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """``{"reference", "has_clean", "attacks": [{"label", "title", "budget", "rows"}...]}``."""
    metrics = ReportMetrics.from_json(report)
    if not metrics.attacks:
        raise ValueError("the report has no attack results to show")
    return {
        "reference": metrics.reference,
        "has_clean": metrics.clean is not None,
        "hd95_note": HD95_NOTE,
        "attacks": [attack_metrics(label, entry, metrics.clean) for label, entry in metrics.attacks.items()],
    }


def attack_metrics(label: str, entry: AttackEntry, clean: SegmentationMetrics | None) -> dict[str, Any]:
    """One attack's rows (worst first, the mean last) and budget figures."""
    per_class = entry.metrics.vs_reference.per_class
    clean_per = clean.per_class if clean is not None else {}
    organs = [name for name, m in per_class.items() if _counted(m) or _counted(clean_per.get(name))]
    rows = [_row(name, per_class[name], clean_per.get(name), clean is not None) for name in organs]
    rows.sort(key=lambda r: (r.dice_value is None, _change(r), r.organ))  # worst first
    rows.append(_mean_row(organs, per_class, clean_per, clean is not None))
    return {"label": label, "budget": budget_figures(entry), "rows": [asdict(r) for r in rows]}


def budget_figures(entry: AttackEntry) -> list[dict[str, str]]:
    """The budget figures of one attack's report entry: what the perturbation cost, in words.

    Every figure the report carries is listed here, once; a missing one is left out."""
    m = entry.metrics
    figures = [
        ("L∞", m.perturbation_hu_linf, "{:.1f} HU", "largest change of any voxel, in HU"),
        ("SSIM", m.perturbation.ssim, "{:.4f}", "structural similarity of adversarial to clean (1 = identical)"),
        ("PSNR", m.perturbation.psnr_db, "{:.1f} dB", "peak signal-to-noise ratio of the change"),
        ("labels changed", m.flip_rate, "{:.2%}", "share of voxels whose predicted label changed"),
        ("time", entry.seconds, "{:.0f} s", "time the attack took"),
    ]
    return [{"name": name, "value": pattern.format(value), "help": help_text}
            for name, value, pattern, help_text in figures if _finite(value)]


# --- rows ----------------------------------------------------------------------------------------


def _row(organ: str, attacked: OrganMetrics, clean: OrganMetrics | None, has_clean: bool) -> MetricsRow:
    dice = _number(attacked.dice)
    hd95 = _number(attacked.hd95_mm)
    dice_clean = _number(clean.dice) if has_clean and clean else (None if has_clean else 1.0)
    clean_hd95 = _number(clean.hd95_mm) if clean is not None else None
    change = None if dice is None or dice_clean is None else dice - dice_clean
    notes = [n for n in (attacked.note, clean.note if has_clean and clean is not None else None) if n]
    if not attacked.ref_voxels:
        notes.append(f"not in the reference: {attacked.pred_voxels} voxels predicted under the attack")
    far = [v for v in (hd95, clean_hd95 if has_clean else None) if v is not None]
    if far and max(far) > FAR_HD95_MM:
        notes.append(f"HD95 {max(far):.0f} mm: {HD95_NOTE}")
    return MetricsRow(
        organ=organ,
        dice_clean=_fmt(dice_clean, "{:.3f}"), dice_attack=_fmt(dice, "{:.3f}"), dice_change=_fmt(change, "{:+.3f}"),
        hd95_clean=_fmt(clean_hd95 if has_clean else 0.0, "{:.1f}"),
        hd95_attack=_fmt(hd95, "{:.1f}"),
        bar_clean=_bar(dice_clean), bar_attack=_bar(dice), change_style=_change_style(change),
        note="; ".join(notes), is_mean=False, dice_value=dice,
    )


def _mean_row(organs: list[str], attacked: dict[str, OrganMetrics], clean: dict[str, OrganMetrics],
              has_clean: bool) -> MetricsRow:
    """The mean over exactly the rows shown (NaN-ignoring, as the engine's means)."""
    dice = _mean(_number(attacked[o].dice) for o in organs)
    hd95 = _mean(_number(attacked[o].hd95_mm) for o in organs)
    dice_clean = _mean(_number(clean[o].dice) for o in organs if o in clean) if has_clean else 1.0
    hd95_clean = _mean(_number(clean[o].hd95_mm) for o in organs if o in clean) if has_clean else 0.0
    change = None if dice is None or dice_clean is None else dice - dice_clean
    return MetricsRow(
        organ=MEAN_ROW, dice_clean=_fmt(dice_clean, "{:.3f}"), dice_attack=_fmt(dice, "{:.3f}"),
        dice_change=_fmt(change, "{:+.3f}"), hd95_clean=_fmt(hd95_clean, "{:.1f}"), hd95_attack=_fmt(hd95, "{:.1f}"),
        bar_clean=_bar(dice_clean), bar_attack=_bar(dice), change_style=_change_style(change),
        note=f"mean over the {len(organs)} organs above (HD95: over those that have one)", is_mean=True,
        dice_value=dice,
    )


def _counted(metrics: OrganMetrics | None) -> bool:
    """An organ counts in the mean when it has a Dice (in the reference, or predicted)."""
    return metrics is not None and _number(metrics.dice) is not None


def _change(row: MetricsRow) -> float:
    try:
        return float(row.dice_change)
    except ValueError:
        return math.inf


def _change_style(change: float | None) -> str:
    """Red, stronger for a larger drop (a drop of 0.5 or more is full red); a gain is green."""
    if change is None or abs(change) < 0.005:
        return ""
    alpha = min(abs(change) * 2.0, 1.0) * 0.8 + 0.2
    color = "214, 39, 40" if change < 0 else "44, 160, 44"
    return f"background: rgba({color}, {alpha:.2f});"


def _mean(values: Any) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fmt(value: float | None, pattern: str) -> str:
    return "–" if value is None else pattern.format(value)


def _bar(dice: float | None) -> float:
    """Bar length in percent; an undefined Dice draws no bar rather than a misleading one."""
    if dice is None:
        return 0.0
    return round(100.0 * min(max(dice, 0.0), 1.0), 1)
