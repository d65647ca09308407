"""``freqadv evaluate``: Dice and HD95 per case, per model and per attack over a datalist.

A MONAI Decathlon-style datalist JSON (``{"validation": [{"image": ..., "label": ...}]}``, paths
relative to the JSON's folder, e.g. the paper's BTCV 18/12 split) -> ``results.csv`` (one row per
model, case and condition, with per-organ Dice and, for an attack, its budget: the largest and RMS
change in HU inside the body, PSNR and SSIM), ``summary.json`` and ``summary.md`` (mean Dice per
model and condition, the table a paper reports, each attack's cell with its budget beside it).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..job.inference import load_segmentation_model
from ..files.images import atomic_output_dir, read_image
from ..job.pipeline import AttackRequest, JobResult, RunOptions, StageProgress, run_job
from .results import Budget, SegmentationMetrics


def load_datalist(path: str | Path, split: str = "validation") -> list[dict[str, Path]]:
    """Cases of one split, with absolute image and label paths, checked whole before any case
    runs: the JSON's shape, every entry, and that every file exists (a missing last image of
    10,000 is found now, not after hours).

    Raises:
        FileNotFoundError: the datalist or any case's file is missing (up to five named).
        ValueError: not JSON, not an object of lists, or an entry without string 'image'/'label'.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"datalist not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"datalist {path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"datalist {path} must be a JSON object such as {{\"validation\": [{{\"image\": ..., \"label\": ...}}]}}, "
                         f"not a {type(data).__name__}")
    if split not in data:
        raise ValueError(f"datalist {path} has no {split!r} list (it has: {', '.join(data)}); choose one with --split")
    if not isinstance(data[split], list):
        raise ValueError(f"datalist {path}: {split!r} must be a list of cases, not a {type(data[split]).__name__}")
    cases = []
    for i, entry in enumerate(data[split]):
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) and entry[k] for k in ("image", "label")):
            raise ValueError(f"datalist {path}, {split}[{i}]: each case needs 'image' and 'label' paths (text), "
                             f"got {str(entry)[:80]}")
        cases.append({k: (path.parent / entry[k]).resolve() for k in ("image", "label")})
    missing = [str(p) for case in cases for p in case.values() if not p.exists()]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise FileNotFoundError(f"{len(missing)} file(s) of datalist {path.name} [{split}] do not exist: "
                                f"{', '.join(missing[:5])}{more}; paths are relative to the datalist's folder")
    return cases


def case_names(cases: Sequence[dict[str, Path]]) -> list[str]:
    """A name per case for results.csv: the image's file name, or, where two cases share one, its
    path from the folder all images share (so ``a/img.nii.gz`` and ``b/img.nii.gz`` stay apart)."""
    names = [case["image"].name for case in cases]
    if len(set(names)) == len(names):
        return names
    common = Path(os.path.commonpath([str(case["image"].parent) for case in cases]))
    return [case["image"].relative_to(common).as_posix() for case in cases]


def evaluate_datalist(
    datalist: str | Path,
    models: Sequence[str],
    attacks: Sequence[AttackRequest],
    out_dir: str | Path,
    options: RunOptions | None = None,
    device: str = "auto",
    split: str = "validation",
    overwrite: bool = False,
    progress: StageProgress | None = None,
) -> str:
    """Evaluate every model on every case, clean and under every attack; returns summary.md's text."""
    cases = load_datalist(datalist, split)
    per_model = evaluate_cases(models, cases, attacks, options or RunOptions(), device, progress)
    rows = [row for name in models for case in per_model[name] for row in case]
    return write_results(rows, out_dir, datalist, split, len(cases), overwrite)


def evaluate_cases(
    models: Sequence[str],
    cases: Sequence[dict[str, Path]],
    attacks: Sequence[AttackRequest],
    options: RunOptions,
    device: str | torch.device,
    progress: StageProgress | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, list[list[dict[str, Any]]]]:
    """{model: [rows of case 0, rows of case 1, ...]}: each case segmented and attacked.
    ``names``: the cases' names in results.csv (default: :func:`case_names` of ``cases``)."""
    names = list(names) if names is not None else case_names(cases)
    out: dict[str, list[list[dict[str, Any]]]] = {}
    for name in models:
        loaded = load_segmentation_model(name, device)
        out[name] = [
            case_rows(name, case_name,
                      run_job(read_image(case["image"]), loaded, attacks, read_image(case["label"]), options, progress))
            for case, case_name in zip(cases, names)
        ]
    return out


def write_results(
    rows: list[dict[str, Any]], out_dir: str | Path, datalist: str | Path, split: str, n_cases: int, overwrite: bool
) -> str:
    """results.csv, summary.json and summary.md into ``out_dir`` (atomically); returns summary.md."""
    summary = summarize_rows(rows)
    text = summary_markdown(summary, datalist, split, n_cases)
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        write_csv(rows, tmp / "results.csv")
        # Strict JSON: a mean over no finite value is null, never NaN (which JSON does not have).
        (tmp / "summary.json").write_text(json.dumps(_finite_or_none(summary), indent=2, allow_nan=False), encoding="utf-8")
        (tmp / "summary.md").write_text(text, encoding="utf-8")
    return text


BUDGET_COLUMNS = ("linf_hu", "rms_hu", "psnr_db", "ssim")
"""The budget of an attack's row (see attacks.measures.budget); blank on the clean row, which changes nothing."""


def case_rows(model: str, case: str, job: JobResult) -> list[dict[str, Any]]:
    """One row per condition (clean, then each attack) for one case (a job run with ground truth)."""
    if job.clean_metrics is None:
        raise ValueError(f"{case}: evaluate needs the case's ground truth; the job was run without it")
    conditions: list[tuple[str, SegmentationMetrics, Budget | None]] = [("clean", job.clean_metrics, None)]
    conditions += [(o.request.label, o.metrics.vs_reference, o.metrics.budget) for o in job.outcomes]
    rows = []
    for condition, metrics, budget in conditions:
        row = {"model": model, "case": case, "condition": condition,
               "mean_dice": metrics.mean_dice, "mean_hd95_mm": metrics.mean_hd95_mm}
        row.update({key: ("" if budget is None else getattr(budget, key)) for key in BUDGET_COLUMNS})
        row.update({f"dice:{organ}": m.dice for organ, m in metrics.per_class.items()})
        rows.append(row)
    return rows


def summarize_rows(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """{model: {condition: {"mean_dice", "mean_hd95_mm", "cases"}}}, averaged over cases; an attack's
    entry also has "max_linf_hu" (the largest change in any case) and "mean_ssim"."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for row in rows:
        summary.setdefault(row["model"], {}).setdefault(row["condition"], []).append(row)  # type: ignore[arg-type]
    return {
        model: {
            cond: {
                "mean_dice": _nanmean([r["mean_dice"] for r in rs]),
                "mean_hd95_mm": _nanmean([r["mean_hd95_mm"] for r in rs]),
                "cases": len(rs),
                **_budget_summary(rs),
            }
            for cond, rs in conds.items()
        }
        for model, conds in summary.items()
    }


def _budget_summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    """{"max_linf_hu", "mean_ssim"} over the rows of one attack; {} for the clean condition."""
    measured = [r for r in rows if r.get("linf_hu", "") != ""]
    if not measured:
        return {}
    return {"max_linf_hu": max(float(r["linf_hu"]) for r in measured),
            "mean_ssim": _nanmean([float(r["ssim"]) for r in measured])}


def summary_markdown(summary: dict, datalist: str | Path, split: str, n_cases: int) -> str:
    """Mean Dice (HD95 in mm) per model and condition as a Markdown table, with each attack's budget."""
    conditions = list(dict.fromkeys(c for conds in summary.values() for c in conds))
    lines = [f"Mean Dice (HD95 mm) over {n_cases} case(s) of {Path(datalist).name} [{split}], background excluded; "
             "under each attack its budget: mean SSIM inside the body, largest change in HU", "",
             "| model | " + " | ".join(conditions) + " |", "|---" * (len(conditions) + 1) + "|"]
    for model, conds in summary.items():
        lines.append(f"| {model} | " + " | ".join(_summary_cell(conds.get(c)) for c in conditions) + " |")
    return "\n".join(lines) + "\n"


def _summary_cell(entry: dict[str, float] | None) -> str:
    if entry is None:
        return "–"
    cell = f"{entry['mean_dice']:.3f} ({entry['mean_hd95_mm']:.1f})"
    if "mean_ssim" in entry:
        cell += f" [SSIM {entry['mean_ssim']:.3f}, {entry['max_linf_hu']:.0f} HU]"
    return cell


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _finite_or_none(value: Any) -> Any:
    """``value`` with every NaN or infinite float (nested in dicts and lists) replaced by None."""
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
