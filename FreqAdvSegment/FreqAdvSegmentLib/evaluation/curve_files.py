"""A robustness curve's files: curve.csv, curve.json, curve.png and curve.html, and the partial
file that lets ``--resume`` continue a killed sweep.

Apart from :mod:`.curve` (which runs the sweep through the pipeline) so that the pipeline can
write a curve into a job's output folder without importing the code that runs one.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..attacks.measures import METRIC_HELP, VISIBLE_HU, VISIBLE_SSIM
from ..files.images import atomic_output_dir
from .results import CURVE_COLUMNS as COLUMNS
from .results import CurvePoint

EQUAL_SSIM = 0.95
"""The curve's summary names the strongest attack whose change keeps SSIM at or above this."""


def strongest_at(points: Sequence[CurvePoint], min_ssim: float = EQUAL_SSIM) -> CurvePoint | None:
    """The point with the largest Dice drop among those whose SSIM is at least ``min_ssim``."""
    kept = [p for p in points if p.ssim == p.ssim and p.ssim >= min_ssim and p.dice_drop == p.dice_drop]
    return max(kept, key=lambda p: p.dice_drop, default=None)


def summary_sentence(points: Sequence[CurvePoint], min_ssim: float = EQUAL_SSIM) -> str:
    """"at SSIM >= 0.95 the strongest attack here is X (Dice drop d)", or why there is none."""
    best = strongest_at(points, min_ssim)
    if best is None:
        return f"at SSIM >= {min_ssim:g} no attack here was measured: every point changed the CT more than that"
    where = f" on {best.model}" if len({p.model for p in points}) > 1 else ""
    return (f"at SSIM >= {min_ssim:g} the strongest attack here is {best.attack}{where} at {_strength_text(best)} "
            f"(Dice drop {best.dice_drop:.3f}, SSIM {best.ssim:.3f}, max change {best.linf_hu:.0f} HU)")


def _strength_text(p: CurvePoint) -> str:
    scale = p.shown / p.value if p.value else 1.0
    return f"{p.param} {p.shown:g}" + (f"/{scale:g}" if abs(scale - 1.0) > 1e-9 else "")


# --- files --------------------------------------------------------------------------------------


def curve_csv(points: Sequence[CurvePoint]) -> str:
    """curve.csv's text: one row per point, the columns of :class:`CurvePoint`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for p in points:
        writer.writerow({k: (f"{v:.10g}" if isinstance(v, float) else v) for k, v in asdict(p).items()})
    return buffer.getvalue()


def write_curve_files(points: Sequence[CurvePoint], folder: Path) -> dict[str, Any]:
    """curve.csv, curve.png, curve.json and curve.html into ``folder`` (the caller makes it atomic).
    Returns ``{"sentence", "figure", "points"}`` for a report that embeds the curve."""
    folder.mkdir(parents=True, exist_ok=True)
    sentence = summary_sentence(points)
    (folder / "curve.csv").write_text(curve_csv(points), encoding="utf-8")
    (folder / "curve.json").write_text(json.dumps({"summary": sentence, "points": [_json_point(p) for p in points]}, indent=2), encoding="utf-8")
    curve_figure(points, folder / "curve.png")
    (folder / "curve.html").write_text(curve_html(points, sentence), encoding="utf-8")
    return {"sentence": sentence, "figure": "curve.png", "points": points}


def write_curve(
    points: Sequence[CurvePoint], out_dir: str | Path, overwrite: bool = False, inputs: Sequence[str | Path] = ()
) -> Path:
    """The curve's files in ``out_dir``, atomically (a crash leaves no half-written folder; a
    folder holding one of ``inputs`` is never replaced)."""
    with atomic_output_dir(out_dir, overwrite, inputs) as tmp:
        write_curve_files(points, tmp)
    return Path(out_dir)


def _json_point(p: CurvePoint) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(p).items()}


def curve_figure(points: Sequence[CurvePoint], path: Path) -> None:
    """Dice against in-body SSIM and against the largest HU change; one line per attack and model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    lines = _lines(points)
    for (model, attack), pts in lines.items():
        label = attack if len({m for m, _ in lines}) == 1 else f"{attack} ({model})"
        for ax, x in ((axes[0], [p.ssim for p in pts]), (axes[1], [max(p.linf_hu, 1e-3) for p in pts])):
            ax.plot(x, [p.mean_dice for p in pts], marker="o", label=label)
    reference = points[0].reference if points else "ground truth"
    for model, clean in {p.model: p.clean_dice for p in points}.items():
        for ax in axes:
            ax.axhline(clean, color="grey", ls=":", lw=1)
    axes[0].axvspan(0, VISIBLE_SSIM, color="red", alpha=0.06)
    axes[0].axvline(EQUAL_SSIM, color="grey", ls="--", lw=1)
    axes[0].invert_xaxis()
    axes[0].set_xlabel("3D SSIM inside the body (1 = unchanged; shaded: visible, < 0.9)")
    axes[1].axvspan(VISIBLE_HU, max([p.linf_hu for p in points] + [VISIBLE_HU]) * 2, color="red", alpha=0.06)
    axes[1].set_xscale("log")
    axes[1].set_xlabel("largest change inside the body (HU, log; shaded: visible, > 50 HU)")
    axes[0].set_ylabel(f"mean Dice vs {reference} (dotted: clean)")
    axes[0].set_ylim(0, 1)
    axes[0].legend(fontsize=8)
    fig.suptitle(summary_sentence(points), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _lines(points: Sequence[CurvePoint]) -> dict[tuple[str, str], list[CurvePoint]]:
    lines: dict[tuple[str, str], list[CurvePoint]] = {}
    for p in points:
        lines.setdefault((p.model, p.attack), []).append(p)
    return {k: sorted(v, key=lambda p: p.value) for k, v in lines.items()}


def curve_html(points: Sequence[CurvePoint], sentence: str) -> str:
    """A self-contained page: the sentence, the figure, every point, and what each figure means."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(getattr(p, c)))}</td>" for c in COLUMNS) + "</tr>" for p in points
    )
    help_items = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in METRIC_HELP.items())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>FreqAdvSegment robustness curve</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}} img{{max-width:100%}}</style></head><body>
<h1>Robustness curve</h1>
<p id="summary"><b>{html.escape(sentence)}</b>.</p>
<p>Each line is one attack on one model, swept over its own strength; compare attacks at equal SSIM or
equal HU change, not at equal parameter values. A point is <i>visible</i> when its largest change exceeds
{VISIBLE_HU:g} HU or its SSIM is under {VISIBLE_SSIM:g}.</p>
<img src="curve.png" alt="Dice against SSIM and against the largest HU change">
<ul>{help_items}<li><b>dice_drop</b>: clean mean Dice minus the attacked one, against the same reference</li></ul>
<table><tr>{head}</tr>{rows}</table>
</body></html>
"""


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "–" if not math.isfinite(value) else f"{value:.4g}"
    return str(value)


# --- resuming a sweep ---------------------------------------------------------------------------


class PartialSweep:
    """Points of an unfinished sweep, saved one JSON line each beside the output folder.

    The first line is the sweep's settings; ``--resume`` reuses the points only when they match,
    so a resumed curve never mixes two different experiments."""

    def __init__(self, out_dir: str | Path, settings: Mapping[str, Any]) -> None:
        out = Path(out_dir)
        self.path = out.with_name(f".{out.name}.curve-partial.jsonl")
        self.settings = json.loads(json.dumps(dict(settings)))  # plain JSON types, comparable

    def load(self) -> dict[tuple[str, str, float], CurvePoint]:
        """The points saved so far (none if there is no partial file)."""
        if not self.path.is_file():
            return {}
        lines = self.path.read_text(encoding="utf-8").splitlines()
        if not lines or json.loads(lines[0]) != self.settings:
            raise ValueError(f"{self.path} holds a sweep with other settings; run without --resume to start again")
        points = {}
        for line in lines[1:]:
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                break  # the last line of a killed run may be cut short; it is measured again
            point = CurvePoint(**{k: (float("nan") if v is None else v) for k, v in data.items()})
            points[point.key] = point
        return points

    def start(self, resume: bool) -> dict[tuple[str, str, float], CurvePoint]:
        """Points to reuse (with ``resume``), and a partial file ready to append to."""
        done = self.load() if resume else {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("w", encoding="utf-8") as f:
            f.write(json.dumps(self.settings) + "\n")
            for point in done.values():
                f.write(json.dumps(_json_point(point)) + "\n")
        return done

    def add(self, point: CurvePoint) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(_json_point(point)) + "\n")
            f.flush()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
