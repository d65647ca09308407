"""The job's data: what to run (attack requests, run options) and what came out (outcomes, results).

Kept apart from :mod:`.pipeline`, which runs the job, so that the report, the curve and
``evaluate`` can name these types without importing the pipeline (no import cycle):

    request = AttackRequest("vafa:public-code", {"q_max": 30})
    job: JobResult = run_job(ct, model, [request], labels)      # see pipeline
    job.outcomes[0].metrics.vs_reference.mean_dice
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch

from ..attacks import Attack, AttackResult, registry
from ..evaluation.results import AttackMetrics, SegmentationMetrics
from .inference import LoadedModel
from .preprocess import GridContext

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
    metrics: AttackMetrics
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
    clean_metrics: SegmentationMetrics | None  # the clean prediction vs the ground truth, if given
    outcomes: list[AttackOutcome] = field(default_factory=list)
    gt_model: torch.Tensor | None = None  # [1, 1, H, W, D] ground truth on the model grid
    body: np.ndarray | None = None  # bool [Z, Y, X] the patient's body on the input grid
    notes: list[str] = field(default_factory=list)  # lines the report shows first (e.g. the demo's settings)
    hu_model: np.ndarray | None = None  # float32 [H, W, D] unclipped HU on the model grid, for corruptions

    @property
    def reference(self) -> sitk.Image:
        """What Dice is measured against: the ground truth, else the clean prediction."""
        return self.ground_truth if self.ground_truth is not None else self.clean_labels
