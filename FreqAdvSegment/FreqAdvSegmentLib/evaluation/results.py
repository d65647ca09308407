"""Typed results: what a job measured, from the pipeline to report.json and back.

The engine builds these objects (``job/pipeline.py``, ``evaluation/metrics.py``); the report,
the robustness curve, ``freqadv evaluate``, the Slicer tables and the web table read them. On
disk they are plain JSON with the keys below, unchanged: ``to_json()`` gives the exact dict that
report.json holds (NaN stays a float here; the report writer turns it into null), and
``from_json()`` reads one back (null and missing values become NaN, so a report from an older
version or a hand-written one still reads).

    metrics = SegmentationMetrics.from_json(report["clean_vs_ground_truth"])
    entry = AttackEntry.from_json(report["attacks"]["vafa"])
    entry.metrics.vs_reference.per_class["liver"].dice

This module imports nothing heavy (no torch, no SimpleITK): the Slicer GUI process and the web
viewer read reports through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

NAN = float("nan")


def _float(value: Any) -> float:
    """A JSON number as a float; null (a NaN/inf written by the report) or missing -> NaN."""
    return NAN if value is None else float(value)


def _int(value: Any) -> int:
    return 0 if value is None else int(value)


@dataclass
class OrganMetrics:
    """One organ's Dice and HD95 against a reference (see :func:`~.metrics.segmentation_metrics`)."""

    dice: float
    hd95_mm: float
    ref_voxels: int
    pred_voxels: int
    note: str | None = None  # why a value is NaN, else None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OrganMetrics:
        return cls(_float(data.get("dice")), _float(data.get("hd95_mm")), _int(data.get("ref_voxels")),
                   _int(data.get("pred_voxels")), data.get("note"))


@dataclass
class SegmentationMetrics:
    """Per-organ metrics of one label map against a reference, and their NaN-ignoring means."""

    per_class: dict[str, OrganMetrics]
    mean_dice: float
    mean_hd95_mm: float
    mean_dice_with_background: float = NAN

    def to_json(self) -> dict[str, Any]:
        return {
            "per_class": {name: m.to_json() for name, m in self.per_class.items()},
            "mean_dice": self.mean_dice,
            "mean_hd95_mm": self.mean_hd95_mm,
            "mean_dice_with_background": self.mean_dice_with_background,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SegmentationMetrics:
        per_class = {name: OrganMetrics.from_json(m) for name, m in (data.get("per_class") or {}).items()}
        return cls(per_class, _float(data.get("mean_dice")), _float(data.get("mean_hd95_mm")),
                   _float(data.get("mean_dice_with_background")))

    @classmethod
    def from_json_or_none(cls, data: Mapping[str, Any] | None) -> SegmentationMetrics | None:
        """None stays None (a report without ground truth has no clean metrics)."""
        return None if data is None else cls.from_json(data)


@dataclass
class Budget:
    """The size of a change on the input's grid, inside the body (see ``attacks.measures.budget``)."""

    linf_hu: float
    rms_hu: float
    psnr_db: float
    ssim: float
    body_voxels: int = 0
    linf_hu_anywhere: float = NAN

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Budget:
        data = data or {}
        return cls(_float(data.get("linf_hu")), _float(data.get("rms_hu")), _float(data.get("psnr_db")),
                   _float(data.get("ssim")), _int(data.get("body_voxels")), _float(data.get("linf_hu_anywhere")))


@dataclass
class Strength:
    """An attack's own strength parameter (see ``attacks.measures.strength``)."""

    param: str
    value: float
    shown: float
    unit: str
    hu: float | None
    text: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Strength | None:
        if data is None:
            return None
        return cls(data["param"], _float(data.get("value")), _float(data.get("shown")), data.get("unit", ""),
                   data.get("hu"), data.get("text", ""))


@dataclass
class Perturbation:
    """The change on the model grid, in the model's [0, 1] units (see ``attacks.measures.summarize``)."""

    linf: float
    l2: float
    psnr_db: float
    ssim: float
    band_energy: list[float] = field(default_factory=list)  # share of energy per radial frequency band

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Perturbation:
        data = data or {}
        return cls(_float(data.get("linf")), _float(data.get("l2")), _float(data.get("psnr_db")),
                   _float(data.get("ssim")), [_float(v) for v in data.get("band_energy") or []])


@dataclass
class OrganDrop:
    """One organ's Dice and HD95 change from the clean result to the attacked one."""

    organ: str
    clean_dice: float
    dice: float
    dice_drop: float
    clean_hd95_mm: float
    hd95_mm: float
    hd95_increase_mm: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OrganDrop:
        return cls(data["organ"], *(_float(data.get(k)) for k in
                                    ("clean_dice", "dice", "dice_drop", "clean_hd95_mm", "hd95_mm", "hd95_increase_mm")))


@dataclass
class LabelChange:
    """Voxels of one organ an attack took away (``lost``) and added (``gained``), on the input grid."""

    lost: int
    gained: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LabelChange:
        return cls(_int(data.get("lost")), _int(data.get("gained")))


@dataclass
class AttackMetrics:
    """Everything measured about one attack (the metric keys of a report.json attack entry)."""

    vs_reference: SegmentationMetrics  # against the ground truth, else the clean prediction
    vs_clean_prediction: SegmentationMetrics
    flip_rate: float  # share of model-grid voxels whose label changed
    perturbation: Perturbation
    perturbation_hu_linf: float
    budget: Budget
    strength: Strength | None
    visible: str | None  # a warning sentence when the change would be visible, else None
    organ_drops: list[OrganDrop] = field(default_factory=list)  # worst Dice drop first
    label_changes: dict[str, LabelChange] = field(default_factory=dict)  # organs with changes only

    def to_json(self) -> dict[str, Any]:
        return {
            "vs_reference": self.vs_reference.to_json(),
            "vs_clean_prediction": self.vs_clean_prediction.to_json(),
            "flip_rate": self.flip_rate,
            "perturbation": self.perturbation.to_json(),
            "perturbation_hu_linf": self.perturbation_hu_linf,
            "budget": self.budget.to_json(),
            "strength": None if self.strength is None else self.strength.to_json(),
            "visible": self.visible,
            "organ_drops": [d.to_json() for d in self.organ_drops],
            "label_changes": {organ: c.to_json() for organ, c in self.label_changes.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AttackMetrics:
        return cls(
            vs_reference=SegmentationMetrics.from_json(data.get("vs_reference") or {}),
            vs_clean_prediction=SegmentationMetrics.from_json(data.get("vs_clean_prediction") or {}),
            flip_rate=_float(data.get("flip_rate")),
            perturbation=Perturbation.from_json(data.get("perturbation")),
            perturbation_hu_linf=_float(data.get("perturbation_hu_linf")),
            budget=Budget.from_json(data.get("budget")),
            strength=Strength.from_json(data.get("strength")),
            visible=data.get("visible"),
            organ_drops=[OrganDrop.from_json(d) for d in data.get("organ_drops") or []],
            label_changes={o: LabelChange.from_json(c) for o, c in (data.get("label_changes") or {}).items()},
        )


@dataclass
class AttackEntry:
    """One attack of a report: what was run, how long it took, what it did (report.json's
    ``attacks[label]``; the metrics' keys sit at the entry's top level, between seconds and history)."""

    method: str
    params: dict[str, Any]
    seconds: float
    metrics: AttackMetrics
    history: list[dict[str, float]] = field(default_factory=list)  # the attack's loss (and SSIM) per step

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "params": self.params, "seconds": self.seconds,
                **self.metrics.to_json(), "history": self.history}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AttackEntry:
        return cls(data.get("method", ""), dict(data.get("params") or {}), _float(data.get("seconds")),
                   AttackMetrics.from_json(data), list(data.get("history") or []))


@dataclass
class ReportMetrics:
    """The numbers of a report.json that the Slicer tables and the web table show."""

    reference: str  # "ground truth" or "clean prediction"
    clean: SegmentationMetrics | None  # the clean prediction against the ground truth, if given
    attacks: dict[str, AttackEntry]

    @classmethod
    def from_json(cls, report: Mapping[str, Any]) -> ReportMetrics:
        return cls(
            report.get("reference", "clean prediction"),
            SegmentationMetrics.from_json_or_none(report.get("clean_vs_ground_truth")),
            {label: AttackEntry.from_json(entry) for label, entry in (report.get("attacks") or {}).items()},
        )


@dataclass
class CurvePoint:
    """One attack at one strength on one model (a row of curve.csv)."""

    model: str
    attack: str
    param: str
    value: float
    shown: float
    unit: str
    reference: str
    clean_dice: float
    mean_dice: float
    dice_drop: float
    mean_dice_vs_clean: float
    linf_hu: float
    rms_hu: float
    psnr_db: float
    ssim: float
    visible: bool
    seconds: float

    @property
    def key(self) -> tuple[str, str, float]:
        return (self.model, self.attack, float(self.value))


CURVE_COLUMNS = tuple(f.name for f in fields(CurvePoint))
"""curve.csv's columns, in order."""
