"""Shared by test_budgets.py and test_curve.py: the conftest's trained test UNet as a LoadedModel,
and a phantom CT (air around a body, organs at CT-like HU) as a SimpleITK image in HU."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch

from FreqAdvSegmentLib.job.inference import LoadedModel
from FreqAdvSegmentLib.models import ModelSpec
from FreqAdvSegmentLib.samples.phantoms import make_phantom


def loaded_test_model(model: torch.nn.Module, name: str = "test-unet") -> LoadedModel:
    """The 32^3 phantom UNet with a spec saying how to run it (1 mm grid, one 32^3 window)."""
    spec = ModelSpec(arch="unet", arch_args={"in_channels": 1, "out_channels": 14, "channels": (8, 16, 32),
                                             "strides": (2, 2), "num_res_units": 1},
                     target_spacing=(1.0, 1.0, 1.0), roi_size=(32, 32, 32))
    return LoadedModel(model, spec, name, torch.device("cpu"))


def phantom_ct(seed: int = 100, shape: tuple[int, int, int] = (32, 32, 32)) -> tuple[sitk.Image, sitk.Image]:
    """(CT in HU, labels) of a held-out phantom, on a 1 mm RAS grid (so preprocessing keeps the
    voxels where the phantom UNet was trained to see them)."""
    hu, labels = make_phantom(shape, seed)
    images = []
    for array in (hu, labels):
        img = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))  # [x, y, z] -> [z, y, x]
        img.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))  # RAS in ITK's LPS terms
        images.append(img)
    return images[0], images[1]


def write_phantom_files(model: torch.nn.Module, folder) -> None:
    """ct.nii.gz, gt.nii.gz and unet.safetensors (the test UNet with its spec) in ``folder``."""
    from FreqAdvSegmentLib.models import save_model

    ct, gt = phantom_ct()
    sitk.WriteImage(ct, str(folder / "ct.nii.gz"))
    sitk.WriteImage(gt, str(folder / "gt.nii.gz"))
    save_model(folder / "unet.safetensors", model, loaded_test_model(model).spec)
