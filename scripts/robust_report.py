#!/usr/bin/env python
"""Tables and figures of docs/results/robust_models.md from the outputs of train_robust_demo.sh.

    python scripts/robust_report.py freqadv-out-robust-eval --figures docs/results --csv-dir docs/results

Reads, for each data set DATA (``slab``: patient A's held-out slab; ``patientB``):

* EVAL/evaluate/DATA/MODEL/summary.json: ``freqadv evaluate``, clean and under every attack at the
  paper's budgets (the registry's defaults), each attack with its budget (SSIM, HU);
* EVAL/curve/DATA/MODEL/curve.csv: ``freqadv curve``, every attack at several strengths.

Prints Markdown to stdout: Dice [SSIM] at the paper's budgets, and Dice at equal SSIM (0.95, 0.90)
read off each curve by linear interpolation between neighbouring points (the clean point counts as
SSIM 1); "-" where a sweep never got down to that SSIM. Writes one figure per data set (Dice against
in-body SSIM, a panel per attack, a line per model) and copies the raw CSVs, all atomically.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from FreqAdvSegmentLib.files.atomic_file import replace_file

DATASETS = {"slab": "held-out slab of patient A (z 82-97)", "patientB": "patient B"}
MODEL_TITLES = {"natural": "natural (demo-unet)", "natft": "natural fine-tune", "pgdat": "PGD-AT",
                "vaft": "VAFT (public-code VAFA)", "sa2at": "SA²-AT"}
SSIM_TARGETS = (0.95, 0.90)


def model_key(model: str) -> str:
    """The twin's short name from the model string a command was given: ``demo-unet`` (the registry
    name) is natural; ``.../demo_unet_<twin>.safetensors`` is <twin>; anything else is its file stem."""
    if model == "demo-unet":
        return "natural"
    stem = Path(model).name.split(".")[0]
    return stem.removeprefix("demo_unet_")


def title(model: str) -> str:
    key = model_key(model)
    return MODEL_TITLES.get(key, key)


def _model_folders(folder: Path, filename: str) -> list[Path]:
    """folder/MODEL/filename for every model that has one, natural and the twins in MODEL_TITLES' order."""
    found = sorted(folder.glob(f"*/{filename}"), key=lambda p: p.parent.name)
    order = list(MODEL_TITLES)
    return sorted(found, key=lambda p: order.index(p.parent.name) if p.parent.name in order else len(order))


def read_summaries(folder: Path) -> dict[str, dict[str, dict]]:
    """{model key: {condition: entry}} from every MODEL/summary.json (``freqadv evaluate``) in ``folder``."""
    out: dict[str, dict[str, dict]] = {}
    for path in _model_folders(folder, "summary.json"):
        for m, conds in json.loads(path.read_text(encoding="utf-8")).items():
            out[model_key(m)] = conds
    return out


def paper_table(summary: dict[str, dict[str, dict]]) -> str:
    """Markdown: Dice per model and condition, each attack with [SSIM, largest change in HU]."""
    conditions = list(dict.fromkeys(c for conds in summary.values() for c in conds))
    lines = ["| model | " + " | ".join(conditions) + " |", "|---|" + "---:|" * len(conditions)]
    for key, conds in summary.items():
        cells = []
        for c in conditions:
            e = conds.get(c)
            cell = "n/a" if e is None else f"{e['mean_dice']:.3f}"
            if e is not None and "mean_ssim" in e:
                cell += f" [{e['mean_ssim']:.2f}, {e['max_linf_hu']:.0f} HU]"
            cells.append(cell)
        lines.append(f"| {MODEL_TITLES.get(key, key)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def attack_method(request: str) -> str:
    """``vafa:public-code,steps=10`` -> ``vafa:public-code``: a curve line's attack and preset
    (the request text of curve.csv also carries the settings every line shares, such as steps)."""
    from FreqAdvSegmentLib.attacks import registry

    spec, preset, _ = registry.parse_request(request)
    return spec.name if preset is None else f"{spec.name}:{preset}"


def read_curves(folder: Path) -> list[dict]:
    """Rows of every MODEL/curve.csv (``freqadv curve``) in ``folder``, numbers as floats and
    ``attack`` as the attack's name and preset (the full request stays in ``request``)."""
    rows = []
    for path in _model_folders(folder, "curve.csv"):
        with path.open(encoding="utf-8") as f:
            rows += list(csv.DictReader(f))
    for row in rows:
        row["request"], row["attack"] = row["attack"], attack_method(row["attack"])
        for k in ("value", "shown", "clean_dice", "mean_dice", "linf_hu", "ssim"):
            row[k] = float(row[k])
    return rows


def curve_points(rows: list[dict], model: str, attack: str) -> list[tuple[float, float, float]]:
    """(strength, SSIM, Dice) of one model's line, weakest first, the clean point (0, 1, clean Dice) first."""
    mine = [r for r in rows if r["model"] == model and r["attack"] == attack]
    if not mine:
        return []
    return [(0.0, 1.0, mine[0]["clean_dice"])] + sorted((r["value"], r["ssim"], r["mean_dice"]) for r in mine)


def dice_at_ssim(points: list[tuple[float, float, float]], target: float) -> float | None:
    """Dice where the curve first crosses SSIM ``target`` (linear between neighbours), None if it never does."""
    for (_, s0, d0), (_, s1, d1) in zip(points, points[1:]):
        if s1 <= target <= s0 and s0 > s1:
            return d0 + (d1 - d0) * (s0 - target) / (s0 - s1)
    return None


def _lines(rows: list[dict]) -> tuple[list[str], list[str]]:
    """The models and the attacks of a curve, in the order they were run."""
    return list(dict.fromkeys(r["model"] for r in rows)), list(dict.fromkeys(r["attack"] for r in rows))


def ssim_table(rows: list[dict]) -> str:
    """Markdown: Dice at SSIM 0.95 and 0.90 per model (rows) and attack (columns)."""
    models, attacks = _lines(rows)
    heads = [f"{a} @ {t:.2f}" for a in attacks for t in SSIM_TARGETS]
    lines = ["| model | clean | " + " | ".join(heads) + " |", "|---|---:|" + "---:|" * len(heads)]
    for model in models:
        cells = []
        for attack in attacks:
            points = curve_points(rows, model, attack)
            for t in SSIM_TARGETS:
                d = dice_at_ssim(points, t)
                cells.append("-" if d is None else f"{d:.3f}")
        clean = next(r["clean_dice"] for r in rows if r["model"] == model)
        lines.append(f"| {title(model)} | {clean:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], png: Path, heading: str) -> None:
    """Dice against SSIM, one panel per attack and one line per model; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models, attacks = _lines(rows)
    ncol = min(3, len(attacks))
    nrow = -(-len(attacks) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.4 * ncol, 3.6 * nrow), squeeze=False)
    for ax, attack in zip(axes.flat, attacks):
        for model in models:
            pts = curve_points(rows, model, attack)
            ax.plot([p[1] for p in pts], [p[2] for p in pts], "o-", ms=3, label=title(model))
        ax.set(title=attack, xlabel="in-body SSIM to the clean CT", ylabel="mean Dice")
        ax.invert_xaxis()  # stronger attacks to the right
        for t in SSIM_TARGETS:
            ax.axvline(t, color="grey", lw=0.6, ls=":")
    for ax in list(axes.flat)[len(attacks):]:
        ax.axis("off")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{heading}: mean Dice against the change's SSIM (freqadv curve)")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    replace_file(png, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)


def _concatenate(sources: list[Path], dest: Path) -> None:
    """One CSV from several with the same columns (the first file's header), written atomically."""
    rows, fields = [], []
    for src in sources:
        with src.open(encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields += [k for k in reader.fieldnames or [] if k not in fields]
            rows += list(reader)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)

    dest.parent.mkdir(parents=True, exist_ok=True)
    replace_file(dest, write)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("eval_dir", type=Path, help="EVAL_OUT of train_robust_demo.sh")
    p.add_argument("--figures", type=Path, help="write robust_curve_<data>.png here")
    p.add_argument("--csv-dir", type=Path, help="write each data set's results.csv and curve.csv, every model in one, here")
    args = p.parse_args(argv)
    found = False
    for data, heading in DATASETS.items():
        summaries = read_summaries(args.eval_dir / "evaluate" / data)
        if summaries:
            found = True
            print(f"### {heading}: Dice [SSIM, largest change] at the paper's budgets (freqadv evaluate)\n")
            print(paper_table(summaries) + "\n")
            if args.csv_dir:
                _concatenate(_model_folders(args.eval_dir / "evaluate" / data, "results.csv"),
                             args.csv_dir / f"robust_models_{data}_evaluate.csv")
        rows = read_curves(args.eval_dir / "curve" / data)
        if rows:
            found = True
            print(f"### {heading}: Dice at equal SSIM (freqadv curve)\n\n{ssim_table(rows)}\n")
            if args.figures:
                plot(rows, args.figures / f"robust_curve_{data}.png", heading)
            if args.csv_dir:
                _concatenate(_model_folders(args.eval_dir / "curve" / data, "curve.csv"),
                             args.csv_dir / f"robust_models_{data}_curve.csv")
    if not found:
        print(f"robust_report: error: no evaluate/ or curve/ results under {args.eval_dir}; "
              "run scripts/train_robust_demo.sh evaluate and curves first", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
