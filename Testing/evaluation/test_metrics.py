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


# --- against MONAI itself, on real organ shapes -----------------------------------------------------


def monai_reference(pred: np.ndarray, ref: np.ndarray, spacing, n: int) -> tuple[list[float], list[float]]:
    """Dice and HD95 per label straight from MONAI (one-hot, the computation this module replaced)."""
    from monai.metrics import compute_dice, compute_hausdorff_distance

    def one_hot(a):
        return torch.nn.functional.one_hot(torch.from_numpy(a).long(), n).permute(3, 0, 1, 2)[None].float()

    p, r = one_hot(pred), one_hot(ref)
    dice = compute_dice(p, r, include_background=True, ignore_empty=False)[0].tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # empty-mask and deprecation warnings
        hd = compute_hausdorff_distance(p, r, include_background=True, percentile=95, spacing=list(spacing))[0]
    return dice, hd.tolist()


@pytest.fixture(scope="module")
def sample_label_crop() -> tuple[np.ndarray, np.ndarray]:
    """(pred, ref) [56, 48, 40]: a crop of the shipped sample's organ labels as the reference, and a
    prediction made from it by growing one organ, shrinking another, shifting a third, dropping one
    (absent in pred), adding a false island of a label the crop lacks (absent in ref), and letting
    an organ run into the crop's border."""
    import SimpleITK as sitk
    from scipy.ndimage import binary_dilation

    from FreqAdvSegmentLib.samples.sample_data import sample_labels_path

    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(sample_labels_path()))).transpose(2, 1, 0)  # [x, y, z]
    counts = np.bincount(labels.ravel(), minlength=14)
    # The crop around the liver (label 6) reaches its neighbours; centred on the liver's centroid.
    centre = np.argwhere(labels == 6).mean(0).astype(int)
    lo = np.clip(centre - (28, 24, 20), 0, np.array(labels.shape) - (56, 48, 40))
    ref = np.ascontiguousarray(labels[lo[0] : lo[0] + 56, lo[1] : lo[1] + 48, lo[2] : lo[2] + 40]).astype(np.uint8)
    present = [c for c in range(1, 14) if (ref == c).any()]
    assert len(present) >= 4 and counts[6] > 0, "the sample's liver crop should hold several organs"
    pred = ref.copy()
    grow, shrink, shift, drop = present[:4]
    pred[binary_dilation(ref == grow, iterations=2) & (ref == 0)] = grow
    pred[(ref == shrink) & ~binary_erosion(ref == shrink)] = 0
    moved = np.roll(ref == shift, (2, -1, 1), axis=(0, 1, 2))
    pred[ref == shift] = 0
    pred[moved] = shift
    pred[pred == drop] = 0  # absent in the prediction
    absent = next(c for c in range(1, 14) if c not in present)
    pred[3:6, 40:44, 2:5] = absent  # absent in the reference: a false organ
    return pred, ref


def test_matches_monai_on_real_organs(sample_label_crop):
    """Dice to 1e-6 and HD95 to float32 precision (far inside a voxel) against MONAI's own functions,
    including labels absent from one map or both (where this module's rule replaces MONAI's 1/inf)."""
    pred, ref = sample_label_crop
    names = [f"label{c}" for c in range(14)]
    spacing = (0.75, 0.75, 1.0)
    result = segmentation_metrics(pred, ref, spacing, names, include_background=True)
    dice, hd = monai_reference(pred, ref, spacing, 14)
    kinds = set()
    for c, name in enumerate(names):
        entry, in_ref, in_pred = result.per_class[name], (ref == c).any(), (pred == c).any()
        kinds.add((bool(in_ref), bool(in_pred)))
        if in_ref and in_pred:
            assert entry.dice == pytest.approx(dice[c], abs=1e-6)
            assert entry.hd95_mm == pytest.approx(hd[c], rel=1e-5, abs=1e-5)
        elif in_ref or in_pred:
            assert entry.dice == 0.0 == pytest.approx(dice[c])
            assert math.isnan(entry.hd95_mm) and not math.isfinite(hd[c])  # MONAI: inf or NaN; here: NaN, a note
        else:
            assert math.isnan(entry.dice) and math.isnan(entry.hd95_mm)
    assert kinds == {(True, True), (True, False), (False, True), (False, False)}, "every case is covered"
    assert any(0.0 < result.per_class[n].hd95_mm for n in names[1:]), "some organ really differs"


def test_box_at_the_volume_border_and_thin_organs():
    """Organs on the volume's faces and one voxel thick: the box clipped there gives MONAI's values."""
    rng = np.random.default_rng(0)
    ref = np.zeros((20, 18, 9), np.uint8)
    ref[0:6, :, 0:3] = 1  # spans one axis entirely and touches three faces
    ref[10, 4:15, 2:8] = 2  # one voxel thick
    ref[14:20, 10:18, 5:9] = 3  # in the far corner
    pred = ref.copy()
    flip = rng.random(ref.shape) < 0.05
    pred[flip] = rng.integers(0, 4, ref.shape, dtype=np.uint8)[flip]
    result = segmentation_metrics(pred, ref, SPACING, ["bg", "a", "b", "c"], include_background=True)
    dice, hd = monai_reference(pred, ref, SPACING, 4)
    for c, name in enumerate(["bg", "a", "b", "c"]):
        assert result.per_class[name].dice == pytest.approx(dice[c], abs=1e-6)
        assert result.per_class[name].hd95_mm == pytest.approx(hd[c], rel=1e-5, abs=1e-5)


def test_many_labels_use_a_wider_pair_map():
    """More than 16 labels (e.g. TotalSegmentator's 105): the pair map leaves uint8 and still
    gives MONAI's Dice and HD95."""
    rng = np.random.default_rng(3)
    ref = np.zeros((16, 14, 10), np.uint8)
    for c in range(1, 20):  # 19 small blocks of labels 1..19
        x, y = (c - 1) % 4 * 4, (c - 1) // 4 * 3
        ref[x : x + 3, y : y + 2, 2:7] = c
    pred = ref.copy()
    noise = rng.random(ref.shape) < 0.08
    pred[noise] = rng.integers(0, 20, ref.shape, dtype=np.uint8)[noise]
    names = [str(c) for c in range(20)]
    result = segmentation_metrics(pred, ref, SPACING, names)
    dice, hd = monai_reference(pred, ref, SPACING, 20)
    for c in range(1, 20):
        assert result.per_class[str(c)].dice == pytest.approx(dice[c], abs=1e-6)
        if (pred == c).any():
            assert result.per_class[str(c)].hd95_mm == pytest.approx(hd[c], rel=1e-5, abs=1e-5)
