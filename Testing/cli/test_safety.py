"""Trust holes closed (issue 16) and resource limits (issue 12), beyond the fault table:
labels on another grid, the memory plan, the model-size check, the CT check, upload byte caps,
the web app's server-side model list, and --overwrite replacing only FreqAdvSegment's results."""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest
import SimpleITK as sitk

from FreqAdvSegmentLib.cli import main
from FreqAdvSegmentLib.job.inference import load_segmentation_model
from FreqAdvSegmentLib.files.images import read_image
from FreqAdvSegmentLib.job.memory_plan import MemoryPlan, check_memory, plan_memory
from FreqAdvSegmentLib.job.modality import ct_warning
from FreqAdvSegmentLib.models.size import check_network_size, parameter_count
from FreqAdvSegmentLib.models.spec import ModelSpec
from FreqAdvSegmentLib.job.pipeline import run_job
from FreqAdvSegmentLib.samples.sample_data import sample_ct_path, sample_labels_path
from FreqAdvSegmentLib.web import uploads


@pytest.fixture(scope="module")
def demo():
    return load_segmentation_model("demo-unet", "cpu")


@pytest.fixture(scope="module")
def ct():
    return read_image(sample_ct_path())


@pytest.fixture(scope="module")
def labels():
    return read_image(sample_labels_path())


@pytest.fixture(scope="module")
def plain_dice(demo, ct, labels) -> float:
    """Clean mean Dice of the demo model against the sample's labels as shipped."""
    return run_job(ct, demo, [], labels).clean_metrics.mean_dice


def flipped_x(img: sitk.Image) -> sitk.Image:
    """The same labels in the same physical place, stored with the x axis reversed."""
    arr = sitk.GetArrayFromImage(img)[:, :, ::-1]
    out = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    out.SetSpacing(img.GetSpacing())
    direction = np.asarray(img.GetDirection()).reshape(3, 3)
    out.SetOrigin(img.TransformIndexToPhysicalPoint((img.GetSize()[0] - 1, 0, 0)))
    direction[:, 0] *= -1
    out.SetDirection(direction.ravel().tolist())
    return out


def test_flipped_labels_give_the_same_dice(demo, ct, labels, plain_dice):
    flipped = flipped_x(labels)
    assert sitk.GetArrayViewFromImage(flipped).shape == sitk.GetArrayViewFromImage(labels).shape
    plain = plain_dice
    again = run_job(ct, demo, [], flipped).clean_metrics.mean_dice
    assert plain > 0.5
    assert again == pytest.approx(plain, abs=1e-9)


def test_labels_on_another_spacing_are_aligned_by_position(demo, ct, labels, plain_dice):
    # Same shape, half the spacing, same origin: compared by array index, they would cover a
    # quarter of the body and score far lower.
    shrunk = sitk.Image(labels)
    shrunk.SetSpacing([s / 2 for s in labels.GetSpacing()])
    plain = plain_dice
    misplaced = run_job(ct, demo, [], shrunk).clean_metrics.mean_dice
    assert misplaced < plain - 0.3
    # Upsampled exactly to 1.5 mm (another grid and shape), they land where they belong.
    origin = labels.TransformContinuousIndexToPhysicalPoint((-0.25, -0.25, -0.25))
    fine = sitk.Resample(labels, [2 * n for n in labels.GetSize()], sitk.Transform(), sitk.sitkNearestNeighbor,
                         origin, [s / 2 for s in labels.GetSpacing()], labels.GetDirection())
    assert run_job(ct, demo, [], fine).clean_metrics.mean_dice == pytest.approx(plain, abs=0.01)


def test_memory_plan_grows_with_the_window_batch(demo, ct):
    small = plan_memory(ct, demo.spec, demo.spec.roi_size, 1, attacking=False)
    batch = plan_memory(ct, demo.spec, demo.spec.roi_size, 4, attacking=False)
    attack = plan_memory(ct, demo.spec, demo.spec.roi_size, 4, attacking=True)
    assert small.model_shape == (128, 112, 112)  # the sample at the model's 3 mm, padded to the ROI
    assert batch.parts["sliding-window batch"] == 4 * small.parts["sliding-window batch"]
    assert attack.parts["sliding-window batch"] > batch.parts["sliding-window batch"]  # activations kept
    assert small.fits()
    tight = MemoryPlan(attack.parts, available=attack.peak // 2, device="cpu", model_shape=attack.model_shape)
    with pytest.raises(MemoryError, match=r"needs about .* but only .* is free: lower --sw-batch-size"):
        check_memory(tight)


def test_network_size_is_checked_without_allocating():
    wide = ModelSpec("unet", {"channels": (2**20, 2**20), "strides": (2,)})
    assert parameter_count(wide) > 10**13  # counted on the meta device: nothing was allocated
    with pytest.raises(ValueError, match="parameters"):
        check_network_size(wide)
    check_network_size(ModelSpec("unet"))


def test_ct_check_warns_on_mr(ct, demo):
    assert ct_warning(ct, demo.spec) is None
    rng = np.random.default_rng(0)
    mr = sitk.GetImageFromArray(rng.uniform(0, 1500, (20, 24, 24)).astype(np.float32))
    message = ct_warning(mr, demo.spec)
    assert message and "does not look like a CT" in message


def _nifti_header(size, datatype: int, bitpix: int) -> bytes:
    head = bytearray(352)
    struct.pack_into("<i", head, 0, 348)
    struct.pack_into("<8h", head, 40, 3, *size, 1, 1, 1, 1)
    struct.pack_into("<2h", head, 70, datatype, bitpix)
    struct.pack_into("<f", head, 108, 352.0)
    head[344:348] = b"n+1\0"
    return bytes(head)


def test_upload_caps_count_bytes_per_voxel(tmp_path):
    limits = uploads.Limits()
    f64 = tmp_path / "f64.nii.gz"
    f64.write_bytes(gzip.compress(_nifti_header((512, 512, 512), 64, 64)))  # 1 GiB once decoded
    with pytest.raises(uploads.UploadError, match="once decoded") as refused:
        uploads.check_header(f64, ".nii.gz", limits)
    assert refused.value.status == 413
    i16 = tmp_path / "i16.nii.gz"
    i16.write_bytes(gzip.compress(_nifti_header((512, 512, 512), 4, 16)))  # 256 MiB: a real CT's size
    assert uploads.check_header(i16, ".nii.gz", limits) == (512, 512, 512)


def test_web_app_runs_only_server_listed_models(tmp_path):
    from trame.app import get_server

    from FreqAdvSegmentLib.web.app import FreqAdvWebApp, ServeConfig, public_message

    app = FreqAdvWebApp(ServeConfig(work_dir=tmp_path / "web"), server=get_server("freqadv-safety-test", client_type="vue3"))
    try:
        outside = tmp_path / "elsewhere" / "evil.safetensors"
        # A websocket client rewrites both the list and the choice; the server keeps its own.
        app.state.fa_models = [{"title": "evil", "value": str(outside), "props": {"disabled": False}}]
        app.state.fa_model = str(outside)
        with pytest.raises(ValueError, match="not available on this server") as refused:
            app._job_request()
        assert str(tmp_path) not in str(refused.value)
        app.state.fa_model = "demo-unet"
        assert app._job_request().model == "demo-unet"
    finally:
        app.close()
        for view in app.slicer.view_manager.get_views():
            view.finalize()
    assert public_message(f"cannot read '{outside}': damaged") == "cannot read 'evil.safetensors': damaged"


def test_overwrite_replaces_own_results_and_keeps_the_stamp(tmp_path):
    ct = tmp_path / "ct.nii.gz"
    ct.write_bytes(sample_ct_path().read_bytes())
    out = tmp_path / "out"
    assert main(["segment", str(ct), "--device", "cpu", "-o", str(out)]) == 0
    stamp = json.loads((out / ".freqadv").read_text())
    assert sorted(stamp["files"]) == ["segmentation.nii.gz"] and len(stamp["run_id"]) == 32
    assert main(["segment", str(ct), "--device", "cpu", "-o", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".freqadv", "segmentation.nii.gz"]
    assert ct.read_bytes() == sample_ct_path().read_bytes()
