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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch

from ..attacks import Attack, AttackResult, registry
from ..attacks.measures import budget, body_mask, strength, summarize, visibility
from .inference import LoadedModel, segment
from ..files.images import atomic_output_dir, write_image
from .memory_plan import check_memory, plan_memory
from ..evaluation.metrics import flip_rate, segmentation_metrics
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

StageProgress = Callable[[str, int, int], None]
"""progress(stage, done, total); raising from it cancels the job (nothing is written)."""


@dataclass
class AttackRequest:
    """One attack to run: a registered attack, an optional preset, the parameters given on top.

    ``method`` may carry the preset (``AttackRequest("vafa:public-code", {"q_max": 30})``); after
    construction ``method`` is the attack's name and ``preset`` the preset. Parameters are checked
    at once (a wrong one raises ValueError before any model runs). ``label`` names the output
    folder and the report's entry; :func:`unique_labels` makes the labels of a job distinct.
    """

    method: str
    params: dict[str, Any] = field(default_factory=dict)
    preset: str | None = None
    label: str = ""

    def __post_init__(self) -> None:
        spec, preset = registry.split_method(self.method)
        if preset is not None and self.preset not in (None, preset):
            raise ValueError(f"{self.method!r} names preset {preset!r} but preset={self.preset!r} was given too")
        self.method, self.preset = spec.name, preset or self.preset
        self.params = {k: spec.param(k).parse(v) for k, v in dict(self.params).items()}
        spec.resolve(self.preset, **self.params)  # the combination is checked here, not mid-job
        self.label = self.label or (spec.name if self.preset is None else f"{spec.name}-{self.preset}")

    @classmethod
    def from_text(cls, text: str, label: str = "") -> AttackRequest:
        """From the one text form ``name[:preset][,key=value...]`` (see ``registry.parse_request``)."""
        spec, preset, params = registry.parse_request(text)
        return cls(spec.name, params, preset, label)

    @property
    def text(self) -> str:
        """The request as text, e.g. ``vafa:public-code,q_max=30.0``."""
        return registry.format_request(self.method, self.preset, self.params)

    def kwargs(self) -> dict[str, Any]:
        """Every constructor keyword of the attack: defaults, then the preset, then ``params``."""
        return registry.get(self.method).resolve(self.preset, **self.params)

    def build(self, model: torch.nn.Module, **run_options: Any) -> Attack:
        """The attack object (run options: roi_size, overlap, sw_batch_size, amp, seed, loss)."""
        return registry.get(self.method).build(model, self.preset, self.params, **run_options)


def unique_labels(requests: Sequence[AttackRequest]) -> list[AttackRequest]:
    """The requests with distinct labels: a repeated label gets -2, -3, ... (``pgd``, ``pgd-2``)."""
    seen: set[str] = set()
    out = []
    for request in requests:
        label, n = request.label, 1
        while label in seen:
            n += 1
            label = f"{request.label}-{n}"
        seen.add(label)
        out.append(request if label == request.label else replace(request, label=label))
    return out


@dataclass
class RunOptions:
    """How to run the model and the attacks.

    Attributes:
        roi_size: sliding-window size; None uses the model's own ``spec.roi_size``.
        overlap, sw_batch_size: sliding-window overlap and windows per pass; None uses the
            model's own (``spec.inferer``, e.g. a bundle's inferer), else 0.25 and 2.
        amp: None, "bf16" or "fp16" (CUDA) autocast.
        seed: seeds the attacks' randomness.
        include_background: count label 0 in the mean Dice/HD95 (the paper's convention).
        label_map: ground-truth value -> model value (see job/label_map.py); None uses them as given.
    """

    roi_size: tuple[int, int, int] | None = None
    overlap: float | None = None
    sw_batch_size: int | None = None
    amp: str | None = None
    seed: int = 0
    include_background: bool = False
    label_map: dict[int, int] | None = None


@dataclass
class AttackOutcome:
    """One attack's result: model-grid tensors plus metrics on the original grid."""

    request: AttackRequest
    result: AttackResult
    adv_pred: torch.Tensor  # [1, 1, H, W, D] model grid
    adv_labels: sitk.Image  # original grid
    metrics: dict[str, Any]
    seconds: float
    delta_hu: sitk.Image | None = None  # adv - clean in HU, original grid (kept for writing)


@dataclass
class JobResult:
    """Everything a report or a viewer needs."""

    image: sitk.Image  # the input, untouched
    ctx: GridContext
    x: torch.Tensor  # [1, 1, H, W, D] normalised model input
    clean_pred: torch.Tensor  # [1, 1, H, W, D] model grid
    clean_labels: sitk.Image  # original grid
    ground_truth: sitk.Image | None
    loaded: LoadedModel
    options: RunOptions
    clean_metrics: dict[str, Any] | None
    outcomes: list[AttackOutcome] = field(default_factory=list)
    gt_model: torch.Tensor | None = None  # [1, 1, H, W, D] ground truth on the model grid
    body: np.ndarray | None = None  # bool [Z, Y, X] the patient's body on the input grid
    notes: list[str] = field(default_factory=list)  # lines the report shows first (e.g. the demo's settings)
    hu_model: np.ndarray | None = None  # float32 [H, W, D] unclipped HU on the model grid, for corruptions

    @property
    def reference(self) -> sitk.Image:
        """What Dice is measured against: the ground truth, else the clean prediction."""
        return self.ground_truth if self.ground_truth is not None else self.clean_labels


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
        from .label_map import apply_label_map

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
    metrics = {
        "vs_reference": _metrics(adv_labels, reference, loaded, options),
        "vs_clean_prediction": _metrics(adv_labels, job.clean_labels, loaded, options),
        "flip_rate": flip_rate(adv_pred, job.clean_pred),
        "perturbation": summarize(result.clean, result.adv)[0],
        "perturbation_hu_linf": _hu_linf(result, job.ctx),
        **_budget_metrics(job, attack, delta_hu),
    }
    metrics["organ_drops"] = organ_drops(job, metrics["vs_reference"])
    metrics["label_changes"] = label_changes(job.clean_labels, adv_labels, loaded.spec.label_names)
    return AttackOutcome(request, result, adv_pred, adv_labels, metrics, seconds, delta_hu)


def model_grid_hu(job: JobResult) -> np.ndarray:
    """The input's unclipped HU on the model grid, [H, W, D] (made once per job)."""
    if job.hu_model is None:
        job.hu_model = hu_on_model_grid(job.image, job.ctx)
    return job.hu_model


def _budget_metrics(job: JobResult, attack: Any, delta_hu: sitk.Image) -> dict[str, Any]:
    """The change's size on the input's grid, inside the body, and whether it is visible."""
    # Views in the images' own pixel types: budget works slab by slab, so no full-grid float copy.
    original = sitk.GetArrayViewFromImage(job.image)
    if job.body is None:  # one mask per job: every attack is measured on the same voxels
        job.body = body_mask(original)
    measured = budget(original, sitk.GetArrayViewFromImage(delta_hu), job.ctx.window, job.body)
    return {"budget": measured, "strength": strength(attack, job.ctx.window), "visible": visibility(measured)}


def organ_drops(job: JobResult, attacked: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-organ Dice and HD95 change from the clean result to ``attacked``, worst Dice drop first.

    Args:
        attacked: :func:`segmentation_metrics` of the attacked labels against ``job.reference``.
    Returns:
        one dict per organ present in the reference or the clean prediction: ``organ``,
        ``clean_dice``, ``dice``, ``dice_drop``, ``clean_hd95_mm``, ``hd95_mm``, ``hd95_increase_mm``
        (against the clean prediction itself, the clean result is Dice 1 and HD95 0).
    """
    clean = job.clean_metrics["per_class"] if job.clean_metrics is not None else None
    rows = []
    for organ, m in attacked["per_class"].items():
        c = clean[organ] if clean is not None else {"dice": 1.0, "hd95_mm": 0.0, "pred_voxels": m["ref_voxels"]}
        if m["ref_voxels"] == 0 and c["pred_voxels"] == 0:
            continue
        rows.append({
            "organ": organ, "clean_dice": c["dice"], "dice": m["dice"], "dice_drop": c["dice"] - m["dice"],
            "clean_hd95_mm": c["hd95_mm"], "hd95_mm": m["hd95_mm"], "hd95_increase_mm": m["hd95_mm"] - c["hd95_mm"],
        })
    # NaN drops (an organ absent from both) sort last.
    return sorted(rows, key=lambda r: -r["dice_drop"] if r["dice_drop"] == r["dice_drop"] else float("inf"))


def label_changes(clean: sitk.Image, attacked: sitk.Image, label_names: Sequence[str]) -> dict[str, dict[str, int]]:
    """Voxels each organ lost and gained under attack, on the input grid (organs with changes only)."""
    a, b = sitk.GetArrayViewFromImage(clean), sitk.GetArrayViewFromImage(attacked)
    changed = a != b
    n = len(label_names)
    lost = np.bincount(a[changed].ravel(), minlength=n)
    gained = np.bincount(b[changed].ravel(), minlength=n)
    return {label_names[i]: {"lost": int(lost[i]), "gained": int(gained[i])} for i in range(n) if lost[i] or gained[i]}


def _adversarial_hu(image: sitk.Image, delta_hu: sitk.Image) -> sitk.Image:
    """The adversarial CT on the input grid, float32: the original HU plus the change in HU, the
    values :func:`adversarial_to_original` gives, without mapping the perturbation back again."""
    hu = sitk.GetArrayViewFromImage(image).astype(np.float32)
    hu += sitk.GetArrayViewFromImage(delta_hu)
    out = sitk.GetImageFromArray(hu)
    out.CopyInformation(image)
    return out


def label_change_maps(clean: sitk.Image, attacked: sitk.Image) -> tuple[sitk.Image, sitk.Image]:
    """Where the labels changed: (lost, gained) label maps on the input grid.

    ``lost`` holds the clean label of every changed voxel (the organ lost there), ``gained`` the
    attacked label (the organ gained); 0 where nothing changed. Both use the model's label values,
    so Slicer and the web viewer colour them like any segmentation."""
    a, b = sitk.GetArrayFromImage(clean), sitk.GetArrayFromImage(attacked)
    changed = a != b
    maps = []
    for values in (a, b):
        img = sitk.GetImageFromArray(np.where(changed, values, 0).astype(np.uint8))
        img.CopyInformation(clean)
        maps.append(img)
    return maps[0], maps[1]


def check_run_memory(image: sitk.Image, loaded: LoadedModel, options: RunOptions, attacking: bool) -> None:
    """MemoryError with figures and advice, before any heavy work, if the run cannot fit."""
    roi = _roi(options, loaded)
    _, batch, _ = window_settings(options, loaded)
    check_memory(plan_memory(image, loaded.spec, roi, batch, attacking, loaded.device))


def _metrics(pred: sitk.Image, ref: sitk.Image, loaded: LoadedModel, options: RunOptions) -> dict[str, Any]:
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
    job: JobResult, out_dir: str | Path, overwrite: bool = False, suffix: str = ".nii.gz", curve: Sequence[Any] | None = None
) -> Path:
    """Write volumes (on the input's grid), report.json and report.html into ``out_dir``,
    atomically: a crash or cancel leaves no half-written folder. ``curve`` (robustness-curve
    points, see :mod:`.curve`) adds ``curve/`` and the curve figure to the report."""
    from ..evaluation.report import write_report  # matplotlib is only needed here

    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        write_image(job.clean_labels, tmp / f"clean_labels{suffix}")
        for outcome in job.outcomes:
            _write_attack(job, outcome, tmp / outcome.request.label, suffix)
        curve_summary = None
        if curve:
            from ..evaluation.curve import write_curve_files

            curve_summary = write_curve_files(list(curve), tmp / "curve")
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
