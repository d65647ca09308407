"""Dice / HD95 / flip rate against an independent numpy + scipy computation.

MONAI's HD95 (monai.metrics.compute_hausdorff_distance, percentile=95, symmetric) is:
boundary = mask XOR binary_erosion(mask) (6-connected cross, outside the image counts as 0);
d(P->R) = Euclidean distance in mm from each boundary voxel of P to the nearest boundary voxel of
R, and d(R->P) the other way; HD95 = max(percentile95(d(P->R)), percentile95(d(R->P))), with
linear-interpolated percentiles. It is NOT the 95th percentile of the pooled distances. The
reference below rebuilds exactly that with scipy's distance transform, so agreement is to float32
precision rather than "within a voxel".
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_erosion, distance_transform_edt

from FreqAdvSegmentLib.evaluation.metrics import flip_rate, segmentation_metrics

SPACING = (0.7, 1.3, 2.5)  # anisotropic on purpose: a transposed spacing would show
NAMES = ("background", "a", "b", "c", "both_absent", "ref_absent", "pred_absent")


def ellipsoid(shape, centre, radii) -> np.ndarray:
    """Boolean ellipsoid [H, W, D] with centre/radii in voxels."""
    grid = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1.0


@pytest.fixture(scope="module")
def label_pair() -> tuple[np.ndarray, np.ndarray]:
    """pred/ref [40, 36, 20] with overlapping-but-shifted organs and the three absent cases."""
    shape = (40, 36, 20)
    ref = np.zeros(shape, np.int64)
    pred = np.zeros(shape, np.int64)
    ref[ellipsoid(shape, (12, 12, 8), (8, 6, 4))] = 1
    pred[ellipsoid(shape, (14, 11, 9), (7, 7, 3))] = 1
    ref[ellipsoid(shape, (28, 24, 12), (6, 8, 5))] = 2
    pred[ellipsoid(shape, (27, 26, 12), (6, 6, 6))] = 2
    pred[ellipsoid(shape, (27, 10, 15), (2, 2, 1))] = 2  # a distant false-positive island
    ref[30:36, 2:8, 0:4] = 3  # touches the image border
    pred[31:37, 2:9, 0:3] = 3
    pred[2:5, 30:34, 16:19] = 5  # label 5: only in pred
    ref[35:38, 30:34, 15:19] = 6  # label 6: only in ref
    return pred, ref


def reference_dice(p: np.ndarray, r: np.ndarray) -> float:
    return 2.0 * np.logical_and(p, r).sum() / (p.sum() + r.sum())


def reference_hd95(p: np.ndarray, r: np.ndarray, spacing) -> float:
    """MONAI's definition, rebuilt independently (see module docstring)."""
    edge_p = p ^ binary_erosion(p)
    edge_r = r ^ binary_erosion(r)
    d_p_to_r = distance_transform_edt(~edge_r, sampling=spacing)[edge_p]
    d_r_to_p = distance_transform_edt(~edge_p, sampling=spacing)[edge_r]
    return max(np.percentile(d_p_to_r, 95), np.percentile(d_r_to_p, 95))


def test_dice_and_hd95_match_independent_computation(label_pair):
    pred, ref = label_pair
    result = segmentation_metrics(pred, ref, SPACING, NAMES)
    for c in (1, 2, 3):
        entry = result.per_class[NAMES[c]]
        assert entry.dice == pytest.approx(reference_dice(pred == c, ref == c), abs=1e-6)
        expected = reference_hd95(pred == c, ref == c, SPACING)
        assert entry.hd95_mm == pytest.approx(expected, abs=1e-3)
        assert entry.ref_voxels == int((ref == c).sum())
        assert entry.pred_voxels == int((pred == c).sum())
        assert entry.note is None


def test_hd95_uses_spacing_in_mm_and_max_of_directed(label_pair):
    pred, ref = label_pair
    p, r = pred == 2, ref == 2
    in_mm = segmentation_metrics(pred, ref, SPACING, NAMES).per_class["b"].hd95_mm
    in_voxels = segmentation_metrics(pred, ref, (1, 1, 1), NAMES).per_class["b"].hd95_mm
    assert in_mm != pytest.approx(in_voxels, abs=1e-3)  # the spacing really is used
    # The false-positive island makes the two directions differ; MONAI takes the larger one.
    edge_p, edge_r = p ^ binary_erosion(p), r ^ binary_erosion(r)
    d_p_to_r = distance_transform_edt(~edge_r, sampling=SPACING)[edge_p]
    d_r_to_p = distance_transform_edt(~edge_p, sampling=SPACING)[edge_r]
    directed = (np.percentile(d_p_to_r, 95), np.percentile(d_r_to_p, 95))
    assert abs(directed[0] - directed[1]) > 0.1
    assert in_mm == pytest.approx(max(directed), abs=1e-3)


def test_absent_organs(label_pair):
    pred, ref = label_pair
    result = segmentation_metrics(pred, ref, SPACING, NAMES)
    both = result.per_class["both_absent"]
    assert math.isnan(both.dice) and math.isnan(both.hd95_mm)
    assert "not counted" in both.note
    for name in ("ref_absent", "pred_absent"):
        entry = result.per_class[name]
        assert entry.dice == 0.0
        assert math.isnan(entry.hd95_mm) and "HD95 undefined" in entry.note
    dice = [reference_dice(pred == c, ref == c) for c in (1, 2, 3)] + [0.0, 0.0]
    assert result.mean_dice == pytest.approx(np.mean(dice), abs=1e-6)
    hd = [reference_hd95(pred == c, ref == c, SPACING) for c in (1, 2, 3)]
    assert result.mean_hd95_mm == pytest.approx(np.mean(hd), abs=1e-3)


def test_include_background_switch(label_pair):
    pred, ref = label_pair
    without = segmentation_metrics(pred, ref, SPACING, NAMES)
    with_bg = segmentation_metrics(pred, ref, SPACING, NAMES, include_background=True)
    assert "background" not in without.per_class
    bg = with_bg.per_class["background"]
    assert bg.dice == pytest.approx(reference_dice(pred == 0, ref == 0), abs=1e-6)
    assert bg.hd95_mm == pytest.approx(reference_hd95(pred == 0, ref == 0, SPACING), abs=1e-3)
    # The paper's convention (mean over all classes, background included) does not depend on it.
    dice_all = [bg.dice] + [reference_dice(pred == c, ref == c) for c in (1, 2, 3)] + [0.0, 0.0]
    for result in (without, with_bg):
        assert result.mean_dice_with_background == pytest.approx(np.mean(dice_all), abs=1e-6)
    assert with_bg.mean_dice == pytest.approx(np.mean(dice_all), abs=1e-6)


def test_torch_input_5d_and_no_warnings(label_pair):
    pred, ref = label_pair
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # MONAI's empty-mask and deprecation warnings stay quiet
        pred_5d = torch.from_numpy(pred)[None, None]
        a = segmentation_metrics(pred_5d, torch.from_numpy(ref), SPACING, NAMES)
        reversed_view = pred[:, ::-1][:, ::-1]  # equal values, negative strides
        b = segmentation_metrics(reversed_view, ref, SPACING, NAMES)
    assert a.mean_dice == pytest.approx(b.mean_dice)


def test_all_absent_gives_nan_means():
    zeros = np.zeros((8, 8, 8), np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = segmentation_metrics(zeros, zeros, SPACING, NAMES)
    assert math.isnan(result.mean_dice) and math.isnan(result.mean_hd95_mm)
    assert result.mean_dice_with_background == 1.0  # background alone, perfectly matched


def test_bad_inputs_are_explained(label_pair):
    pred, ref = label_pair
    with pytest.raises(ValueError, match="label_names has 3 names"):
        segmentation_metrics(pred, ref, SPACING, NAMES[:3])
    with pytest.raises(ValueError, match="differ in shape"):
        segmentation_metrics(pred[:-1], ref, SPACING, NAMES)
    with pytest.raises(ValueError, match="integer labels"):
        segmentation_metrics(pred.astype(np.float32), ref, SPACING, NAMES)
    with pytest.raises(ValueError, match="spacing"):
        segmentation_metrics(pred, ref, (1.0, 1.0), NAMES)


def test_flip_rate():
    a = np.zeros((10, 10, 10), np.int64)
    b = a.copy()
    b[:2, :5, :3] = 4  # 30 voxels of 1000
    assert flip_rate(a, b) == pytest.approx(0.03)
    assert flip_rate(torch.from_numpy(a), torch.from_numpy(a)) == 0.0
    with pytest.raises(ValueError, match="different shapes"):
        flip_rate(a, b[:-1])
