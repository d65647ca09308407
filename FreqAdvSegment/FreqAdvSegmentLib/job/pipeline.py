"""The main job: segment a CT, attack the model, measure what broke, write it all out.

One function per stage, shared by the command line, the Slicer module's child process and the
web viewer:

    job = run_job(image, loaded_model, [AttackRequest("vafa"), AttackRequest("pgd")], labels)
    write_outputs(job, "out/")        # volumes on the input's own grid + report.json/html

Everything the model sees lives on the model grid ([1, 1, H, W, D], see ``preprocess``); every
file written and every metric reported is on the input's ORIGINAL grid, so the results overlay
the user's volume exactly (in mm, with the input's spacing, origin and direction).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from ..attacks import AttackResult
from ..attacks.measures import budget, body_mask, strength, summarize, visibility
from ..evaluation.curve_files import write_curve_files
from ..evaluation.metrics import flip_rate, segmentation_metrics
from ..evaluation.results import AttackMetrics, Budget, CurvePoint, OrganDrop, Perturbation, SegmentationMetrics, Strength
from ..files.images import atomic_output_dir, write_image
from .inference import LoadedModel, segment
from .label_changes import label_change_maps, label_changes
from .label_map import apply_label_map
from .memory_plan import check_memory, plan_memory
from .preprocess import (
    GridContext,
    Preprocessing,
    hu_on_model_grid,
    labels_onto_image_grid,
    labels_to_original,
    perturbation_to_hu,
    prepare,
    prepare_labels,
)
from .records import AttackOutcome, AttackRequest, JobResult, RunOptions, StageProgress, unique_labels

__all__ = [  # the job's data types live in .records; they are named here too, as they always were
    "AttackOutcome", "AttackRequest", "JobResult", "RunOptions", "StageProgress", "unique_labels",
    "label_change_maps", "label_changes", "organ_drops", "run_attack", "run_job", "run_segmentation",
    "start_job", "model_grid_hu", "write_outputs", "output_files", "preprocessing_for", "window_settings", "check_run_memory",
]


def preprocessing_for(loaded: LoadedModel) -> Preprocessing:
    """The preprocessing a model's spec asks for."""
    spec = loaded.spec
    return Preprocessing(spec.target_spacing, spec.intensity_window, spec.orientation)


def window_settings(options: RunOptions, loaded: LoadedModel) -> tuple[float, int, str]:
    """(overlap, sw_batch_size, blend mode): the options' own, else the model's, else defaults."""
    inferer = loaded.spec.inferer
    overlap = options.overlap if options.overlap is not None else inferer.get("overlap", 0.25)
    batch = options.sw_batch_size if options.sw_batch_size is not None else inferer.get("sw_batch_size", 2)
    return overlap, batch, inferer.get("mode", "gaussian")


def run_segmentation(
    image: sitk.Image, loaded: LoadedModel, options: RunOptions | None = None
) -> tuple[torch.Tensor, GridContext, torch.Tensor, sitk.Image]:
    """Segment one CT: returns (x [1,1,H,W,D], ctx, prediction [1,1,H,W,D], labels on the original grid)."""
    options = options or RunOptions()
    check_run_memory(image, loaded, options, attacking=False)
    return _segment(image, loaded, options)


def _segment(
    image: sitk.Image, loaded: LoadedModel, options: RunOptions
) -> tuple[torch.Tensor, GridContext, torch.Tensor, sitk.Image]:
    """run_segmentation without its memory check, for callers that made a larger one first."""
    x, ctx = prepare(image, preprocessing_for(loaded))
    x = x.to(loaded.device)
    pred = predict(x, loaded, options)
    return x, ctx, pred, labels_to_original(pred.cpu(), ctx)


def predict(x: torch.Tensor, loaded: LoadedModel, options: RunOptions) -> torch.Tensor:
    """The model's label map [1, 1, H, W, D] for a model-grid input x [1, 1, H, W, D], with the
    windows, blending and overlap the model asks for. Clean and adversarial maps both come from
    here, so an attack that changes nothing changes no voxel of the map."""
    overlap, batch, mode = window_settings(options, loaded)
    return segment(loaded.model, x, _roi(options, loaded), overlap, batch, options.amp, mode)


def run_job(
    image: sitk.Image,
    loaded: LoadedModel,
    attacks: Sequence[AttackRequest],
    ground_truth: sitk.Image | None = None,
    options: RunOptions | None = None,
    progress: StageProgress | None = None,
) -> JobResult:
    """Segment ``image``, run every attack, and measure each against the ground truth (when
    given) or else against the clean prediction. Nothing is written; see :func:`write_outputs`."""
    job = start_job(image, loaded, ground_truth, options, progress, attacking=bool(attacks))
    for request in unique_labels(attacks):  # one output folder per request
        job.outcomes.append(run_attack(job, request, progress))
    return job


def start_job(
    image: sitk.Image,
    loaded: LoadedModel,
    ground_truth: sitk.Image | None = None,
    options: RunOptions | None = None,
    progress: StageProgress | None = None,
    attacking: bool = True,
) -> JobResult:
    """Segment ``image`` and measure the clean result: a job with no attacks yet (a robustness
    curve then runs many attacks on it with :func:`run_attack`; ``attacking`` sizes the memory
    check for that)."""
    options = options or RunOptions()
    if ground_truth is not None and options.label_map:
        ground_truth = apply_label_map(ground_truth, options.label_map)
    if ground_truth is not None:  # once, so the attack target and the metrics see the same voxels
        ground_truth = labels_onto_image_grid(ground_truth, image)
        _check_label_values(ground_truth, loaded)  # before the model runs: bad labels fail fast
    check_run_memory(image, loaded, options, attacking=attacking)
    _tick(progress, "segment", 0, 1)
    x, ctx, clean_pred, clean_labels = _segment(image, loaded, options)  # memory checked above
    _tick(progress, "segment", 1, 1)
    gt_model = _ground_truth_on_model_grid(ground_truth, ctx, loaded) if ground_truth is not None else None
    clean_metrics = _metrics(clean_labels, ground_truth, loaded, options) if ground_truth is not None else None
    job = JobResult(image, ctx, x, clean_pred, clean_labels, ground_truth, loaded, options, clean_metrics)
    job.gt_model = gt_model
    return job


def run_attack(job: JobResult, request: AttackRequest, progress: StageProgress | None = None) -> AttackOutcome:
    """Run one attack on a started job and measure it (the job is not changed)."""
    options, loaded = job.options, job.loaded
    gt_model, reference = job.gt_model, job.reference
    overlap, batch, mode = window_settings(options, loaded)
    attack = request.build(
        loaded.model,
        roi_size=_roi(options, loaded),
        overlap=overlap,
        sw_batch_size=batch,
        amp=options.amp,
        seed=options.seed,
        mode=mode,
    )
    if hasattr(attack, "use_grid"):  # a realistic corruption works in HU and mm (FreqAdvSegmentLib.corruptions)
        attack.use_grid(job.ctx.window, job.ctx.model.spacing, model_grid_hu(job))
    start = time.perf_counter()
    # The paper attacks against the ground truth; without one, against the clean prediction.
    target = gt_model if gt_model is not None else job.clean_pred
    result = attack.run(job.x, target, lambda done, total: _tick(progress, request.label, done, total))
    seconds = time.perf_counter() - start
    adv_pred = predict(result.adv, loaded, options)  # as the clean map was made: same windows and blend
    adv_labels = labels_to_original(adv_pred.cpu(), job.ctx)
    delta_hu = perturbation_to_hu(result.perturbation.cpu(), job.ctx)
    vs_reference = _metrics(adv_labels, reference, loaded, options)
    measured, visible = _budget(job, delta_hu)
    measured_strength = strength(attack, job.ctx.window)
    metrics = AttackMetrics(
        vs_reference=vs_reference,
        vs_clean_prediction=_metrics(adv_labels, job.clean_labels, loaded, options),
        flip_rate=flip_rate(adv_pred, job.clean_pred),
        perturbation=Perturbation.from_json(summarize(result.clean, result.adv)[0]),
        perturbation_hu_linf=_hu_linf(result, job.ctx),
        budget=measured,
        strength=Strength.from_json(measured_strength),
        visible=visible,
        organ_drops=organ_drops(job, vs_reference),
        label_changes=label_changes(job.clean_labels, adv_labels, loaded.spec.label_names),
    )
    return AttackOutcome(request, result, adv_pred, adv_labels, metrics, seconds, delta_hu)


def model_grid_hu(job: JobResult) -> np.ndarray:
    """The input's unclipped HU on the model grid, [H, W, D] (made once per job)."""
    if job.hu_model is None:
        job.hu_model = hu_on_model_grid(job.image, job.ctx)
    return job.hu_model


def _budget(job: JobResult, delta_hu: sitk.Image) -> tuple[Budget, str | None]:
    """The change's size on the input's grid, inside the body, and why it is visible (else None)."""
    # Views in the images' own pixel types: budget works slab by slab, so no full-grid float copy.
    original = sitk.GetArrayViewFromImage(job.image)
    if job.body is None:  # one mask per job: every attack is measured on the same voxels
        job.body = body_mask(original)
    measured = budget(original, sitk.GetArrayViewFromImage(delta_hu), job.ctx.window, job.body)
    return Budget.from_json(measured), visibility(measured)


def organ_drops(job: JobResult, attacked: SegmentationMetrics) -> list[OrganDrop]:
    """Per-organ Dice and HD95 change from the clean result to ``attacked``, worst Dice drop first.

    Args:
        attacked: :func:`segmentation_metrics` of the attacked labels against ``job.reference``.
    Returns:
        one :class:`OrganDrop` per organ present in the reference or the clean prediction
        (against the clean prediction itself, the clean result is Dice 1 and HD95 0).
    """
    clean = job.clean_metrics.per_class if job.clean_metrics is not None else None
    rows = []
    for organ, m in attacked.per_class.items():
        if clean is not None:
            clean_dice, clean_hd95, clean_voxels = clean[organ].dice, clean[organ].hd95_mm, clean[organ].pred_voxels
        else:
            clean_dice, clean_hd95, clean_voxels = 1.0, 0.0, m.ref_voxels
        if m.ref_voxels == 0 and clean_voxels == 0:
            continue
        rows.append(OrganDrop(organ, clean_dice, m.dice, clean_dice - m.dice, clean_hd95, m.hd95_mm, m.hd95_mm - clean_hd95))
    # NaN drops (an organ absent from both) sort last.
    return sorted(rows, key=lambda r: -r.dice_drop if r.dice_drop == r.dice_drop else float("inf"))


def _adversarial_hu(image: sitk.Image, delta_hu: sitk.Image) -> sitk.Image:
    """The adversarial CT on the input grid, float32: the original HU plus the change in HU, the
    values :func:`adversarial_to_original` gives, without mapping the perturbation back again."""
    hu = sitk.GetArrayViewFromImage(image).astype(np.float32)
    hu += sitk.GetArrayViewFromImage(delta_hu)
    out = sitk.GetImageFromArray(hu)
    out.CopyInformation(image)
    return out


def check_run_memory(image: sitk.Image, loaded: LoadedModel, options: RunOptions, attacking: bool) -> None:
    """MemoryError with figures and advice, before any heavy work, if the run cannot fit."""
    roi = _roi(options, loaded)
    _, batch, _ = window_settings(options, loaded)
    check_memory(plan_memory(image, loaded.spec, roi, batch, attacking, loaded.device))


def _metrics(pred: sitk.Image, ref: sitk.Image, loaded: LoadedModel, options: RunOptions) -> SegmentationMetrics:
    # SimpleITK arrays are [z, y, x]; reverse the spacing to match.
    return segmentation_metrics(
        sitk.GetArrayFromImage(pred),
        sitk.GetArrayFromImage(ref),
        spacing=tuple(reversed(pred.GetSpacing())),
        label_names=loaded.spec.label_names,
        include_background=options.include_background,
    )


def _ground_truth_on_model_grid(gt: sitk.Image, ctx: GridContext, loaded: LoadedModel) -> torch.Tensor:
    return prepare_labels(gt, ctx).to(loaded.device)


def _check_label_values(gt: sitk.Image, loaded: LoadedModel) -> None:
    names = loaded.spec.label_names
    values = np.unique(sitk.GetArrayViewFromImage(gt))
    unknown = [int(v) for v in values if v < 0 or v >= len(names)]
    if unknown:
        raise ValueError(
            f"the ground-truth label map has label value(s) {unknown} that the model's label map "
            f"does not have (0..{len(names) - 1}: {', '.join(names)}); map your labels to the "
            "model's with --label-map GT:MODEL,... (see FreqAdvSegmentLib/job/label_map.py)"
        )


def _hu_linf(result: AttackResult, ctx: GridContext) -> float:
    a_min, a_max = ctx.window
    return float(result.perturbation.abs().max()) * (a_max - a_min)


def _roi(options: RunOptions, loaded: LoadedModel) -> tuple[int, int, int]:
    return tuple(options.roi_size or loaded.spec.roi_size)


def _tick(progress: StageProgress | None, stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, done, total)


# --- writing ------------------------------------------------------------------------------------


def output_files(job: JobResult, suffix: str = ".nii.gz") -> dict[str, str]:
    """Relative file names of every volume :func:`write_outputs` writes."""
    files = {"clean_labels": f"clean_labels{suffix}"}
    for outcome in job.outcomes:
        name = outcome.request.label
        files[f"{name}/adversarial"] = f"{name}/adversarial{suffix}"
        files[f"{name}/perturbation_hu"] = f"{name}/perturbation_hu{suffix}"
        files[f"{name}/adversarial_labels"] = f"{name}/adversarial_labels{suffix}"
        files[f"{name}/labels_lost"] = f"{name}/labels_lost{suffix}"
        files[f"{name}/labels_gained"] = f"{name}/labels_gained{suffix}"
    return files


def write_outputs(
    job: JobResult, out_dir: str | Path, overwrite: bool = False, suffix: str = ".nii.gz",
    curve: Sequence[CurvePoint] | None = None,
) -> Path:
    """Write volumes (on the input's grid), report.json and report.html into ``out_dir``,
    atomically: a crash or cancel leaves no half-written folder. ``curve`` (robustness-curve
    points, see :mod:`.curve`) adds ``curve/`` and the curve figure to the report."""
    from ..evaluation.report import write_report  # matplotlib is only needed here

    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        write_image(job.clean_labels, tmp / f"clean_labels{suffix}")
        for outcome in job.outcomes:
            _write_attack(job, outcome, tmp / outcome.request.label, suffix)
        curve_summary = write_curve_files(list(curve), tmp / "curve") if curve else None
        write_report(job, tmp, output_files(job, suffix), curve=curve_summary)
    return Path(out_dir)


def _write_attack(job: JobResult, outcome: AttackOutcome, folder: Path, suffix: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    result = outcome.result
    # The perturbation is mapped back to the input grid once (run_attack) and reused here.
    delta_hu = outcome.delta_hu if outcome.delta_hu is not None else perturbation_to_hu(result.perturbation.cpu(), job.ctx)
    write_image(_adversarial_hu(job.image, delta_hu), folder / f"adversarial{suffix}")
    write_image(delta_hu, folder / f"perturbation_hu{suffix}")
    write_image(outcome.adv_labels, folder / f"adversarial_labels{suffix}")
    lost, gained = label_change_maps(job.clean_labels, outcome.adv_labels)
    write_image(lost, folder / f"labels_lost{suffix}")
    write_image(gained, folder / f"labels_gained{suffix}")
