"""Where the labels changed: the engine's maps, and what the Slicer bridge and the web viewer derive
from them, on the shipped sample's real organ labels."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from FreqAdvSegmentLib.evaluation.results import LabelChange
from FreqAdvSegmentLib.job.label_changes import (
    changed_mask,
    label_change_maps,
    label_changes,
    organ_lost_image,
    written_change_maps,
)
from FreqAdvSegmentLib.organs import BTCV_LABELS
from FreqAdvSegmentLib.samples.sample_data import sample_labels_path


@pytest.fixture(scope="module")
def pair():
    """The sample's organ labels, and an "attacked" copy: the liver shrunk by one voxel at its
    border (liver lost, background gained), a spleen blob relabelled as kidney, and a made-up
    gallbladder in the air (background lost)."""
    clean = sitk.ReadImage(str(sample_labels_path()))
    a = sitk.GetArrayFromImage(clean)
    b = a.copy()
    liver = a == 6
    b[liver & ~np.roll(liver, 1, axis=2)] = 0
    spleen = np.argwhere(a == 1)
    b[tuple(spleen[: len(spleen) // 3].T)] = 2
    b[0:2, 0:3, 0:3] = 4
    attacked = sitk.GetImageFromArray(b)
    attacked.CopyInformation(clean)
    return clean, attacked, a, b


def test_maps_counts_and_views_agree(pair):
    clean, attacked, a, b = pair
    changed = a != b
    assert changed.sum() > 100 and (changed & (a == 0)).any(), "the fixture must change organs and background"
    lost, gained = label_change_maps(clean, attacked)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(lost), np.where(changed, a, 0))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(gained), np.where(changed, b, 0))
    assert lost.GetSpacing() == clean.GetSpacing() and lost.GetOrigin() == clean.GetOrigin()
    # The web's red overlay: exactly the changed voxels.
    np.testing.assert_array_equal(sitk.GetArrayFromImage(changed_mask(lost, gained)), changed.astype(np.uint8))
    # Slicer's segments: the organ lost, background lost as value n.
    n = len(BTCV_LABELS)
    by_organ = sitk.GetArrayFromImage(organ_lost_image(lost, gained, n))
    np.testing.assert_array_equal(by_organ, np.where(changed, np.where(a == 0, n, a), 0))
    # The report's counts: lost/gained per organ, organs with changes only.
    counts = label_changes(clean, attacked, BTCV_LABELS)
    assert counts["liver"] == LabelChange(int((changed & (a == 6)).sum()), int((changed & (b == 6)).sum()))
    assert counts["background"].lost == int((changed & (a == 0)).sum())
    assert "pancreas" not in counts
    assert sum(c.lost for c in counts.values()) == sum(c.gained for c in counts.values()) == int(changed.sum())


def test_viewers_read_the_written_maps_else_compute_them(pair, tmp_path):
    clean, attacked, a, b = pair
    sitk.WriteImage(clean, str(tmp_path / "clean_labels.nii.gz"))
    sitk.WriteImage(attacked, str(tmp_path / "adversarial_labels.nii.gz"))
    files = {"clean_labels": "clean_labels.nii.gz", "pgd/adversarial_labels": "adversarial_labels.nii.gz"}
    # An output folder from before the maps existed: computed the engine's way.
    lost, gained = written_change_maps(tmp_path, files, "pgd")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(lost), np.where(a != b, a, 0))
    # With the maps written, they are what is read (here deliberately different, to tell).
    marker = sitk.GetImageFromArray(np.full(a.shape, 3, np.uint8))
    marker.CopyInformation(clean)
    sitk.WriteImage(marker, str(tmp_path / "lost.nii.gz"))
    sitk.WriteImage(marker, str(tmp_path / "gained.nii.gz"))
    files.update({"pgd/labels_lost": "lost.nii.gz", "pgd/labels_gained": "gained.nii.gz"})
    lost, _ = written_change_maps(tmp_path, json.loads(json.dumps(files)), "pgd")
    assert int(sitk.GetArrayViewFromImage(lost).min()) == 3


def test_grids_must_match(pair):
    clean, _, a, _ = pair
    smaller = sitk.GetImageFromArray(a[:-1])
    with pytest.raises(ValueError, match="same grid"):
        label_change_maps(clean, smaller)
