"""The shipped sample CT (patient A) and its BTCV labels load and make anatomical sense."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

try:
    import FreqAdvSegmentLib  # noqa: F401
except ModuleNotFoundError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "FreqAdvSegment"))

from FreqAdvSegmentLib.organs import BTCV_LABELS
from FreqAdvSegmentLib.samples.sample_data import (
    heldout_patient_paths,
    sample_ct_path,
    sample_labels_path,
)

LIVER = BTCV_LABELS.index("liver")


@pytest.fixture(scope="module")
def ct() -> sitk.Image:
    """The shipped sample CT."""
    return sitk.ReadImage(str(sample_ct_path()))


@pytest.fixture(scope="module")
def labels() -> sitk.Image:
    """The shipped sample labels."""
    return sitk.ReadImage(str(sample_labels_path()))


def test_sample_files_are_small() -> None:
    total = sample_ct_path().stat().st_size + sample_labels_path().stat().st_size
    assert total < 5 * 1024 * 1024


def test_sample_is_3d(ct: sitk.Image, labels: sitk.Image) -> None:
    assert ct.GetDimension() == 3 and labels.GetDimension() == 3
    assert ct.GetNumberOfComponentsPerPixel() == 1
    assert min(ct.GetSize()) > 1


def test_pixel_types(ct: sitk.Image, labels: sitk.Image) -> None:
    assert ct.GetPixelID() == sitk.sitkInt16
    assert labels.GetPixelID() == sitk.sitkUInt8


def test_ct_and_labels_share_geometry_exactly(ct: sitk.Image, labels: sitk.Image) -> None:
    assert ct.GetSize() == labels.GetSize()
    assert ct.GetSpacing() == labels.GetSpacing()
    assert ct.GetOrigin() == labels.GetOrigin()
    assert ct.GetDirection() == labels.GetDirection()


def test_labels_in_btcv_range(labels: sitk.Image) -> None:
    arr = sitk.GetArrayViewFromImage(labels)
    assert arr.min() >= 0
    assert arr.max() <= len(BTCV_LABELS) - 1 == 13


def test_organs_present_and_liver_largest(labels: sitk.Image) -> None:
    counts = np.bincount(sitk.GetArrayViewFromImage(labels).ravel(), minlength=len(BTCV_LABELS))
    organ_counts = counts[1:]
    assert np.count_nonzero(organ_counts) >= 10
    assert int(np.argmax(organ_counts)) + 1 == LIVER


def test_ct_hu_range_plausible(ct: sitk.Image) -> None:
    arr = sitk.GetArrayViewFromImage(ct)
    assert arr.min() <= -900  # air
    assert arr.max() >= 500  # bone


def test_liver_is_soft_tissue(ct: sitk.Image, labels: sitk.Image) -> None:
    hu = sitk.GetArrayViewFromImage(ct)
    liver = sitk.GetArrayViewFromImage(labels) == LIVER
    assert -50 <= float(hu[liver].mean()) <= 250


def test_heldout_missing_says_how_to_prepare(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"prepare_sample_data\.py --patient B"):
        heldout_patient_paths(tmp_path)


def test_heldout_paths_found_when_present(tmp_path: Path) -> None:
    folder = tmp_path / "patientB"
    folder.mkdir()
    for name in ("patientB_ct.nii.gz", "patientB_labels.nii.gz"):
        (folder / name).write_bytes(b"")
    ct_path, labels_path = heldout_patient_paths(tmp_path)
    assert ct_path == folder / "patientB_ct.nii.gz"
    assert labels_path == folder / "patientB_labels.nii.gz"


def test_shipped_sample_checksum_is_the_files():
    """Slicer's Sample Data registration uses the stored checksum instead of hashing the file at
    every Slicer start; it must be the file's."""
    import hashlib

    from FreqAdvSegmentLib.samples.sample_data import SAMPLE_CT_SHA256, sample_ct_path

    assert hashlib.sha256(sample_ct_path().read_bytes()).hexdigest() == SAMPLE_CT_SHA256
