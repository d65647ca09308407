#!/usr/bin/env python
"""Tables and figures of docs/results/robust_models.md from the outputs of train_robust_demo.sh.

    python scripts/robust_report.py freqadv-out-robust-eval --png docs/results/robust_curves_heldout.png \
        --csv-dir docs/results

Reads EVAL/curves/<model>/curve.csv (scripts/robust_curves.py, the held-out slab) and
EVAL/patientB/<model>/summary.json (``freqadv evaluate``); prints Markdown
tables to stdout: Dice at the paper's budgets on the slab and on patient B, and Dice at equal SSIM (0.95, 0.90) read off each curve
by linear interpolation between neighbouring points (the clean point counts as SSIM 1); "-" where
the sweep never got down to that SSIM. Writes the curve figure (Dice against strength and against
SSIM, one line per model) atomically.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
from pathlib import Path

MODELS = ("natural", "natft", "pgdat", "vaft")
MODEL_TITLES = {"natural": "natural (demo-unet)", "natft": "natural fine-tune", "pgdat": "PGD-AT",
                "vaft": "VAFT (public-code VAFA)"}
# The paper's budgets, read off the slab's curves: (method, strength shown) -> column title.
PAPER_POINTS = ((("gn", 4.0), "GN 4/255"), (("fgsm", 4.0), "FGSM 4/255"), (("pgd", 4.0), "PGD 4/255"),
                (("vafa", 20.0), "VAFA paper q20"), (("vafa:public-code", 20.0), "VAFA public-code q20"))
CURVE_METHODS = (("pgd", "PGD", "eps (/255)"), ("vafa:public-code", "VAFA public-code", "q_max"),
                 ("gn", "GN", "std (/255)"))
SSIM_TARGETS = (0.95, 0.90)


def patient_b_table(eval_dir: Path) -> str:
    """Markdown: one row per model, Dice (HD95 mm) clean, under PGD 4/255 and public-code VAFA q20."""
    lines = ["| model | clean | PGD 4/255 | VAFA public-code q20 |", "|---|---:|---:|---:|"]
    for model in MODELS:
        path = eval_dir / "patientB" / model / "summary.json"
        if not path.exists():
            continue
        conds = next(iter(json.loads(path.read_text()).values()))
        cells = [_cell(conds.get(c)) for c in ("clean", "pgd", "vafa-public-code")]
        lines.append(f"| {MODEL_TITLES[model]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(entry: dict | None) -> str:
    return "n/a" if entry is None else f"{entry['mean_dice']:.3f} ({entry['mean_hd95_mm']:.0f})"


def slab_paper_table(curves: dict[str, list[dict]]) -> str:
    """Markdown: Dice (SSIM) per model at the paper's budgets, from the slab's curve points."""
    titles = [t for _, t in PAPER_POINTS]
    lines = ["| model | clean | " + " | ".join(titles) + " |", "|---|---:|" + "---:|" * len(titles)]
    for model, rows in curves.items():
        found = {(r["method"], r["shown"]): r for r in rows}
        cells = [f"{found[k]['mean_dice']:.3f} ({found[k]['ssim']:.3f})" if k in found else "n/a"
                 for k, _ in PAPER_POINTS]
        clean = curve_points(rows, "clean")[0][2]
        lines.append(f"| {MODEL_TITLES[model]} | {clean:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def read_curves(eval_dir: Path) -> dict[str, list[dict]]:
    """{model: rows of its curve.csv, numbers as floats}."""
    out = {}
    for model in MODELS:
        path = eval_dir / "curves" / model / "curve.csv"
        if path.exists():
            with path.open(encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
            for row in rows:
                for key in ("value", "shown", "ssim", "linf", "mean_dice"):
                    row[key] = float(row[key])
            out[model] = rows
    return out


def curve_points(rows: list[dict], method: str) -> list[tuple[float, float, float]]:
    """(shown strength, SSIM, Dice) of one method, the clean point first, by strength."""
    clean = [(0.0, 1.0, r["mean_dice"]) for r in rows if r["method"] == "clean"]
    points = sorted((r["shown"], r["ssim"], r["mean_dice"]) for r in rows if r["method"] == method)
    return clean[:1] + points


def dice_at_ssim(points: list[tuple[float, float, float]], target: float) -> float | None:
    """Dice where the curve crosses SSIM ``target`` (linear between neighbours), None if it never does."""
    for (_, s0, d0), (_, s1, d1) in zip(points, points[1:]):
        if s1 <= target <= s0 and s0 > s1:
            return d0 + (d1 - d0) * (s0 - target) / (s0 - s1)
    return None


def ssim_table(curves: dict[str, list[dict]]) -> str:
    """Markdown: Dice at equal SSIM per model and method."""
    heads = [f"{title} @ SSIM {t:.2f}" for _, title, _ in CURVE_METHODS[:2] for t in SSIM_TARGETS]
    lines = ["| model | clean | " + " | ".join(heads) + " |", "|---|---:|" + "---:|" * len(heads)]
    for model, rows in curves.items():
        cells = []
        for method, _, _ in CURVE_METHODS[:2]:
            points = curve_points(rows, method)
            for t in SSIM_TARGETS:
                d = dice_at_ssim(points, t)
                cells.append("-" if d is None else f"{d:.3f}")
        clean = curve_points(rows, "clean")[0][2]
        lines.append(f"| {MODEL_TITLES[model]} | {clean:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def points_table(curves: dict[str, list[dict]]) -> str:
    """Markdown: every measured point (strength, SSIM, Dice) per model, for the record."""
    lines = ["| model | attack | strength | SSIM | L-inf | Dice |", "|---|---|---:|---:|---:|---:|"]
    for model, rows in curves.items():
        for r in rows:
            if r["method"] != "clean":
                lines.append(f"| {model} | {r['method']} | {r['param']} {r['shown']:g} | {r['ssim']:.3f} | "
                             f"{r['linf']:.3f} | {r['mean_dice']:.3f} |")
    return "\n".join(lines)


def write_csvs(eval_dir: Path, folder: Path) -> list[Path]:
    """robust_models_heldout.csv (every curve row) and robust_models_patientB.csv (every evaluate
    row, per-organ Dice included), each the concatenation over the models, written atomically."""
    sources = {"robust_models_heldout.csv": [eval_dir / "curves" / m / "curve.csv" for m in MODELS],
               "robust_models_patientB.csv": [eval_dir / "patientB" / m / "results.csv" for m in MODELS]}
    written = []
    for name, paths in sources.items():
        parts = [p.read_text(encoding="utf-8").splitlines() for p in paths if p.exists()]
        if not parts:
            continue
        lines = parts[0][:1] + [line for part in parts for line in part[1:]]
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".part")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, folder / name)
        written.append(folder / name)
    return written


def plot(curves: dict[str, list[dict]], png: Path) -> None:
    """Two rows of panels (Dice vs strength, Dice vs SSIM), one column per attack; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(CURVE_METHODS), figsize=(4.2 * len(CURVE_METHODS), 7.5), squeeze=False)
    for col, (method, title, unit) in enumerate(CURVE_METHODS):
        for model, rows in curves.items():
            pts = curve_points(rows, method)
            axes[0][col].plot([p[0] for p in pts], [p[2] for p in pts], "o-", label=MODEL_TITLES[model])
            axes[1][col].plot([p[1] for p in pts], [p[2] for p in pts], "o-", label=MODEL_TITLES[model])
        axes[0][col].set(title=title, xlabel=f"{unit} (0 = clean)", ylabel="mean Dice")
        axes[1][col].set(xlabel="SSIM to the clean volume", ylabel="mean Dice")
        axes[1][col].invert_xaxis()  # stronger attacks to the right in both rows
        for t in SSIM_TARGETS:
            axes[1][col].axvline(t, color="grey", lw=0.6, ls=":")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Held-out slab of patient A (z 82-97): mean Dice under attack, 5 attack steps, CPU")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=png.parent, suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, png)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("eval_dir", type=Path)
    p.add_argument("--png", type=Path, help="write the curve figure here")
    p.add_argument("--csv-dir", type=Path, help="write robust_models_heldout.csv and robust_models_patientB.csv here")
    args = p.parse_args(argv)
    if not args.eval_dir.is_dir():
        print(f"robust_report: error: {args.eval_dir} is not a folder; run scripts/train_robust_demo.sh first",
              file=sys.stderr)
        return 2
    curves = read_curves(args.eval_dir)
    if curves:
        print(f"### held-out slab: Dice (SSIM) at the paper's budgets\n\n{slab_paper_table(curves)}\n")
        print(f"### held-out slab: Dice at equal SSIM\n\n{ssim_table(curves)}\n")
        print(f"### held-out slab: every curve point\n\n{points_table(curves)}\n")
        if args.png:
            plot(curves, args.png)
    print(f"### patient B: Dice (HD95 mm), freqadv evaluate\n\n{patient_b_table(args.eval_dir)}\n")
    if args.csv_dir:
        write_csvs(args.eval_dir, args.csv_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
