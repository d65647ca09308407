"""Make Testing/data/nnunet_fixture: a tiny nnU-Net v2 model folder, a CT, and nnU-Net's own output.

The tests need only the committed files; this script needs nnunetv2 itself, which FreqAdvSegment
never depends on. Run it in a throwaway environment, e.g.:

    python -m venv /tmp/nnv && /tmp/nnv/bin/pip install nnunetv2
    /tmp/nnv/bin/python scripts/make_nnunet_fixture.py

What it writes (about 100 kB):
    Dataset001_Tiny/nnUNetTrainer__nnUNetPlans__3d_fullres/{plans.json, dataset.json,
        fold_0/checkpoint_final.pth}   a seeded PlainConvUNet in nnU-Net's checkpoint layout
    ct.nii.gz                          a smooth int16 HU volume at the plans' spacing
    reference_nnunet.nii.gz            nnUNetPredictor's label map (Gaussian tiles, mirroring TTA)

The CT is at the configuration's spacing so that nnU-Net does not resample it: the comparison is
then about normalisation, axis order, sliding windows, mirroring and weights, not about nnU-Net's
spline resampling, which FreqAdvSegment does not reproduce.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

OUT = Path(__file__).resolve().parent.parent / "Testing" / "data" / "nnunet_fixture"
MODEL = OUT / "Dataset001_Tiny" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
SPACING_ZYX = [3.0, 2.0, 2.0]
PATCH_ZYX = [32, 32, 32]
CT_SIZE_XYZ = (40, 36, 34)  # a little more than one patch: several overlapping tiles
PROPS = {"mean": 40.0, "std": 180.0, "percentile_00_5": -800.0, "percentile_99_5": 900.0,
         "max": 1500.0, "min": -1024.0, "median": 30.0}
ARCH_KWARGS = {
    "n_stages": 4, "features_per_stage": [4, 8, 16, 16], "conv_op": "torch.nn.modules.conv.Conv3d",
    "kernel_sizes": [[3, 3, 3]] * 4, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]],
    "n_conv_per_stage": [2, 2, 2, 2], "n_conv_per_stage_decoder": [2, 2, 2], "conv_bias": True,
    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-05, "affine": True},
    "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
}


def plans() -> dict:
    config = {
        "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2, "patch_size": PATCH_ZYX, "median_image_size_in_voxels": [34, 36, 40],
        "spacing": SPACING_ZYX, "normalization_schemes": ["CTNormalization"], "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                         "arch_kwargs": ARCH_KWARGS, "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]},
        "batch_dice": False,
    }
    return {"dataset_name": "Dataset001_Tiny", "plans_name": "nnUNetPlans",
            "original_median_spacing_after_transp": SPACING_ZYX, "original_median_shape_after_transp": [34, 36, 40],
            "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
            "configurations": {"3d_fullres": config}, "experiment_planner_used": "ExperimentPlanner",
            "label_manager": "LabelManager", "foreground_intensity_properties_per_channel": {"0": PROPS}}


DATASET = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "spleen": 2},
           "numTraining": 4, "file_ending": ".nii.gz"}


def network() -> torch.nn.Module:
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    from dynamic_network_architectures.initialization.weight_init import InitWeights_He

    kwargs = dict(ARCH_KWARGS, conv_op=torch.nn.Conv3d, norm_op=torch.nn.InstanceNorm3d, nonlin=torch.nn.LeakyReLU)
    torch.manual_seed(0)
    net = PlainConvUNet(input_channels=1, num_classes=3, deep_supervision=True, **kwargs)
    net.apply(InitWeights_He(1e-2))
    return net


def ct() -> sitk.Image:
    grid = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in CT_SIZE_XYZ], indexing="ij")
    r = np.sqrt(((grid[0] - 20) / 12) ** 2 + ((grid[1] - 18) / 10) ** 2 + ((grid[2] - 17) / 9) ** 2)
    hu = np.where(r < 1, 60 + 40 * np.sin(grid[0] / 3), -600 + 300 * np.cos(grid[1] / 4)) + 5 * grid[2]
    image = sitk.GetImageFromArray(np.ascontiguousarray(hu.astype(np.int16).transpose(2, 1, 0)))
    image.SetSpacing(tuple(reversed(SPACING_ZYX)))  # (x, y, z) = reversed [z, y, x]
    image.SetOrigin((-40.0, 20.0, 100.0))
    return image


def write_model() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    (MODEL / "fold_0").mkdir(parents=True)
    (MODEL / "plans.json").write_text(json.dumps(plans(), indent=1))
    (MODEL / "dataset.json").write_text(json.dumps(DATASET, indent=1))
    net = network()
    checkpoint = {
        "network_weights": net.state_dict(), "optimizer_state": None, "grad_scaler_state": None,
        "logging": {"mean_fg_dice": [np.float64(0.5)], "ema_fg_dice": [np.float64(0.5)]},
        "_best_ema": np.float64(0.5), "current_epoch": 1,
        "init_args": {"plans": plans(), "configuration": "3d_fullres", "fold": 0, "dataset_json": DATASET},
        "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": (0, 1, 2),
    }
    torch.save(checkpoint, MODEL / "fold_0" / "checkpoint_final.pth")
    sitk.WriteImage(ct(), str(OUT / "ct.nii.gz"))


def predict_with_nnunet() -> None:
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                perform_everything_on_device=False, device=torch.device("cpu"), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(MODEL), use_folds=(0,), checkpoint_name="checkpoint_final.pth")
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "case_0000.nii.gz"
        shutil.copy(OUT / "ct.nii.gz", source)
        predictor.predict_from_files([[str(source)]], [str(Path(tmp) / "case")], save_probabilities=False,
                                     overwrite=True, num_processes_preprocessing=1, num_processes_segmentation_export=1)
        shutil.copy(Path(tmp) / "case.nii.gz", OUT / "reference_nnunet.nii.gz")


if __name__ == "__main__":
    write_model()
    predict_with_nnunet()
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(OUT / "reference_nnunet.nii.gz")))
    print(f"wrote {OUT}: reference labels {np.unique(labels, return_counts=True)}")
