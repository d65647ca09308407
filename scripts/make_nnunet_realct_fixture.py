"""Make Testing/data/nnunet_realct: an nnU-Net v2 model folder trained briefly on a real CT crop,
the crop twice (at the plans' spacing, and resampled so that nnU-Net must resample it), and
nnUNetPredictor's own label map of each. The tests need only the committed files.

This script needs nnunetv2 itself, which FreqAdvSegment never depends on. Run it in a throwaway
environment (CPU torch first, so pip does not pull a CUDA build):

    python -m venv /tmp/nnv && /tmp/nnv/bin/pip install torch==2.13.0 && /tmp/nnv/bin/pip install nnunetv2
    /tmp/nnv/bin/python scripts/make_nnunet_realct_fixture.py

The CT is a crop of the shipped sample (patient A, 3 mm, real HU) around liver and spleen, the
labels its liver (6) and spleen (1). The network is nnU-Net's PlainConvUNet with nnU-Net's plans,
CTNormalization and checkpoint layout, trained here for a few hundred steps with a plain DiceCE
loop (nnU-Net's own trainer would re-plan a patch as large as this small crop, one tile, which
would test nothing): what the fixture checks is inference, tile by tile, as nnUNetPredictor does it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "FreqAdvSegment" / "FreqAdvSegmentLib" / "resources" / "sample"
OUT = REPO / "Testing" / "data" / "nnunet_realct"
MODEL = OUT / "Dataset002_RealCrop" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
CROP_ZYX = (slice(64, 112), slice(16, 80), slice(4, 100))  # training crop: 48 x 64 x 96 voxels at 3 mm
# The test crop: sides that are not multiples of the tile step (16), so nnU-Net's tile rule and
# MONAI's place tiles differently (70 voxels: nnU-Net 0, 13, 25, 38; MONAI 0, 16, 32, 38).
TEST_CROP_ZYX = (slice(62, 112), slice(14, 84), slice(2, 102))  # 50 x 70 x 100
SPACING_ZYX = [3.0, 3.0, 3.0]
PATCH_ZYX = [32, 32, 32]
RESAMPLED_SPACING_XYZ = (2.0, 2.0, 2.5)  # a finer scan of the same crop: nnU-Net resamples it to 3 mm
ORGANS = {"liver": 6, "spleen": 1}  # fixture label -> BTCV value in the sample's labels
ARCH_KWARGS = {
    "n_stages": 4, "features_per_stage": [8, 16, 32, 32], "conv_op": "torch.nn.modules.conv.Conv3d",
    "kernel_sizes": [[3, 3, 3]] * 4, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]],
    "n_conv_per_stage": [2, 2, 2, 2], "n_conv_per_stage_decoder": [2, 2, 2], "conv_bias": True,
    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-05, "affine": True},
    "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
}
DATASET = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "spleen": 2},
           "numTraining": 1, "file_ending": ".nii.gz"}


def crop(box: tuple[slice, slice, slice] = CROP_ZYX) -> tuple[sitk.Image, np.ndarray]:
    """A CT crop [z, y, x] box (int16 HU, the sample's own geometry) and its labels (0 / 1 liver / 2 spleen)."""
    ct = sitk.ReadImage(str(SAMPLE / "patientA_ct.nii.gz"))
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(SAMPLE / "patientA_labels.nii.gz")))[box]
    z, y, x = (s.start for s in box)
    image = ct[x : box[2].stop, y : box[1].stop, z : box[0].stop]
    target = np.zeros_like(labels)
    for value, name in enumerate(DATASET["labels"]):
        if name in ORGANS:
            target[labels == ORGANS[name]] = value
    return image, target


def intensity_properties(hu: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """nnU-Net's foreground intensity statistics (what CTNormalization clips and z-scores with)."""
    fg = hu[target > 0].astype(np.float64)
    return {"mean": float(fg.mean()), "std": float(fg.std()), "percentile_00_5": float(np.percentile(fg, 0.5)),
            "percentile_99_5": float(np.percentile(fg, 99.5)), "max": float(fg.max()), "min": float(fg.min()),
            "median": float(np.median(fg))}


def plans(props: dict[str, float], shape_zyx: list[int]) -> dict:
    config = {
        "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2, "patch_size": PATCH_ZYX, "median_image_size_in_voxels": shape_zyx,
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
    return {"dataset_name": "Dataset002_RealCrop", "plans_name": "nnUNetPlans",
            "original_median_spacing_after_transp": SPACING_ZYX, "original_median_shape_after_transp": shape_zyx,
            "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
            "configurations": {"3d_fullres": config}, "experiment_planner_used": "ExperimentPlanner",
            "label_manager": "LabelManager", "foreground_intensity_properties_per_channel": {"0": props}}


def network() -> torch.nn.Module:
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    from dynamic_network_architectures.initialization.weight_init import InitWeights_He

    kwargs = dict(ARCH_KWARGS, conv_op=torch.nn.Conv3d, norm_op=torch.nn.InstanceNorm3d, nonlin=torch.nn.LeakyReLU)
    torch.manual_seed(0)
    net = PlainConvUNet(input_channels=1, num_classes=3, deep_supervision=True, **kwargs)
    net.apply(InitWeights_He(1e-2))
    return net


def train(net: torch.nn.Module, hu: np.ndarray, target: np.ndarray, props: dict[str, float], steps: int = 400) -> None:
    """A few hundred DiceCE steps on random 32^3 patches of the crop, normalised as nnU-Net does."""
    from monai.losses import DiceCELoss

    z = (np.clip(hu, props["percentile_00_5"], props["percentile_99_5"]) - props["mean"]) / max(props["std"], 1e-8)
    image, labels = torch.from_numpy(z[None, None].astype(np.float32)), torch.from_numpy(target[None, None].astype(np.int64))
    rng = np.random.default_rng(0)
    net.decoder.deep_supervision = False
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for step in range(steps):
        starts = [_patch_start(target, rng, organ) for organ in (1, 2)]  # one patch at each organ
        sl = [tuple(slice(s, s + p) for s, p in zip(start, PATCH_ZYX)) for start in starts]
        x = torch.cat([image[(..., *s)] for s in sl])
        y = torch.cat([labels[(..., *s)] for s in sl])
        flips = [a for a in (2, 3, 4) if rng.random() < 0.5]  # nnU-Net mirrors at test time: train for it
        x, y = (x.flip(flips), y.flip(flips)) if flips else (x, y)
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        if step % 50 == 0:
            print(f"step {step}: DiceCE {float(loss.detach()):.3f}", flush=True)
    net.decoder.deep_supervision = True


def _patch_start(target: np.ndarray, rng: np.random.Generator, organ: int) -> list[int]:
    """A random patch corner [z, y, x] whose patch holds a random voxel of ``organ`` (the small
    spleen is otherwise rarely seen in a few hundred steps)."""
    voxels = np.argwhere(target == organ)
    centre = voxels[rng.integers(len(voxels))]
    return [int(np.clip(c - rng.integers(0, p), 0, n - p)) for c, p, n in zip(centre, PATCH_ZYX, target.shape)]


def write_model(props: dict[str, float], shape_zyx: list[int], net: torch.nn.Module) -> None:
    (MODEL / "fold_0").mkdir(parents=True)
    plan = plans(props, shape_zyx)
    (MODEL / "plans.json").write_text(json.dumps(plan, indent=1))
    (MODEL / "dataset.json").write_text(json.dumps(DATASET, indent=1))
    checkpoint = {
        "network_weights": net.state_dict(), "optimizer_state": None, "grad_scaler_state": None,
        "logging": {"mean_fg_dice": [np.float64(0.5)], "ema_fg_dice": [np.float64(0.5)]},
        "_best_ema": np.float64(0.5), "current_epoch": 1,
        "init_args": {"plans": plan, "configuration": "3d_fullres", "fold": 0, "dataset_json": DATASET},
        "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": (0, 1, 2),
    }
    torch.save(checkpoint, MODEL / "fold_0" / "checkpoint_final.pth")


def resampled(image: sitk.Image) -> sitk.Image:
    """The crop as a finer scan would show it (linear, same field of view), int16."""
    size = [int(round(n * s / t)) for n, s, t in zip(image.GetSize(), image.GetSpacing(), RESAMPLED_SPACING_XYZ)]
    out = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), RESAMPLED_SPACING_XYZ,
                        image.GetDirection(), -1024.0, sitk.sitkFloat32)
    return sitk.Cast(sitk.Round(out), sitk.sitkInt16)


def predict_with_nnunet(names: list[str]) -> None:
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                perform_everything_on_device=False, device=torch.device("cpu"), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(MODEL), use_folds=(0,), checkpoint_name="checkpoint_final.pth")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            source = Path(tmp) / f"{name}_0000.nii.gz"
            shutil.copy(OUT / f"{name}.nii.gz", source)
            predictor.predict_from_files([[str(source)]], [str(Path(tmp) / name)], save_probabilities=False,
                                         overwrite=True, num_processes_preprocessing=1, num_processes_segmentation_export=1)
            shutil.copy(Path(tmp) / f"{name}.nii.gz", OUT / f"{name}_nnunet.nii.gz")


if __name__ == "__main__":
    import sys

    if "--predict-only" not in sys.argv:  # --predict-only: the committed model, new test inputs
        shutil.rmtree(OUT, ignore_errors=True)
        image, target = crop()
        hu = sitk.GetArrayFromImage(image)
        props = intensity_properties(hu, target)
        net = network()
        train(net, hu, target, props)
        write_model(props, list(hu.shape), net)
    image, _ = crop(TEST_CROP_ZYX)
    sitk.WriteImage(image, str(OUT / "ct_native.nii.gz"), useCompression=True)
    sitk.WriteImage(resampled(image), str(OUT / "ct_resampled.nii.gz"), useCompression=True)
    predict_with_nnunet(["ct_native", "ct_resampled"])
    for name in ("ct_native", "ct_resampled"):
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(OUT / f"{name}_nnunet.nii.gz")))
        print(f"{name}: nnUNetPredictor labels {dict(zip(*np.unique(labels, return_counts=True)))}")
