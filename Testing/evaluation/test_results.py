"""Typed results <-> report.json: the typed objects are for code, the JSON on disk keeps its keys."""

import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from FreqAdvSegmentLib.evaluation.metrics import segmentation_metrics
from FreqAdvSegmentLib.evaluation.results import AttackEntry, ReportMetrics, SegmentationMetrics
from FreqAdvSegmentLib.organs import BTCV_LABELS
from FreqAdvSegmentLib.samples.sample_data import sample_labels_path


def _on_disk(value):
    """What report.json holds: NaN/inf as null, via the same JSON text a reader parses."""
    def safe(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: safe(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [safe(x) for x in v]
        return v
    return json.loads(json.dumps(safe(value)))


@pytest.fixture(scope="module")
def sample_metrics() -> SegmentationMetrics:
    """Real organs: the sample's labels against a copy with the spleen relabelled as kidney and
    the liver cut at one slab (Dice drops, HD95 grows, two organs absent from both)."""
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(sample_labels_path())))
    attacked = labels.copy()
    attacked[labels == 1] = 2
    z = int(np.median(np.nonzero(labels == 6)[0]))  # a slab through the liver's middle
    attacked[z:z + 4][labels[z:z + 4] == 6] = 0
    return segmentation_metrics(np.ascontiguousarray(attacked), labels, (3.0, 3.0, 3.0), BTCV_LABELS)


def test_segmentation_metrics_round_trip_with_the_reports_keys(sample_metrics):
    data = sample_metrics.to_json()
    assert list(data) == ["per_class", "mean_dice", "mean_hd95_mm", "mean_dice_with_background"]
    assert list(data["per_class"]["liver"]) == ["dice", "hd95_mm", "ref_voxels", "pred_voxels", "note"]
    assert data["per_class"]["spleen"]["dice"] == 0.0 and "absent in prediction" in data["per_class"]["spleen"]["note"]
    assert 0.0 < data["per_class"]["liver"]["dice"] < 1.0
    read = SegmentationMetrics.from_json(_on_disk(data))
    # null on disk -> NaN in code; everything else exactly as written.
    assert _on_disk(read.to_json()) == _on_disk(data)
    absent = [name for name, m in read.per_class.items() if m.ref_voxels == 0 and m.pred_voxels == 0]
    assert absent and all(math.isnan(read.per_class[name].hd95_mm) for name in absent)


def test_attack_entry_keeps_the_entry_layout(sample_metrics):
    metrics = sample_metrics.to_json()
    entry = {
        "method": "pgd", "params": {"eps": 4 / 255}, "seconds": 2.5,
        "vs_reference": metrics, "vs_clean_prediction": metrics, "flip_rate": 0.01,
        "perturbation": {"linf": 0.0157, "l2": 1.2, "psnr_db": 40.0, "ssim": 0.98, "band_energy": [0.1, 0.2, 0.3, 0.4]},
        "perturbation_hu_linf": 6.7,
        "budget": {"linf_hu": 6.7, "rms_hu": 5.4, "psnr_db": float("inf"), "ssim": 0.977, "body_voxels": 10,
                   "linf_hu_anywhere": 6.7},
        "strength": {"param": "eps", "value": 4 / 255, "shown": 4.0, "unit": "/255", "hu": 6.7, "text": "eps 4/255"},
        "visible": None,
        "organ_drops": [{"organ": "spleen", "clean_dice": 1.0, "dice": 0.0, "dice_drop": 1.0, "clean_hd95_mm": 0.0,
                         "hd95_mm": float("nan"), "hd95_increase_mm": float("nan")}],
        "label_changes": {"spleen": {"lost": 12, "gained": 0}},
        "history": [{"step": 0, "loss": 1.5}],
    }
    on_disk = _on_disk(entry)
    typed = AttackEntry.from_json(on_disk)
    assert typed.metrics.budget.psnr_db == math.inf or math.isnan(typed.metrics.budget.psnr_db)
    assert typed.metrics.label_changes["spleen"].lost == 12 and typed.metrics.strength.text == "eps 4/255"
    assert list(typed.to_json()) == list(entry)
    assert _on_disk(typed.to_json()) == on_disk


def test_partial_reports_still_read():
    """An older or hand-made report (missing keys, nulls) reads; what is missing is NaN/None/empty."""
    report = {"attacks": {"fgsm": {"vs_reference": {"per_class": {"liver": {"dice": None, "ref_voxels": 3}}}}}}
    read = ReportMetrics.from_json(report)
    assert read.reference == "clean prediction" and read.clean is None
    fgsm = read.attacks["fgsm"].metrics
    assert math.isnan(fgsm.vs_reference.per_class["liver"].dice) and fgsm.vs_reference.per_class["liver"].ref_voxels == 3
    assert fgsm.strength is None and fgsm.organ_drops == [] and math.isnan(fgsm.budget.linf_hu)
