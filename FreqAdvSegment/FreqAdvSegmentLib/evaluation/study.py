"""``freqadv evaluate`` as a study runner: units, parts, resume, transfer and merge.

    freqadv evaluate data.json --models a b --method pgd --transfer -o out/ --num-parts 3 --part-id 0
    freqadv evaluate merge out0/ out1/ out2/ -o merged/

Every (case, model, condition, source model) cell is a unit (see :mod:`.units`); a run does the
groups of its part (and, under torchrun, of its rank), skips the units already in ``OUT/units``
with the same settings and input files, and writes each finished unit atomically. When the folder
holds every unit of the study it also writes the tables -- ``results.csv``, ``summary.json``,
``summary.md``, ``study.json`` (settings, transfer matrices) and, with transfer, ``transfer_<attack>.csv`` -- exactly what ``merge`` writes
from the parts' folders, whatever the split.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..attacks.network import predict_labels
from ..files.atomic_file import replace_text
from ..files.images import atomic_output_dir, read_image
from ..job.inference import LoadedModel, load_segmentation_model
from ..job.pipeline import (AttackOutcome, AttackRequest, JobResult, RunOptions, StageProgress, preprocessing_for,
                            run_attack, start_job, unique_labels, window_settings)
from ..job.preprocess import labels_to_original
from . import evaluate
from .metrics import segmentation_metrics
from .results import Budget, SegmentationMetrics
from .units import CLEAN, Unit, WorkGroup, digest, file_digest, part_of, plan_study, read_unit, read_units, write_unit

BUDGET_COLUMNS = ("linf_hu", "rms_hu", "psnr_db", "ssim")
TABLES = ("results.csv", "summary.json", "summary.md", "study.json")


def run_study(
    datalist: str | Path,
    models: Sequence[str],
    attacks: Sequence[AttackRequest],
    out_dir: str | Path,
    options: RunOptions | None = None,
    device: str = "auto",
    split: str = "validation",
    transfer: bool = False,
    num_parts: int = 1,
    part_id: int = 0,
    overwrite: bool = False,
    progress: StageProgress | None = None,
) -> str:
    """Run this part's units (this rank's share under torchrun) into ``out_dir``; returns
    summary.md's text when the folder then holds the whole study, else "".

    Raises:
        FileExistsError: ``out_dir`` holds units of a study with other settings (and no ``overwrite``).
        ValueError: a bad part, or transfer between models with different label maps.
    """
    from ..training.distributed import barrier, cleanup, init_distributed, launched_distributed

    options = options or RunOptions()
    attacks = unique_labels(attacks)
    cases = evaluate.load_datalist(datalist, split)
    names = evaluate.case_names(cases)
    study = study_settings(datalist, split, names, models, attacks, options, transfer)
    groups = part_of(plan_study(names, models, [a.label for a in attacks], transfer), num_parts, part_id)
    out = Path(out_dir)
    ctx = init_distributed(device) if launched_distributed() else None
    try:
        # Every rank checks (so all raise together, none waits at a barrier); only rank 0 clears.
        prepare_output(out, study["digest"], overwrite, clear=ctx is None or ctx.is_main)
        if ctx is not None:
            barrier(ctx)
            groups = part_of(groups, ctx.world_size, ctx.rank)
        runner = _Runner(cases, names, {a.label: a for a in attacks}, options,
                         ctx.device if ctx is not None else device, transfer, progress)
        for group in groups:
            runner.run_group(group, out, study)
        if ctx is not None:
            barrier(ctx)
            if not ctx.is_main:
                return ""
        return write_tables_if_complete(out, study)
    finally:
        if ctx is not None:
            cleanup(ctx)


def study_settings(datalist: str | Path, split: str, names: Sequence[str], models: Sequence[str],
                   attacks: Sequence[AttackRequest], options: RunOptions, transfer: bool) -> dict[str, Any]:
    """What makes two runs the same study (not the device, the split into parts or the ranks),
    with its ``digest``. A model given as a file is identified by its bytes, not its path."""
    settings = {
        "datalist": Path(datalist).name, "split": split, "cases": list(names),
        "models": [{"name": m, "bytes": file_digest(Path(m)) if Path(m).is_file() else None} for m in models],
        "attacks": [{"label": a.label, "request": a.text} for a in attacks],
        "options": asdict(options), "transfer": transfer,
    }
    settings["n_units"] = sum(len(g.units) for g in plan_study(names, models, [a.label for a in attacks], transfer))
    settings["digest"] = digest(settings)
    return settings


def prepare_output(out: Path, settings_digest: str, overwrite: bool, clear: bool = True) -> None:
    """Refuse (or, with ``overwrite``, clear) units of another study already in ``out``. The folder
    itself is made with the first unit, so a run that fails before any unit leaves none."""
    foreign = [r for r in read_units(out) if r["settings_digest"] != settings_digest] if (out / "units").is_dir() else []
    if foreign and not overwrite:
        raise FileExistsError(f"{out} holds {len(foreign)} unit(s) of a study with other settings (models, attacks, "
                              "options or cases differ); choose another -o folder, or --overwrite to start again")
    if overwrite and clear:
        for path in [*(out / "units").glob("*.json"), *(out / n for n in TABLES), *out.glob("transfer_*.csv")]:
            path.unlink(missing_ok=True)


class _Runner:
    """Runs groups, keeping the loaded models and the last case's clean jobs between them."""

    def __init__(self, cases, names, attacks: dict[str, AttackRequest], options: RunOptions, device,
                 transfer: bool, progress: StageProgress | None) -> None:
        self.cases, self.names, self.attacks, self.options = cases, names, attacks, options
        self.device, self.transfer, self.progress = device, transfer, progress
        self.models: dict[str, LoadedModel] = {}
        self.jobs: dict[tuple[int, str], JobResult] = {}
        self.inputs: dict[int, str] = {}

    def run_group(self, group: WorkGroup, out: Path, study: dict[str, Any]) -> None:
        """Compute the group's units not yet in ``out`` (same settings and input files) and write each."""
        inputs = self._inputs(group.case)
        todo = [u for u in group.units if not _done(read_unit(out, u), study["digest"], inputs)]
        if not todo:
            return
        job = self._job(group.case, group.model)
        if group.attack is None:
            write_unit(out, todo[0], make_row(todo[0], job.clean_metrics, None), study, inputs)
            return
        outcome = run_attack(job, self.attacks[group.attack], self.progress)
        for unit in todo:
            if self.transfer:  # every target, the source too, through the same path (its diagonal is white-box)
                metrics = transfer_metrics(job, outcome, self._model(unit.model), self.options)
            else:
                metrics = outcome.metrics.vs_reference
            write_unit(out, unit, make_row(unit, metrics, outcome.metrics.budget), study, inputs)

    def _inputs(self, case: int) -> str:
        if case not in self.inputs:
            self.inputs[case] = file_digest(self.cases[case]["image"], self.cases[case]["label"])
        return self.inputs[case]

    def _model(self, name: str) -> LoadedModel:
        if name not in self.models:
            self.models[name] = load_segmentation_model(name, self.device)
        return self.models[name]

    def _job(self, case: int, model: str) -> JobResult:
        if (case, model) not in self.jobs:
            self.jobs = {k: v for k, v in self.jobs.items() if k[0] == case}  # one case in memory at a time
            files = self.cases[case]
            self.jobs[(case, model)] = start_job(read_image(files["image"]), self._model(model),
                                                 read_image(files["label"]), self.options, self.progress,
                                                 attacking=bool(self.attacks))
        return self.jobs[(case, model)]


def _done(record: dict[str, Any] | None, settings_digest: str, inputs: str) -> bool:
    return record is not None and record["settings_digest"] == settings_digest and record["inputs"] == inputs


def transfer_metrics(job: JobResult, outcome: AttackOutcome, target: LoadedModel, options: RunOptions) -> SegmentationMetrics:
    """Segmentation metrics of ``target`` on the adversarial volume crafted on ``job``'s model.

    When both models see the same model grid (same spacing, window, orientation) the target
    segments the crafted tensor itself ([1, 1, H, W, D]), exactly what the white-box attack
    measured; otherwise the adversarial CT in HU on the input grid is preprocessed for the target.
    """
    source = job.loaded
    if list(source.spec.label_names) != list(target.spec.label_names):
        raise ValueError(f"transfer needs models with the same labels: {source.spec.name!r} and "
                         f"{target.spec.name!r} differ; compare them without --transfer")
    if preprocessing_for(source) == preprocessing_for(target):
        overlap, batch, _ = window_settings(options, target)
        roi = tuple(options.roi_size or target.spec.roi_size)
        pred = predict_labels(target.model, outcome.result.adv.to(target.device), roi, overlap, batch, options.amp)
        labels = labels_to_original(pred.cpu(), job.ctx)
    else:
        adv = sitk.GetArrayViewFromImage(job.image).astype(np.float32) + sitk.GetArrayViewFromImage(outcome.delta_hu)
        image = sitk.GetImageFromArray(adv)
        image.CopyInformation(job.image)
        labels = start_job(image, target, None, options, attacking=False).clean_labels
    return segmentation_metrics(sitk.GetArrayFromImage(labels), sitk.GetArrayFromImage(job.reference),
                                spacing=tuple(reversed(labels.GetSpacing())), label_names=target.spec.label_names,
                                include_background=options.include_background)


def make_row(unit: Unit, metrics: SegmentationMetrics, budget: Budget | None) -> dict[str, Any]:
    """results.csv's row of one unit; a transferred attack's condition is ``ATTACK<-SOURCE``."""
    condition = unit.condition
    if unit.source is not None and unit.source != unit.model:
        condition = f"{unit.condition}<-{unit.source}"
    row = {"model": unit.model, "case": unit.case_name, "condition": condition,
           "mean_dice": metrics.mean_dice, "mean_hd95_mm": metrics.mean_hd95_mm}
    row.update({key: ("" if budget is None else getattr(budget, key)) for key in BUDGET_COLUMNS})
    row.update({f"dice:{organ}": m.dice for organ, m in metrics.per_class.items()})
    return row


# --- tables -----------------------------------------------------------------------------------


def write_tables_if_complete(out: Path, study: dict[str, Any]) -> str:
    """The tables into ``out`` when it holds every unit of the study; summary.md's text, else ""."""
    records = [r for r in read_units(out) if r["settings_digest"] == study["digest"]]
    if len({r["key"] for r in records}) < study["n_units"]:
        return ""
    tables = study_tables(records)
    for name, text in tables.items():
        replace_text(out / name, text)
    return tables["summary.md"]


def merge_parts(folders: Sequence[str | Path], out_dir: str | Path, overwrite: bool = False) -> str:
    """``freqadv evaluate merge``: the tables of the study whose units lie in ``folders``.

    Raises:
        FileNotFoundError: a folder has no units/.
        ValueError: units of different studies, or units missing (how many, and which parts to rerun).
    """
    records: dict[str, dict[str, Any]] = {}
    for folder in map(Path, folders):
        if not (folder / "units").is_dir():
            raise FileNotFoundError(f"{folder} has no units/ folder: give the -o folders of `freqadv evaluate` parts")
        for record in read_units(folder):
            records.setdefault(record["key"], record)
    if not records:
        raise ValueError("no finished units in " + ", ".join(map(str, folders)))
    digests = {r["settings_digest"] for r in records.values()}
    if len(digests) > 1:
        raise ValueError(f"the folders hold units of {len(digests)} different studies (other models, attacks, options "
                         "or cases); merge the parts of one study only")
    study = next(iter(records.values()))["study"]
    if len(records) < study["n_units"]:
        raise ValueError(f"{study['n_units'] - len(records)} of {study['n_units']} units are missing: rerun the "
                         "unfinished parts (the same command resumes) and merge again")
    tables = study_tables(list(records.values()))
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        for name, text in tables.items():
            (tmp / name).write_text(text, encoding="utf-8")
    return tables["summary.md"]


def study_tables(records: list[dict[str, Any]]) -> dict[str, str]:
    """{file name: text}: results.csv, summary.json, summary.md and a transfer matrix per attack.
    Rows in the study's plan order, so the tables never depend on the split."""
    records = sorted(records, key=lambda r: r["index"])
    study = records[0]["study"]
    rows = [r["row"] for r in records]
    summary = evaluate.summarize_rows(rows)
    matrices = transfer_matrices(records) if study["transfer"] else {}
    # summary.json keeps evaluate's shape ({model: {condition: ...}}); the study's own settings and
    # its transfer matrices go beside it, so a model named like a key cannot collide with them.
    about = {"settings": study, "transfer_dice_drop": matrices}
    tables = {
        "results.csv": _csv(rows),
        "summary.json": json.dumps(_finite_or_none(summary), indent=2, allow_nan=False),
        "study.json": json.dumps(_finite_or_none(about), indent=2, allow_nan=False),
        "summary.md": evaluate.summary_markdown(summary, study["datalist"], study["split"], len(study["cases"])),
    }
    for attack, matrix in matrices.items():
        tables[f"transfer_{attack}.csv"] = _matrix_csv(matrix)
    return tables


def transfer_matrices(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """{attack: {source: {target: mean Dice drop}}}: the target's clean mean Dice minus its mean
    Dice on volumes crafted on the source, over the cases (NaN cases left out)."""
    clean: dict[tuple[str, str], float] = {(r["model"], r["row"]["case"]): r["row"]["mean_dice"]
                                           for r in records if r["condition"] == CLEAN}
    drops: dict[str, dict[str, dict[str, list[float]]]] = {}
    for r in records:
        if r["condition"] != CLEAN:
            drop = clean[(r["model"], r["row"]["case"])] - r["row"]["mean_dice"]
            drops.setdefault(r["condition"], {}).setdefault(r["source"], {}).setdefault(r["model"], []).append(drop)
    return {attack: {s: {t: _nanmean(v) for t, v in targets.items()} for s, targets in sources.items()}
            for attack, sources in drops.items()}


def _matrix_csv(matrix: dict[str, dict[str, float]]) -> str:
    targets = list(dict.fromkeys(t for row in matrix.values() for t in row))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["source \\ target", *targets])
    for source, row in matrix.items():
        writer.writerow([source, *(repr(row[t]) for t in targets)])
    return buf.getvalue()


def _csv(rows: list[dict[str, Any]]) -> str:
    fields = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
