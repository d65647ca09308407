"""A robustness curve's files: curve.csv, curve.json, curve.png and curve.html, and the partial
file that lets ``--resume`` continue a killed sweep.

Apart from :mod:`.curve` (which runs the sweep through the pipeline) so that the pipeline can
write a curve into a job's output folder without importing the code that runs one.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import math
import os
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..attacks import registry
from ..attacks.measures import METRIC_HELP, VISIBLE_HU, VISIBLE_SSIM
from ..files.atomic_file import replace_text
from ..files.images import atomic_output_dir
from .results import CURVE_COLUMNS as COLUMNS
from .results import CurvePoint

EQUAL_SSIM = 0.95
"""The curve's summary names the strongest attack whose change keeps SSIM at or above this."""


def strongest_at(points: Sequence[CurvePoint], min_ssim: float = EQUAL_SSIM) -> CurvePoint | None:
    """The point with the largest Dice drop among those whose SSIM is at least ``min_ssim``."""
    kept = [p for p in points if p.ssim == p.ssim and p.ssim >= min_ssim and p.dice_drop == p.dice_drop]
    return max(kept, key=lambda p: p.dice_drop, default=None)


def is_corruption(point: CurvePoint) -> bool:
    """Whether the point's method is a realistic corruption (registry ``adversarial=False``)."""
    name = point.attack.split(",")[0].split(":")[0]
    return name in registry.names() and not registry.get(name).adversarial


def summary_sentence(points: Sequence[CurvePoint], min_ssim: float = EQUAL_SSIM) -> str:
    """"at SSIM >= 0.95 the strongest attack here is X (Dice drop d)", or why there is none; with
    realistic corruptions on the curve too, the worst of them and the worst attack at that SSIM."""
    if any(is_corruption(p) for p in points):
        return _realistic_vs_adversarial(points, min_ssim)
    best = strongest_at(points, min_ssim)
    if best is None:
        return f"at SSIM >= {min_ssim:g} no attack here was measured: every point changed the CT more than that"
    where = f" on {best.model}" if len({p.model for p in points}) > 1 else ""
    return (f"at SSIM >= {min_ssim:g} the strongest attack here is {best.attack}{where} at {_strength_text(best)} "
            f"(Dice drop {best.dice_drop:.3f}, SSIM {best.ssim:.3f}, max change {best.linf_hu:.0f} HU)")


def _realistic_vs_adversarial(points: Sequence[CurvePoint], min_ssim: float) -> str:
    """"at SSIM >= 0.95 the worst realistic change is dose:25 ...; the worst attack is pgd ..."."""
    many = len({p.model for p in points}) > 1

    def named(p: CurvePoint | None, what: str) -> str:
        if p is None:
            return f"no {what} was measured there"
        where = f" on {p.model}" if many else ""
        return (f"the worst {what} is {p.attack}{where} at {_strength_text(p)} (Dice drop {p.dice_drop:.3f}, "
                f"SSIM {p.ssim:.3f}, max change {p.linf_hu:.0f} HU)")

    realistic = strongest_at([p for p in points if is_corruption(p)], min_ssim)
    attack = strongest_at([p for p in points if not is_corruption(p)], min_ssim)
    return f"at SSIM >= {min_ssim:g} {named(realistic, 'realistic change')}; {named(attack, 'attack')}"


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
            realistic = is_corruption(pts[0])  # corruptions dashed: not adversarial
            ax.plot(x, [p.mean_dice for p in pts], marker="s" if realistic else "o", ls="--" if realistic else "-",
                    label=label + (" (realistic)" if realistic else ""))
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

    The first line is the sweep's settings, which include the SHA-256 of the image, labels and
    model files: ``--resume`` reuses the points only when all of it matches (otherwise it says so
    and starts afresh), so a resumed curve never mixes two experiments, nor reuses points measured
    on a labels file since replaced at the same path. Each point line carries a checksum over the
    settings and the point, so an edited or damaged line is refused rather than reported as
    measured. The file is never a link: one there is refused, and it is opened without following one.
    """

    def __init__(self, out_dir: str | Path, settings: Mapping[str, Any]) -> None:
        out = Path(out_dir)
        self.path = out.with_name(f".{out.name}.curve-partial.jsonl")
        self.settings = json.loads(json.dumps(dict(settings)))  # plain JSON types, comparable
        self._settings_line = json.dumps(self.settings, sort_keys=True)

    def _check(self, point: Mapping[str, Any]) -> str:
        text = self._settings_line + "\n" + json.dumps(point, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def _refuse_link(self) -> bool:
        """Whether the partial file exists; FileExistsError if it is a link or not a plain file."""
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(mode):
            raise FileExistsError(
                f"'{self.path}' (the curve's partial file) is a symbolic link or not a plain file; "
                f"freqadv writes it itself, so remove it and run again"
            )
        return True

    def load(self) -> dict[tuple[str, str, float], CurvePoint]:
        """The points saved so far: none if there is no partial file, or (said on stderr) if it was
        measured with other settings or inputs. ValueError for a damaged or edited line."""
        if not self._refuse_link():
            return {}
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, encoding="utf-8", errors="replace") as f:
            text = f.read()
        lines = text.split("\n")
        try:
            saved = json.loads(lines[0])
        except json.JSONDecodeError:
            saved = None
        if saved != self.settings:
            changed = sorted(k for k in self.settings if not isinstance(saved, dict) or saved.get(k) != self.settings[k])
            print(f"freqadv: note: {self.path.name} was measured with other settings or inputs "
                  f"({', '.join(changed) or 'unreadable'}); starting the sweep afresh", file=sys.stderr)
            return {}
        points = {}
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            if number == len(lines) and not text.endswith("\n"):
                break  # the last line of a killed run may be cut short; it is measured again
            point = self._parse_line(line, number)
            points[point.key] = point
        return points

    def _parse_line(self, line: str, number: int) -> CurvePoint:
        try:
            data = json.loads(line)
            values, check = data["point"], data["check"]
            if not isinstance(values, dict) or check != self._check(values):
                raise ValueError
            point = CurvePoint(**{k: (float("nan") if v is None else v) for k, v in values.items()})
            point.key  # noqa: B018 (a value that is not a number fails here, not later)
            return point
        except (ValueError, TypeError, KeyError):
            raise ValueError(
                f"line {number} of '{self.path}' is damaged or was edited (its checksum or fields do not match); "
                f"run without --resume to measure the sweep afresh"
            ) from None

    def start(self, resume: bool) -> dict[tuple[str, str, float], CurvePoint]:
        """Points to reuse (with ``resume``), and a partial file ready to append to."""
        self._refuse_link()
        done = self.load() if resume else {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps(self.settings)] + [self._line(point) for point in done.values()]
        replace_text(self.path, "".join(line + "\n" for line in lines))  # replaces a file, never writes through a link
        return done

    def _line(self, point: CurvePoint) -> str:
        values = _json_point(point)
        return json.dumps({"point": values, "check": self._check(values)})

    def add(self, point: CurvePoint) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(self._line(point) + "\n")
            f.flush()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
