"""The per-organ Dice/HD95 table and bar chart of the page, from the engine's report.json.

The numbers come from the MRML bridge's :func:`~FreqAdvSegmentLib.mrml.tables.metrics_rows`,
the same rows as the table node the Slicer module shows; nothing is recomputed. The page gets
plain JSON-able rows (strings already formatted, bar lengths in percent) so its template stays a
loop with no arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ..mrml.tables import MEAN_ROW, metrics_rows


@dataclass
class MetricsRow:
    """One organ (or the mean): Dice and HD95, clean and under the attack, and bar lengths."""

    organ: str
    dice_clean: str
    dice_attack: str
    dice_drop: str
    hd95_clean: str
    hd95_attack: str
    bar_clean: float  # percent of the bar's full width (Dice 1.0)
    bar_attack: float
    is_mean: bool


def page_metrics(report: dict[str, Any], attack: str | None = None) -> dict[str, Any]:
    """``{"reference", "attack", "rows": [...]}`` for one attack of ``report`` (default: the first)."""
    attacks = list(report.get("attacks") or {})
    if not attacks:
        raise ValueError("the report has no attack results to show")
    attack = attack or attacks[0]
    organs, columns = metrics_rows(report)
    rows = [_row(i, organ, columns, attack) for i, organ in enumerate(organs)]
    reference = report.get("reference", "clean prediction")
    return {"reference": reference, "attack": attack, "rows": [asdict(r) for r in rows]}


def _row(index: int, organ: str, columns: dict[str, list[float]], attack: str) -> MetricsRow:
    clean, attacked = columns["Dice clean"][index], columns[f"Dice {attack}"][index]
    return MetricsRow(
        organ=organ,
        dice_clean=_fmt(clean, "{:.3f}"),
        dice_attack=_fmt(attacked, "{:.3f}"),
        dice_drop=_fmt(columns[f"Dice drop {attack}"][index], "{:+.3f}"),
        hd95_clean=_fmt(columns["HD95 clean (mm)"][index], "{:.1f}"),
        hd95_attack=_fmt(columns[f"HD95 {attack} (mm)"][index], "{:.1f}"),
        bar_clean=_bar(clean),
        bar_attack=_bar(attacked),
        is_mean=organ == MEAN_ROW,
    )


def _fmt(value: float | None, pattern: str) -> str:
    return "–" if value is None or math.isnan(value) else pattern.format(value)


def _bar(dice: float | None) -> float:
    """Bar length in percent; an undefined Dice draws no bar rather than a misleading one."""
    if dice is None or math.isnan(dice):
        return 0.0
    return round(100.0 * min(max(dice, 0.0), 1.0), 1)
