"""files/images.py and job/preprocess.py: reading every supported input, refusing bad ones, atomic outputs, and
an exact geometric round trip (model grid <-> original grid) on an oblique, flipped, anisotropic
volume. MONAI's own Orientation/Spacing are the reference for what "RAS" and the model grid mean.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from FreqAdvSegmentLib.files.images import atomic_output_dir, read_image, write_image
from FreqAdvSegmentLib.job.preprocess import (
    GridGeometry,
    Preprocessing,
    adversarial_to_original,
    intensity_to_original,
    labels_to_original,
    perturbation_to_hu,
    prepare,
    prepare_labels,
)

SIZE = (64, 48, 24)  # (x, y, z) = (i, j, k)
SPACING = (0.8, 1.1, 2.5)
ORIGIN = (-12.5, 40.2, 7.0)


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """Rotation matrix from angles in degrees about x, then y, then z."""
    cx, sx, cy, sy, cz, sz = (f(np.radians(a)) for a in (ax, ay, az) for f in (np.cos, np.sin))
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


# Oblique (20, -15, 30 degrees), one axis flipped, and the first two axes swapped: reorientation
# to RAS then has to permute AND flip, and the rotation must survive.
DIRECTION = tuple((rotation(20, -15, 30) @ np.diag([1, -1, 1]))[:, [1, 0, 2]].ravel())


def image_from_xyz(arr: np.ndarray, like: sitk.Image | None = None, **geometry) -> sitk.Image:
    """SimpleITK image from an [i, j, k] array, geometry from ``like`` or keywords."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))
    if like is not None:
        image.CopyInformation(like)
    else:
        image.SetSpacing(geometry.get("spacing", SPACING))
        image.SetOrigin(geometry.get("origin", ORIGIN))
        image.SetDirection(geometry.get("direction", DIRECTION))
    return image


def xyz(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image).transpose(2, 1, 0)


@pytest.fixture(scope="module")
def case() -> dict:
    """A smooth HU volume (int16, values inside and outside the window) and an ellipsoid label."""
    grid = np.meshgrid(*[np.arange(n) for n in SIZE], indexing="ij")
    mm = [g * s for g, s in zip(grid, SPACING)]
    centre = [n / 2 * s for n, s in zip(SIZE, SPACING)]
    r2 = sum(((m - c) / r) ** 2 for m, c, r in zip(mm, centre, (18.0, 16.0, 20.0)))
    hu = (400 * np.exp(-r2) - 250 + 2 * grid[0]).astype(np.int16)  # -250..~270 HU
    labels = (r2 <= 1).astype(np.uint8)
    image = image_from_xyz(hu)
    label_image = image_from_xyz(labels, image)
    return {"hu": hu, "labels": labels, "image": image, "label_image": label_image}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def same_geometry(a: sitk.Image, b: sitk.Image) -> bool:
    """Exact equality of the four geometry fields (no tolerance)."""
    return (
        a.GetSize() == b.GetSize()
        and a.GetSpacing() == b.GetSpacing()
        and a.GetOrigin() == b.GetOrigin()
        and a.GetDirection() == b.GetDirection()
    )


# ------------------------------------------------------------------------------------------------
# preprocess: round trips
# ------------------------------------------------------------------------------------------------


def test_prepare_output(case):
    x, ctx = prepare(case["image"], Preprocessing())
    assert x.dtype == torch.float32 and x.shape == (1, 1, *ctx.model.size)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert ctx.model.spacing == (1.5, 1.5, 2.0)
    assert ctx.model.direction == ctx.oriented.direction  # obliqueness kept, as MONAI keeps it
    assert ctx.to_oriented == ((1, 1), (0, -1), (2, 1))  # swap i/j and flip: as constructed


def test_labels_round_trip_with_resampling(case):
    x, ctx = prepare(case["image"], Preprocessing())
    y = prepare_labels(case["label_image"], ctx)
    assert y.dtype == torch.int64 and y.shape == x.shape
    back = labels_to_original(y, ctx)
    assert same_geometry(back, case["image"])
    assert back.GetPixelID() == sitk.sitkUInt8
    assert dice(xyz(back) == 1, case["labels"] == 1) > 0.95


def test_round_trip_is_exact_without_resampling(case):
    prep = Preprocessing(target_spacing=None)
    x, ctx = prepare(case["image"], prep)
    assert ctx.model == ctx.oriented
    back = labels_to_original(prepare_labels(case["label_image"], ctx), ctx)
    assert same_geometry(back, case["image"])
    np.testing.assert_array_equal(xyz(back), case["labels"])
    hu = xyz(intensity_to_original(x, ctx))
    np.testing.assert_allclose(hu, np.clip(case["hu"], -175, 250), atol=1e-3)


def test_intensity_round_trip_with_resampling(case):
    x, ctx = prepare(case["image"], Preprocessing())
    back = intensity_to_original(x, ctx)
    assert same_geometry(back, case["image"]) and back.GetPixelID() == sitk.sitkFloat32
    err = np.abs(xyz(back) - np.clip(case["hu"], -175, 250))
    assert err.mean() < 1.0 and err.max() < 10.0  # HU; linear interpolation of a smooth volume
    normalised = xyz(intensity_to_original(x, ctx, to_hu=False))
    np.testing.assert_allclose(normalised, (xyz(back) + 175) / 425, atol=1e-5)


def test_zero_perturbation_is_exact(case):
    x, ctx = prepare(case["image"], Preprocessing())
    delta = perturbation_to_hu(torch.zeros_like(x), ctx)
    assert same_geometry(delta, case["image"]) and delta.GetPixelID() == sitk.sitkFloat32
    assert not xyz(delta).any()
    adv = adversarial_to_original(x.clone(), x, case["image"], ctx)
    assert same_geometry(adv, case["image"]) and adv.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_array_equal(xyz(adv), case["hu"].astype(np.float32))


def test_perturbation_is_scaled_to_hu(case):
    x, ctx = prepare(case["image"], Preprocessing())
    step = 4.0 / 255.0  # the paper's epsilon 4 on the 0-255 scale
    delta = xyz(perturbation_to_hu(torch.full_like(x, step), ctx))
    np.testing.assert_allclose(delta, step * 425.0, rtol=1e-5)
    local = torch.zeros_like(x)
    local[0, 0, 10:20, 10:20, 10:20] = step
    adv = xyz(adversarial_to_original(x + local, x, case["image"], ctx))
    changed = adv != case["hu"]
    assert 0 < changed.sum() < changed.size // 4  # untouched voxels keep their exact value


# ------------------------------------------------------------------------------------------------
# preprocess: conventions, checked against MONAI and SimpleITK
# ------------------------------------------------------------------------------------------------


def monai_pipeline(path: Path, pixdim):
    from monai.transforms import LoadImage, Orientation, Spacing

    with warnings.catch_warnings():  # MONAI's FutureWarning about Orientation's labels default
        warnings.simplefilter("ignore", FutureWarning)
        loaded = LoadImage(reader="NibabelReader", image_only=True, ensure_channel_first=True)(
            str(path)
        )
        oriented = Orientation(axcodes="RAS")(loaded)
        spaced = Spacing(pixdim=pixdim, mode="bilinear")(oriented)
    return oriented, spaced


def test_orientation_matches_monai_on_oblique_volume(case, tmp_path):
    """Same RAS array and affine as MONAI's Orientation; same model-grid shape and axes as
    Spacing. (MONAI's Spacing origin for oblique float32 affines falls back to centring the grid,
    so only the axis-aligned test compares origins.)"""
    path = tmp_path / "oblique.nii.gz"
    sitk.WriteImage(case["image"], str(path))
    oriented, spaced = monai_pipeline(path, (1.5, 1.5, 2.0))
    prep = Preprocessing(target_spacing=None, intensity_window=(-1000, 1000))
    x, ctx = prepare(sitk.ReadImage(str(path)), prep)
    np.testing.assert_allclose(x[0, 0].numpy() * 2000 - 1000, oriented[0].numpy(), atol=1e-3)
    np.testing.assert_allclose(ctx.oriented.ras_affine(), oriented.affine.numpy(), atol=1e-4)
    _, ctx = prepare(sitk.ReadImage(str(path)), Preprocessing())
    assert tuple(spaced.shape[1:]) == ctx.model.size
    np.testing.assert_allclose(
        ctx.model.ras_affine()[:3, :3], spaced.affine.numpy()[:3, :3], atol=1e-4
    )


def test_model_grid_matches_monai_spacing(case, tmp_path):
    """Axis-aligned but permuted and flipped: identical grid and values to MONAI's pipeline."""
    image = image_from_xyz(case["hu"], direction=(0, 1, 0, 1, 0, 0, 0, 0, -1))
    path = tmp_path / "aligned.nii.gz"
    sitk.WriteImage(image, str(path))
    _, spaced = monai_pipeline(path, (1.5, 1.5, 2.0))
    x, ctx = prepare(sitk.ReadImage(str(path)), Preprocessing(intensity_window=(-1000, 1000)))
    assert tuple(spaced.shape[1:]) == ctx.model.size
    np.testing.assert_allclose(ctx.model.ras_affine(), spaced.affine.numpy(), atol=1e-4)
    ours = x[0, 0].numpy() * 2000 - 1000
    # The last slab on each axis lies beyond the input's last voxel centre, where MONAI's
    # "border" padding and ITK's extrapolation differ slightly; inside they agree.
    np.testing.assert_allclose(ours[:-1, :-1, :-1], spaced[0].numpy()[:-1, :-1, :-1], atol=0.01)


def test_ras_means_monai_ras_not_identity():
    """An identity-direction (LPS) ITK image: RAS = i towards Right, j towards Anterior, so
    direction diag(-1, -1, 1), and the array flipped along i and j. SimpleITK 2.x's
    DICOMOrient(image, "RAS") agrees."""
    arr = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    image = image_from_xyz(arr, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), spacing=(1, 1, 1))
    x, ctx = prepare(image, Preprocessing(target_spacing=None, intensity_window=(0, 1000)))
    assert ctx.oriented.direction == (-1, 0, 0, 0, -1, 0, 0, 0, 1)
    np.testing.assert_allclose(x[0, 0].numpy() * 1000, arr[::-1, ::-1, :], atol=1e-3)
    dicom_ras = sitk.DICOMOrient(image, "RAS")
    assert dicom_ras.GetDirection() == ctx.oriented.direction
    np.testing.assert_array_equal(xyz(dicom_ras), arr[::-1, ::-1, :])
    _, ctx = prepare(image, Preprocessing(target_spacing=None, orientation="LPS"))
    assert ctx.oriented == ctx.original  # ITK's native LPS needs no change


def test_labels_on_a_differently_indexed_grid(case):
    """A segmentation saved with its j axis reversed (same voxels in space) is resampled in
    physical space and gives the same labels: exactly on the native grid; on the 1.5 mm grid
    up to nearest-neighbour ties (1.5 / 0.8 puts some model voxels exactly half-way between two
    input voxels, where rounding noise decides)."""
    direction = np.asarray(DIRECTION).reshape(3, 3)
    flipped = image_from_xyz(
        case["labels"][:, ::-1, :],
        direction=tuple((direction * [1, -1, 1]).ravel()),
        origin=case["image"].TransformIndexToPhysicalPoint((0, SIZE[1] - 1, 0)),
    )
    _, ctx = prepare(case["image"], Preprocessing(target_spacing=None))
    assert torch.equal(prepare_labels(flipped, ctx), prepare_labels(case["label_image"], ctx))
    _, ctx = prepare(case["image"], Preprocessing())
    expected = prepare_labels(case["label_image"], ctx)
    assert (prepare_labels(flipped, ctx) != expected).float().mean() < 0.002
    far = image_from_xyz(case["labels"], origin=(5000.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="does not overlap"):
        prepare_labels(far, ctx)


def test_preprocess_bad_inputs(case):
    _, ctx = prepare(case["image"], Preprocessing())
    with pytest.raises(ValueError, match="target_spacing"):
        Preprocessing(target_spacing=(1.5, 0, 2))
    with pytest.raises(ValueError, match="a_min < a_max"):
        Preprocessing(intensity_window=(250, -175))
    for bad in ("RAR", "RA", "XYZ"):
        with pytest.raises(ValueError, match="orientation"):
            Preprocessing(orientation=bad)
    assert Preprocessing(orientation="lps").orientation == "LPS"
    with pytest.raises(ValueError, match="model grid"):
        labels_to_original(torch.zeros(5, 5, 5, dtype=torch.int64), ctx)
    with pytest.raises(ValueError, match="integer"):
        labels_to_original(torch.zeros(ctx.model.size), ctx)
    with pytest.raises(ValueError, match="non-integer"):
        prepare_labels(sitk.Cast(case["image"], sitk.sitkFloat32) / 3.0, ctx)
    other = image_from_xyz(case["hu"], origin=(0.0, 0.0, 0.0))
    x = torch.zeros(1, 1, *ctx.model.size)
    with pytest.raises(ValueError, match="same image"):
        adversarial_to_original(x, x, other, ctx)
    with pytest.raises(ValueError, match="3D scalar"):
        prepare(sitk.Image(8, 8, sitk.sitkInt16), Preprocessing())


# ------------------------------------------------------------------------------------------------
# io: reading
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["v.nii.gz", "v.nii", "v.nrrd", "v.mha"])
def test_write_read_round_trip(case, tmp_path, name):
    write_image(case["image"], tmp_path / name)
    back = read_image(tmp_path / name)
    np.testing.assert_array_equal(xyz(back), case["hu"])
    assert back.GetSize() == SIZE
    np.testing.assert_allclose(back.GetSpacing(), SPACING, atol=1e-5)
    np.testing.assert_allclose(back.GetOrigin(), ORIGIN, atol=1e-4)
    np.testing.assert_allclose(back.GetDirection(), DIRECTION, atol=1e-5)
    assert os.listdir(tmp_path) == [name]  # no temporary file left behind


def test_written_files_are_compressed(case, tmp_path):
    write_image(case["image"], tmp_path / "v.nrrd")
    write_image(case["image"], tmp_path / "v.mha")
    assert b"encoding: gzip" in (tmp_path / "v.nrrd").read_bytes()[:1000]
    assert b"CompressedData = True" in (tmp_path / "v.mha").read_bytes()[:1000]


def write_dicom_series(image: sitk.Image, folder: Path, series_uid: str) -> None:
    """Per-slice DICOM writes with the tags ImageSeriesReader needs (after SimpleITK's
    DicomSeriesFromArray example): series UID, orientation, and each slice's position."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()  # otherwise GDCM invents a new series UID per slice
    d = image.GetDirection()
    tags = {
        "0008|0031": time.strftime("%H%M%S"),
        "0008|0021": time.strftime("%Y%m%d"),
        "0008|0008": "DERIVED\\SECONDARY",
        "0008|0060": "CT",
        "0020|000e": series_uid,
        "0020|0037": "\\".join(map(str, (d[0], d[3], d[6], d[1], d[4], d[7]))),
        "0008|103e": "FreqAdvSegment test series",
    }
    for k in range(image.GetDepth()):
        s = image[:, :, k]
        for tag, value in tags.items():
            s.SetMetaData(tag, value)
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        s.SetMetaData("0020|0032", "\\".join(map(str, position)))
        s.SetMetaData("0020|0013", str(k + 1))
        writer.SetFileName(str(folder / f"{series_uid[-4:]}_{k:03d}.dcm"))
        writer.Execute(s)


@pytest.fixture(scope="module")
def dicom_volume() -> sitk.Image:
    arr = (np.arange(32 * 24 * 6).reshape(32, 24, 6) % 1700 - 1000).astype(np.int16)
    return image_from_xyz(arr, spacing=(0.7, 0.75, 2.5), origin=(-100.0, -80.0, 30.0),
                          direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))


def test_read_dicom_series(dicom_volume, tmp_path):
    write_dicom_series(dicom_volume, tmp_path / "ct", "1.2.826.0.1.3680043.2.1125.1.1001")
    image = read_image(tmp_path / "ct")
    assert image.GetSize() == dicom_volume.GetSize()
    np.testing.assert_allclose(image.GetSpacing(), (0.7, 0.75, 2.5), atol=1e-4)
    np.testing.assert_allclose(image.GetOrigin(), dicom_volume.GetOrigin(), atol=1e-4)
    np.testing.assert_array_equal(xyz(image), xyz(dicom_volume))


def test_dicom_folder_with_two_series(dicom_volume, tmp_path):
    uids = ("1.2.826.0.1.3680043.2.1125.1.2001", "1.2.826.0.1.3680043.2.1125.1.2002")
    for uid in uids:
        write_dicom_series(dicom_volume, tmp_path / "mixed", uid)
    with pytest.raises(ValueError, match="2 DICOM series") as err:
        read_image(tmp_path / "mixed")
    assert all(uid in str(err.value) for uid in uids) and "6 files" in str(err.value)
    assert read_image(tmp_path / "mixed", series_id=uids[1]).GetSize() == dicom_volume.GetSize()


def test_folder_without_dicom(tmp_path):
    with pytest.raises(ValueError, match="no DICOM series"):
        read_image(tmp_path)


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.nii.gz"):
        read_image(tmp_path / "nope.nii.gz")


def test_unsupported_and_damaged_files(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="unsupported file type"):
        read_image(tmp_path / "notes.txt")
    (tmp_path / "broken.nii.gz").write_bytes(b"this is not a NIfTI file")
    with pytest.raises(ValueError, match="as NIfTI"):
        read_image(tmp_path / "broken.nii.gz")


def test_2d_image(tmp_path):
    sitk.WriteImage(sitk.Image(16, 16, sitk.sitkInt16), str(tmp_path / "slice.nii.gz"))
    with pytest.raises(ValueError, match="2D image.*needs a 3D volume"):
        read_image(tmp_path / "slice.nii.gz")


def test_single_slice_volume(tmp_path):
    sitk.WriteImage(sitk.Image(16, 16, 1, sitk.sitkInt16), str(tmp_path / "one.nrrd"))
    with pytest.raises(ValueError, match="single slice|3D volume"):
        read_image(tmp_path / "one.nrrd")


def test_4d_image(tmp_path):
    volume = sitk.Image(8, 8, 8, sitk.sitkInt16)
    sitk.WriteImage(sitk.JoinSeries([volume, volume]), str(tmp_path / "t.nii.gz"))
    with pytest.raises(ValueError, match="4D image.*needs a 3D volume"):
        read_image(tmp_path / "t.nii.gz")


def test_nan_image(tmp_path):
    arr = np.zeros((8, 8, 8), np.float32)
    arr[1, 2, 3] = np.nan
    arr[4, 4, 4] = np.inf
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(tmp_path / "nan.mha"))
    with pytest.raises(ValueError, match="2 NaN or infinite voxels"):
        read_image(tmp_path / "nan.mha")


def test_vector_image(tmp_path):
    volume = sitk.Image(8, 8, 8, sitk.sitkFloat32)
    sitk.WriteImage(sitk.Compose([volume] * 3), str(tmp_path / "vec.nrrd"))
    with pytest.raises(ValueError, match="3 components per voxel"):
        read_image(tmp_path / "vec.nrrd")


# ------------------------------------------------------------------------------------------------
# io: atomic outputs
# ------------------------------------------------------------------------------------------------


def test_failed_write_leaves_nothing(case, tmp_path, monkeypatch):
    target = tmp_path / "seg.nii.gz"
    target.write_bytes(b"previous result")

    def half_write(image, path, useCompression=False):
        Path(path).write_bytes(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", half_write)
    with pytest.raises(OSError, match="disk full"):
        write_image(case["image"], target)
    assert os.listdir(tmp_path) == ["seg.nii.gz"]
    assert target.read_bytes() == b"previous result"  # untouched


def test_write_refuses_bad_targets(case, tmp_path):
    with pytest.raises(ValueError, match="single-file"):
        write_image(case["image"], tmp_path / "v.nhdr")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_image(case["image"], tmp_path / "missing" / "v.nrrd")
    with pytest.raises(TypeError):
        write_image(np.zeros((2, 2, 2)), tmp_path / "v.nrrd")
    assert os.listdir(tmp_path) == []


def test_atomic_output_dir_success(tmp_path):
    final = tmp_path / "results" / "case01"
    with atomic_output_dir(final) as out:
        assert out.parent == final.parent and out != final and not final.exists()
        (out / "report.json").write_text("{}")
    assert sorted(os.listdir(final)) == [".freqadv", "report.json"]  # the stamp lists what it wrote
    assert sorted(json.loads((final / ".freqadv").read_text())["files"]) == ["report.json"]
    assert os.listdir(final.parent) == ["case01"]


def test_atomic_output_dir_crash_leaves_nothing(tmp_path):
    final = tmp_path / "case01"
    with pytest.raises(KeyError):
        with atomic_output_dir(final) as out:
            (out / "half.nii.gz").write_bytes(b"...")
            raise KeyError("crash mid-run")
    assert not final.exists()
    assert os.listdir(tmp_path) == []


def test_atomic_output_dir_existing_folder(tmp_path):
    final = tmp_path / "case01"
    final.mkdir()
    with atomic_output_dir(final) as out:  # an empty folder may be filled
        (out / "a.txt").write_text("a")
    with pytest.raises(FileExistsError, match="--overwrite"):
        with atomic_output_dir(final):
            pass
    with pytest.raises(RuntimeError):
        with atomic_output_dir(final, overwrite=True) as out:
            (out / "b.txt").write_text("b")
            raise RuntimeError("crash")
    assert sorted(os.listdir(final)) == [".freqadv", "a.txt"]  # old results survive a failed overwrite
    with atomic_output_dir(final, overwrite=True) as out:
        (out / "b.txt").write_text("b")
    assert sorted(os.listdir(final)) == [".freqadv", "b.txt"]
    assert os.listdir(tmp_path) == ["case01"]


def test_fast_gzip_writes_the_bytes_itk_would(tmp_path):
    """The .nii.gz written with the fast gzip decompresses to exactly ITK's own .nii.gz content
    (header and data), so readers see the same file as before; other formats still go through ITK."""
    import gzip

    from FreqAdvSegmentLib.samples.sample_data import sample_ct_path

    ct = sitk.ReadImage(str(sample_ct_path()))
    delta = sitk.Cast(ct, sitk.sitkFloat32) * 0.01 - 3.5  # a float volume, like the perturbation
    for img, name in ((ct, "ct"), (delta, "delta")):
        write_image(img, tmp_path / f"{name}.nii.gz")
        sitk.WriteImage(img, str(tmp_path / f"{name}_itk.nii.gz"), useCompression=True)
        ours = gzip.decompress((tmp_path / f"{name}.nii.gz").read_bytes())
        assert ours == gzip.decompress((tmp_path / f"{name}_itk.nii.gz").read_bytes())
        back = sitk.ReadImage(str(tmp_path / f"{name}.nii.gz"))
        assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(img))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nii.gz", "ct_itk.nii.gz", "delta.nii.gz", "delta_itk.nii.gz"]
