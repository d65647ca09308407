"""An attack that changes nothing changes no voxel of the map, for every model family.

The adversarial map must come from the same windows, blending and overlap as the clean map: when
it did not (nnU-Net models: the attack blended with MONAI's Gaussian, the clean map with
nnU-Net's), a zero-budget attack "changed" 0.38% of the voxels and the report called that damage.
Each model below runs with sliding windows smaller than the volume, so the blend matters.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from test_model_families import auto3dseg_file, ct_file, write_bundle, zoo_config

from FreqAdvSegmentLib.job.inference import load_segmentation_model
from FreqAdvSegmentLib.job.pipeline import AttackRequest, RunOptions, run_job
from FreqAdvSegmentLib.models import ModelSpec, build_model, save_model

try:
    import dynamic_network_architectures  # noqa: F401

    HAVE_DNA = True
except ImportError:
    HAVE_DNA = False

LABELS = ("background", "liver", "spleen")


def _monai_checkpoint(tmp_path: Path) -> Path:
    spec = ModelSpec(arch="unet", arch_args={"channels": (4, 8, 16), "strides": (2, 2), "out_channels": 3},
                     label_names=LABELS, roi_size=(16, 16, 16), inferer={"overlap": 0.5, "mode": "gaussian"})
    torch.manual_seed(0)
    path = tmp_path / "unet.safetensors"
    save_model(path, build_model(spec), spec)
    return path


def _bundle(tmp_path: Path) -> Path:
    inferer = {"_target_": "SlidingWindowInferer", "roi_size": [16, 16, 16], "sw_batch_size": 2, "overlap": 0.5}
    return write_bundle(tmp_path / "bundle", zoo_config([1.5, 1.5, 2.0], inferer=inferer))


REAL_CT = Path(__file__).resolve().parents[1] / "data" / "nnunet_realct"


def _nnunet(tmp_path: Path) -> Path:
    """The committed nnU-Net model trained on a real CT crop (an untrained one predicts one label)."""
    return REAL_CT / "Dataset002_RealCrop" / "nnUNetTrainer__nnUNetPlans__3d_fullres"


def _auto3dseg(tmp_path: Path) -> Path:
    return auto3dseg_file(tmp_path)[0]


FAMILIES = {
    "monai": _monai_checkpoint,
    "bundle": _bundle,
    "nnunet": pytest.param(_nnunet, marks=pytest.mark.skipif(not HAVE_DNA, reason="needs dynamic-network-architectures")),
    "auto3dseg": _auto3dseg,
}


@pytest.mark.parametrize("make", list(FAMILIES.values()), ids=list(FAMILIES))
def test_a_zero_budget_attack_leaves_the_map_as_it_was(make, tmp_path):
    torch.manual_seed(0)
    loaded = load_segmentation_model(make(tmp_path), device="cpu")
    real = make is _nnunet  # the nnU-Net model is tried on the real CT crop it was trained for
    image = sitk.ReadImage(str(REAL_CT / "ct_native.nii.gz") if real else str(ct_file(tmp_path, size=(40, 36, 26))))
    roi = (32, 32, 32) if real else (8, 8, 8)  # smaller than the model grid: several overlapping windows
    job = run_job(image, loaded, [AttackRequest("pgd", {"eps": 0.0, "steps": 1})], options=RunOptions(roi_size=roi))
    outcome = job.outcomes[0]
    assert max(job.x.shape[2:]) > roi[0]  # several overlapping windows along an axis: the blend is exercised
    assert torch.equal(outcome.result.adv, job.x)
    assert torch.equal(outcome.adv_pred, job.clean_pred)
    assert np.array_equal(sitk.GetArrayFromImage(outcome.adv_labels), sitk.GetArrayFromImage(job.clean_labels))
    assert len(np.unique(sitk.GetArrayFromImage(job.clean_labels))) > 1  # a map with organs, not a constant
