"""The web viewer (``freqadv serve``, FreqAdvSegmentLib.web) without and with a browser.

Skipped where trame-slicer is not installed. Without a browser: upload and download checks, the
attack form, the metrics rows, the one-job-per-session runner (with a stand-in engine), the scene
viewer on a real trame-slicer scene with offscreen views, and the HTTP routes of a real server.
With a browser (Debian's chromium and chromedriver through selenium): the page loads a volume by
upload and the sample, a failing job shows its error, Cancel works, and a small FGSM run ends in
a metrics table and views whose screenshot shows the segments' colours.

Set FREQADV_REQUIRE_BROWSER=1 (CI does) to fail instead of skip when the browser is missing, and
FREQADV_WEB_SCREENSHOTS=folder to keep the screenshots.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import os
import queue
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("trame_slicer", reason='the web viewer needs trame-slicer (pip install "trame-slicer[standalone]==2.0.0")')

from FreqAdvSegmentLib.organs import BTCV_COLORS, BTCV_LABELS  # noqa: E402
from FreqAdvSegmentLib.samples.sample_data import sample_ct_path, sample_labels_path  # noqa: E402
from FreqAdvSegmentLib.web import downloads, jobs, params, routes, uploads  # noqa: E402
from FreqAdvSegmentLib.web.metrics import page_metrics  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ORGAN_RGB = {name: np.array(c) for name, c in zip(BTCV_LABELS[1:], BTCV_COLORS[1:])}


# --- helpers -------------------------------------------------------------------------------------


def _nifti_header(dims: tuple[int, ...], endian: str = "<") -> bytes:
    """A minimal NIfTI-1 single-file header declaring ``dims`` (int16 voxels)."""
    header = bytearray(352)
    struct.pack_into(f"{endian}i", header, 0, 348)
    struct.pack_into(f"{endian}8h", header, 40, len(dims), *dims, *([1] * (7 - len(dims))))
    struct.pack_into(f"{endian}hh", header, 70, 4, 16)  # datatype int16, bitpix 16
    struct.pack_into(f"{endian}f", header, 108, 352.0)  # vox_offset
    header[344:348] = b"n+1\x00"
    return bytes(header)


async def _chunks(data: bytes, size: int = 1000):
    for start in range(0, len(data), size):
        yield data[start:start + size]


def _receive(store: uploads.UploadStore, name: str, data: bytes, declared: int | None = None) -> str:
    length = len(data) if declared is None else declared
    return asyncio.run(store.receive(name, length, _chunks(data)))


def _synthetic_results(folder: Path) -> Path:
    """A ``freqadv attack`` output folder with one FGSM result on a 24^3 phantom: a liver ball
    and a spleen box, the adversarial labels eroded by one voxel."""
    z, y, x = np.mgrid[:24, :24, :24]
    labels = np.zeros((24, 24, 24), np.uint8)
    labels[(z - 12) ** 2 + (y - 12) ** 2 + (x - 9) ** 2 < 36] = BTCV_LABELS.index("liver")
    labels[8:16, 8:16, 16:21] = BTCV_LABELS.index("spleen")
    adversarial = labels.copy()
    adversarial[:, :, 9] = 0
    ct = np.where(labels > 0, 60.0, -100.0).astype(np.float32)
    perturbation = np.random.default_rng(0).uniform(-5, 5, ct.shape).astype(np.float32)

    def write(array: np.ndarray, name: str) -> str:
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((2.0, 2.0, 2.0))
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(image, str(folder / name))
        return name

    files = {"clean_labels": write(labels, "clean_labels.nrrd"),
             "fgsm/adversarial": write(ct + perturbation, "fgsm/adversarial.nrrd"),
             "fgsm/perturbation_hu": write(perturbation, "fgsm/perturbation_hu.nrrd"),
             "fgsm/adversarial_labels": write(adversarial, "fgsm/adversarial_labels.nrrd")}
    per_class = {name: {"dice": None, "hd95_mm": None, "ref_voxels": 0, "pred_voxels": 0} for name in BTCV_LABELS[1:]}
    per_class["liver"] = {"dice": 0.8, "hd95_mm": 4.0, "ref_voxels": int((labels == 6).sum()), "pred_voxels": 900}
    per_class["spleen"] = {"dice": 0.9, "hd95_mm": 2.0, "ref_voxels": int((labels == 1).sum()), "pred_voxels": 300}
    # A false positive: not in the reference, one voxel predicted: Dice 0, no HD95; it counts in the mean.
    per_class["left adrenal gland"] = {"dice": 0.0, "hd95_mm": None, "ref_voxels": 0, "pred_voxels": 1}
    entry = {"method": "fgsm", "params": {"eps": 4 / 255}, "seconds": 3.2, "flip_rate": 0.012,
             "perturbation": {"linf": 4 / 255, "ssim": 0.9876, "psnr_db": 40.1}, "perturbation_hu_linf": 7.5,
             "vs_reference": {"per_class": per_class, "mean_dice": 1.7 / 3, "mean_hd95_mm": 3.0}}
    report = {"model": {"spec": {"label_names": list(BTCV_LABELS)}}, "reference": "clean prediction",
              "clean_vs_ground_truth": None, "files": files, "attacks": {"fgsm": entry}}
    (folder / "report.json").write_text(json.dumps(report))
    (folder / "report.html").write_text("<html>report</html>")
    return folder


def _organ_pixels(rgb: np.ndarray, tolerance: int = 30) -> dict[str, int]:
    """Pixels per organ colour: close to it and clearly coloured (CT greys never count)."""
    rgb = rgb[..., :3].astype(int)
    saturated = (rgb.max(axis=-1) - rgb.min(axis=-1)) > 40
    return {name: int(((np.abs(rgb - c).max(axis=-1) < tolerance) & saturated).sum()) for name, c in ORGAN_RGB.items()}


# --- uploads -------------------------------------------------------------------------------------


def test_upload_types_and_declared_sizes_are_checked_first():
    assert uploads.volume_suffix("CT.NII.GZ") == ".nii.gz"
    assert uploads.volume_suffix("a.nrrd") == ".nrrd"
    for name in ("notes.txt", "ct.nii.gz.exe", "scan.mha", "ct.nhdr", ""):
        with pytest.raises(uploads.UploadError) as err:
            uploads.volume_suffix(name)
        assert err.value.status == 415
    limits = uploads.Limits(max_bytes=1000)
    assert [_status(lambda n=n: uploads.check_length(n, limits)) for n in (None, 0, 1001)] == [411, 400, 413]
    uploads.check_length(1000, limits)


def _status(call) -> int:
    with pytest.raises(uploads.UploadError) as err:
        call()
    return err.value.status


def test_real_volumes_pass_the_header_check(tmp_path):
    limits = uploads.Limits()
    image = sitk.ReadImage(str(sample_ct_path()))
    assert uploads.check_header(sample_ct_path(), ".nii.gz", limits) == image.GetSize()
    sitk.WriteImage(image, str(tmp_path / "ct.nrrd"), useCompression=True)
    assert uploads.check_header(tmp_path / "ct.nrrd", ".nrrd", limits) == image.GetSize()
    sitk.WriteImage(image, str(tmp_path / "ct.nii"))
    assert uploads.check_header(tmp_path / "ct.nii", ".nii", limits) == image.GetSize()
    (tmp_path / "big-endian.nii").write_bytes(_nifti_header((4, 5, 6), ">") + bytes(240))
    assert uploads.check_header(tmp_path / "big-endian.nii", ".nii", limits) == (4, 5, 6)


@pytest.mark.parametrize("name, content, status, words", [
    ("ct.nii", b"hello world" * 40, 415, "not a NIfTI"),
    ("ct.nii", b"short", 415, "too short"),
    ("ct.nii.gz", _nifti_header((8, 8, 8)), 415, "not gzip"),
    ("ct.nii", _nifti_header((8, 8, 8, 3)), 415, "3D volume"),
    ("ct.nii.gz", gzip.compress(_nifti_header((5000, 5000, 5000))), 413, "voxels"),
    ("ct.nrrd", b"P5\n8 8\n255\n" + bytes(64), 415, "NRRD"),
    ("ct.nrrd", b"NRRD0004\ntype: short\ndimension: 3\nsizes: 4 4 4\ndata file: /etc/passwd\n\n", 415, "detached"),
    ("ct.nrrd", b"NRRD0004\ntype: short\ndimension: 2\nsizes: 4 4\n\n" + bytes(32), 415, "3D"),
    ("ct.nrrd", b"NRRD0004\ntype: short\ndimension: 3\nsizes: 4000 4000 4000\n\n", 413, "voxels"),
    ("ct.nrrd", b"NRRD0004\ntype: short\ndimension: 3\nsizes: 4 4 4\n", 415, "truncated"),
])
def test_bad_files_are_refused_before_parsing(tmp_path, name, content, status, words):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(uploads.UploadError, match=words) as err:
        uploads.check_header(path, uploads.volume_suffix(name), uploads.Limits(max_voxels=10**9))
    assert err.value.status == status


def test_upload_store_keeps_checked_files_under_its_own_names(tmp_path):
    store = uploads.UploadStore(tmp_path / "up", uploads.Limits(max_bytes=4 * 2**20))
    upload_id = _receive(store, "../../evil/CT scan.nii.gz", sample_ct_path().read_bytes())
    stored = store.get(upload_id)
    assert stored.path.parent == tmp_path / "up" and stored.path.name == f"{upload_id}.nii.gz"
    assert stored.name == "CT scan.nii.gz" and stored.size == (122, 101, 112)
    # A second upload replaces the first; a rejected one leaves nothing behind.
    second = _receive(store, "b.nii", _nifti_header((4, 4, 4)) + bytes(128))
    assert not stored.path.exists() and store.get(second).size == (4, 4, 4)
    with pytest.raises(uploads.UploadError):
        _receive(store, "c.nii", b"not a volume" * 40)
    with pytest.raises(KeyError, match="upload the file again"):
        store.get("no-such-id")
    assert sorted(p.name for p in (tmp_path / "up").iterdir()) == [f"{second}.nii"]


def test_a_body_longer_than_declared_is_cut_off(tmp_path):
    store = uploads.UploadStore(tmp_path, uploads.Limits(max_bytes=5000))
    with pytest.raises(uploads.UploadError, match="exceeded") as err:
        _receive(store, "ct.nii", bytes(9000), declared=4000)
    assert err.value.status == 413 and not list(tmp_path.iterdir())


def test_guard_lets_only_this_server_s_own_pages_in():
    loopback = routes.allowed_hostnames("127.0.0.1")
    assert routes.refusal("127.0.0.1:8080", None, loopback) is None
    assert routes.refusal("localhost:8080", "http://localhost:8080", loopback) is None
    assert routes.refusal("[::1]:8080", "http://[::1]:8080", loopback) is None
    for host, origin, words in [(None, None, "missing Host"), ("evil.example:8080", None, "not served"),
                                ("127.0.0.1:8080", "http://evil.example", "cross-origin"),
                                ("127.0.0.1:8080", "http://127.0.0.1:9999", "cross-origin"),
                                ("127.0.0.1:8080", "null", "cross-origin")]:
        assert words in routes.refusal(host, origin, loopback), (host, origin)
    everywhere = routes.allowed_hostnames("0.0.0.0")  # the user chose the network: any name, same origin
    assert everywhere is None and routes.refusal("10.1.2.3:8080", "http://10.1.2.3:8080", everywhere) is None
    assert "cross-origin" in routes.refusal("10.1.2.3:8080", "http://evil.example", everywhere)
    assert routes.allowed_hostnames("192.168.1.5") == routes.LOOPBACK_NAMES | {"192.168.1.5"}


# --- downloads -----------------------------------------------------------------------------------


def test_downloads_stay_inside_the_job_folder(tmp_path):
    results = _synthetic_results(tmp_path / "job" / "results")
    (tmp_path / "secret.txt").write_text("not yours")
    (results / "link.txt").symlink_to(tmp_path / "secret.txt")
    (results / "fgsm" / "up").symlink_to(tmp_path)
    assert downloads.resolve_download(results, "fgsm/adversarial.nrrd") == (results / "fgsm" / "adversarial.nrrd").resolve()
    for bad in ("../secret.txt", "fgsm/../../secret.txt", "/etc/passwd", "link.txt", "fgsm/up/secret.txt",
                "fgsm", "", "fgsm\\..\\..\\secret.txt", "report.json\x00.png", "missing.nrrd"):
        with pytest.raises(downloads.DownloadError):
            downloads.resolve_download(results, bad)


def test_download_list_and_archive(tmp_path):
    results = _synthetic_results(tmp_path / "results")
    listed = downloads.list_downloads(results)
    assert listed[:2] == ["report.html", "report.json"] and "fgsm/perturbation_hu.nrrd" in listed
    archive = downloads.write_archive(results, tmp_path / downloads.ARCHIVE_NAME)
    import zipfile

    assert sorted(zipfile.ZipFile(archive).namelist()) == sorted(listed)
    assert downloads.attachment_name("fgsm/adversarial.nrrd") == "fgsm_adversarial.nrrd"
    assert downloads.content_type(Path("report.json")) == "application/json"


# --- the attack form and the metrics -------------------------------------------------------------


def test_model_picker_lists_installed_models_enabled():
    items = {item["value"]: item for item in params.model_items()}
    assert items["demo-unet"]["props"]["disabled"] is False
    assert any(item["props"]["disabled"] and "not installed" in item["title"] for item in items.values())


def test_metrics_rows_for_the_page(tmp_path):
    report = json.loads((_synthetic_results(tmp_path) / "report.json").read_text())
    page = page_metrics(report)
    assert page["reference"] == "clean prediction" and not page["has_clean"]
    (fgsm,) = page["attacks"]
    rows = {row["organ"]: row for row in fgsm["rows"]}
    # Worst first, the mean last; the false positive is a row, as it counts in the mean.
    assert list(rows) == ["left adrenal gland", "liver", "spleen", "mean (organs)"]
    assert rows["liver"]["dice_attack"] == "0.800" and rows["liver"]["dice_change"] == "-0.200"
    assert "not in the reference: 1 voxels" in rows["left adrenal gland"]["note"]
    assert rows["liver"]["bar_attack"] == 80.0 and rows["mean (organs)"]["is_mean"]
    assert rows["mean (organs)"]["dice_attack"] == "0.567" == f"{report['attacks']['fgsm']['vs_reference']['mean_dice']:.3f}"
    assert rows["mean (organs)"]["hd95_attack"] == "3.0"  # over the rows that have one
    assert "214, 39, 40" in rows["liver"]["change_style"] and rows["spleen"]["change_style"]
    budget = {b["name"]: b["value"] for b in fgsm["budget"]}
    assert budget == {"L∞": "7.5 HU", "SSIM": "0.9876", "PSNR": "40.1 dB", "labels changed": "1.20%", "time": "3 s"}
    # With ground truth: clean columns, the change is against the clean Dice.
    clean = {"per_class": {"liver": {"dice": 0.95, "hd95_mm": 1.0, "ref_voxels": 900},
                           "spleen": {"dice": 0.9, "hd95_mm": 190.0, "ref_voxels": 300}}}
    page = page_metrics({**report, "clean_vs_ground_truth": clean, "reference": "ground truth"})
    rows = {row["organ"]: row for row in page["attacks"][0]["rows"]}
    assert page["has_clean"] and rows["liver"]["dice_change"] == "-0.150" and rows["spleen"]["dice_change"] == "+0.000"
    assert "stray voxels" in rows["spleen"]["note"]
    with pytest.raises(ValueError, match="no attack"):
        page_metrics({**report, "attacks": {}})


# --- the job runner (a stand-in engine run) -----------------------------------------------------


class FakeRun:
    """Behaves like EngineRun: runs for ``ticks`` polls, then finishes or fails."""

    outcome: Any = "results"
    ticks = 2

    def __init__(self, scene, volume, request, ground_truth, settings):
        self.settings, self.request = settings, request
        self.method = request.requests[0].split(",")[0] if request.requests else "segment"
        self.polls, self.cancelled = 0, False

    def start(self):
        if self.outcome == "bad input":
            raise ValueError("choose an input volume that has voxels")

    def poll(self):
        self.polls += 1
        return self.polls <= self.ticks

    fraction = 0.5

    def status(self):
        return f"{self.method}: 1/2"

    def cancel(self):
        self.cancelled = True

    def finish(self):
        if isinstance(self.outcome, Exception):
            raise self.outcome
        Path(self.settings.keep_folder).mkdir()
        (Path(self.settings.keep_folder) / "report.json").write_text("{}")
        return self.outcome


def _runner(tmp_path, outcome: Any = "results") -> jobs.JobRunner:
    run = type("Run", (FakeRun,), {"outcome": outcome})
    return jobs.JobRunner(tmp_path, run_factory=run)


def test_one_job_at_a_time_then_results_and_a_download_token(tmp_path):
    runner = _runner(tmp_path)
    runner.start(None, "volume", jobs.JobRequest(("fgsm,eps=0.1",)))
    assert runner.running and runner.results_folder is None and runner.fraction == 0.5
    with pytest.raises(jobs.JobBusy, match="already running .*Cancel"):
        runner.start(None, "volume", jobs.JobRequest(("pgd",)))
    while runner.poll():
        assert "fgsm: 1/2" in runner.message
    assert runner.collect() == "results" and runner.phase == jobs.DONE
    assert runner.results_folder.is_dir() and runner.results_folder.parent.name == f"job-{runner.token}"
    first, token = runner.results_folder.parent, runner.token
    # The next job keeps the last one's results (and downloads) until it succeeds itself...
    runner.start(None, "volume", jobs.JobRequest(("pgd",)))
    assert first.exists() and runner.token == token and runner.results_folder == first / jobs.RESULTS_DIR
    assert runner.cancel() and "the previous results are still shown" in runner.message
    assert first.exists() and runner.token == token and len(list(tmp_path.iterdir())) == 1
    runner.start(None, "volume", jobs.JobRequest(("fgsm",)))
    while runner.poll():
        pass
    runner.collect()  # ... and replaces them then
    assert not first.exists() and runner.token != token and runner.done_request.requests == ("fgsm",)
    assert jobs.JobRequest(("vafa:public-code,q_max=30", "fgsm")).title == "VAFA (public-code), q max 30 + FGSM"


def test_a_failed_job_reports_its_error_and_leaves_nothing(tmp_path):
    from FreqAdvSegmentLib.mrml.engine_process import EngineError

    runner = _runner(tmp_path, EngineError("the FreqAdvSegment engine failed (exit code 2):\nno CUDA GPU"))
    runner.start(None, "volume", jobs.JobRequest(("fgsm",)))
    while runner.poll():
        pass
    assert runner.collect() is None and runner.phase == jobs.FAILED and "no CUDA GPU" in runner.message
    assert runner.token is None and not list(tmp_path.iterdir())
    bad = _runner(tmp_path, "bad input")
    with pytest.raises(ValueError, match="voxels"):
        bad.start(None, None, jobs.JobRequest(("fgsm",)))
    assert bad.phase == jobs.FAILED and not bad.running and not list(tmp_path.iterdir())


def test_cancel_kills_the_run_and_frees_the_session(tmp_path):
    runner = _runner(tmp_path)
    assert not runner.cancel()
    runner.start(None, "volume", jobs.JobRequest(("vafa",)))
    run = runner._run
    assert runner.cancel() and run.cancelled and runner.phase == jobs.CANCELLED
    assert not runner.poll() and runner.collect() is None and not list(tmp_path.iterdir())
    runner.start(None, "volume", jobs.JobRequest(("fgsm",)))  # a new job may start at once
    assert runner.running


# --- the app's actions, without a server or a browser (stand-in engine) -------------------------


class ResultsRun(FakeRun):
    """A stand-in engine run whose results are the synthetic folder, loaded as EngineRun does."""

    def __init__(self, scene, volume, request, ground_truth, settings):
        super().__init__(scene, volume, request, ground_truth, settings)
        self.scene, self.volume = scene, volume

    def finish(self):
        from FreqAdvSegmentLib.mrml.results import load_results

        folder = _synthetic_results(Path(self.settings.keep_folder))
        return load_results(self.scene, folder, self.volume)


class SegmentRun(FakeRun):
    """A stand-in segment-only run: the model's labels (a phantom's) as a segmentation node."""

    def __init__(self, scene, volume, request, ground_truth, settings):
        super().__init__(scene, volume, request, ground_truth, settings)
        self.scene, self.volume = scene, volume
        assert request.kind == "segment" and not request.requests

    def finish(self):
        from FreqAdvSegmentLib.mrml.segmentations import segmentation_from_labels

        folder = Path(self.settings.keep_folder)
        folder.mkdir()
        labels = sitk.Image(self.volume.GetImageData().GetDimensions(), sitk.sitkUInt8)
        labels[10:30, 10:30, 10:20] = BTCV_LABELS.index("liver")
        sitk.WriteImage(labels, str(folder / "segmentation.nrrd"))
        return segmentation_from_labels(self.scene, labels, "segmentation", BTCV_LABELS, self.volume)


def test_app_actions_answer_clearly_and_keep_the_page_usable(tmp_path):
    from trame.app import get_server

    from FreqAdvSegmentLib.web.app import FreqAdvWebApp, ServeConfig, _reporting_errors

    app = FreqAdvWebApp(ServeConfig(work_dir=tmp_path), server=get_server("freqadv-actions-test", client_type="vue3"))
    state = app.state
    state.ready()  # as when a page connects: change listeners run from now on
    act = {name: _reporting_errors(app, getattr(app, name)) for name in ("run", "cancel", "load_sample", "load_upload")}

    async def scenario() -> None:
        act["run"]()
        assert "load a volume first" in state.fa_error
        act["load_upload"]({"error": "notes.txt is not a NIfTI"})
        assert "not a NIfTI" in state.fa_error and state.fa_upload_key == 1
        act["load_sample"]()
        assert "sample CT" in state.fa_input_info and not state.fa_error
        eps = params.state_key("fgsm", "eps")
        state.fa_chosen, state[eps] = ["fgsm"], "300"
        act["run"]()
        assert "FGSM eps (/255) must be between 0 and 255" in state.fa_error and not state.fa_running
        state[eps] = "4"
        # VAFA 10 steps + PGD 20 in one run: the CLI takes one request each, so it is accepted.
        state.fa_chosen, state[params.state_key("vafa", "steps")] = ["vafa", "pgd"], "10"
        assert app._job_request().requests == ("vafa,steps=10", "pgd")
        state.fa_chosen, state.fa_error = ["fgsm"], ""
        # A preset fills its attack's fields.
        state[params.preset_key("vafa")] = "public-code"
        state.flush()
        assert state[params.state_key("vafa", "q_min")] == "5" and state[params.state_key("vafa", "q_init")] == "20"
        app.jobs = jobs.JobRunner(tmp_path / "jobs", run_factory=ResultsRun)
        act["run"]()
        assert state.fa_running and state.fa_phase == "running" and state.fa_run_title == "FGSM"
        act["run"]()  # a second request while the first runs
        assert "already running" in state.fa_notice and "Cancel" in state.fa_notice
        act["load_sample"]()
        assert "cancel it before" in state.fa_notice
        await app._watcher
        assert state.fa_phase == "done" and not state.fa_running and not state.fa_error
        shown = state.fa_metrics["attacks"][0]
        assert [row["organ"] for row in shown["rows"]] == ["left adrenal gland", "liver", "spleen", "mean (organs)"]
        assert state.fa_shown_attack == "fgsm" and state.fa_perturbation_hu > 0
        assert {"liver", "spleen"} <= {s["name"] for s in state.fa_legend}
        clean = sitk.GetArrayFromImage(sitk.ReadImage(str(app.jobs.results_folder / "clean_labels.nrrd")))
        assert state.fa_changed["fgsm"] == int((clean[:, :, 9] > 0).sum()) > 50  # the eroded plane x = 9
        assert state.fa_has_truth
        urls = [d["url"] for d in state.fa_downloads]
        assert f"freqadv/download/{app.jobs.token}/report.json" in urls
        assert state.fa_archive["url"] == f"freqadv/download/{app.jobs.token}/{downloads.ARCHIVE_NAME}"
        # A failing job: its error on the page, nothing running, the previous results still there.
        token = app.jobs.token
        app.jobs._factory = type("Run", (FakeRun,), {"outcome": RuntimeError("the engine failed (exit code 2):\nboom")})
        act["run"]()
        await app._watcher
        assert "boom" in state.fa_error and state.fa_phase == "failed" and not state.fa_running
        assert state.fa_metrics["attacks"][0]["label"] == "fgsm" and token in state.fa_archive["url"]
        assert app.jobs.results_folder.is_dir() and app.viewer.results is not None
        # Segment only: the segmentation and its colour key, no attack results.
        app.jobs._factory = SegmentRun
        _reporting_errors(app, app.segment)()
        assert state.fa_run_title == "segmentation"
        await app._watcher
        assert state.fa_phase == "done" and state.fa_metrics is None and not state.fa_error
        assert [s["name"] for s in state.fa_legend] == ["liver"] and app.viewer.results is None
        assert state.fa_archive and "segmentation.nrrd" in [d["name"] for d in state.fa_downloads]

    try:
        asyncio.run(scenario())
    finally:
        app.close()
        for view in app.slicer.view_manager.get_views():
            view.finalize()


# --- the scene behind the page (real trame-slicer scene, offscreen views) -----------------------


@pytest.fixture
def viewer_app():
    from trame_slicer.core import SlicerApp
    from trame_slicer.views import DirectViewFactory, NoScheduleRendering

    from FreqAdvSegmentLib.web.viewer import SceneViewer, comparison_layout

    app = SlicerApp()
    app.view_manager.register_factory(DirectViewFactory(do_render_offscreen=True))
    for view in comparison_layout().get_views(is_recursive=True):
        # Render only when a test asks: rendering each of five views on every change is slow.
        app.view_manager.create_view(view).set_scheduled_render(NoScheduleRendering())
    viewer = SceneViewer(app.scene, app.view_manager)
    viewer.link_slice_sliders(app.app_logic)
    viewer.mark_baseline()
    yield app, viewer
    for view in app.view_manager.get_views():
        view.finalize()


def test_viewer_shows_results_in_the_comparison_views(viewer_app, tmp_path):
    from FreqAdvSegmentLib.mrml.results import load_results
    from FreqAdvSegmentLib.mrml.views import ADVERSARIAL_SLICE, CLEAN_SLICE, PERTURBATION_SLICE
    from FreqAdvSegmentLib.web.viewer import CHANGES_SLICE, CLEAN_3D

    app, viewer = viewer_app
    baseline = app.scene.GetNumberOfNodes()
    folder = _synthetic_results(tmp_path / "out")
    ct = sitk.ReadImage(str(folder / "fgsm" / "adversarial.nrrd"))
    labels = sitk.ReadImage(str(folder / "clean_labels.nrrd"))
    loaded = viewer.load_input(ct, "phantom", labels)
    assert loaded.size == (24, 24, 24) and not loaded.ground_truth.GetDisplayNode().GetVisibility()
    with_input = app.scene.GetNumberOfNodes()
    results = load_results(app.scene, folder, loaded.volume, loaded.ground_truth)
    viewer.show_results(results)
    views = {v.get_singleton_tag(): v for v in app.view_manager.get_views()}
    assert views[ADVERSARIAL_SLICE].get_background_volume_id() == results.adversarial_volume.GetID()
    # Where it broke: the clean CT under a label map that is red exactly where the labels changed.
    composite = app.scene.GetNodeByID(f"vtkMRMLSliceCompositeNode{CHANGES_SLICE}")
    changes = app.scene.GetNodeByID(composite.GetLabelVolumeID())
    assert views[CHANGES_SLICE].get_background_volume_id() == loaded.volume.GetID()
    clean_labels = sitk.GetArrayFromImage(labels)
    assert viewer.changed["fgsm"] == int((clean_labels[:, :, 9] > 0).sum()) > 50
    from vtkmodules.util import numpy_support

    marked = numpy_support.vtk_to_numpy(changes.GetImageData().GetPointData().GetScalars()).reshape(clean_labels.shape)
    assert (marked[:, :, 9] == (clean_labels[:, :, 9] > 0)).all() and marked[:, :, :9].sum() == 0
    red = _render(views[CHANGES_SLICE])[..., :3].astype(int)
    assert ((red[..., 0] > 200) & (red[..., 1] < 60) & (red[..., 2] < 60)).sum() > 20, "no red label change drawn"
    assert views[PERTURBATION_SLICE].get_foreground_volume_id() == results.perturbation_volume.GetID()
    # Linked slices: the clean view's slider moves the other two.
    red = views[CLEAN_SLICE]
    red.set_slice_value(red.get_slice_value() + 4.0)
    assert views[ADVERSARIAL_SLICE].get_slice_value() == views[PERTURBATION_SLICE].get_slice_value() == red.get_slice_value()
    # The clean 3D view (not named "1", see viewer.py) shows the clean segmentation's surfaces.
    assert results.clean_segmentation.GetDisplayNode().IsDisplayableInView(f"vtkMRMLViewNode{CLEAN_3D}")
    pixels = _render(views[CLEAN_3D])
    assert _organ_pixels(pixels, tolerance=60)["liver"] > 50, "no liver-coloured surface in the clean 3D view"
    viewer.remove_results()
    assert app.scene.GetNumberOfNodes() == with_input and viewer.results is None
    viewer.clear()
    assert app.scene.GetNumberOfNodes() == baseline and viewer.input is None


def _two_attacks(folder: Path) -> Path:
    """The synthetic folder with a second attack, "pgd", that changed nothing."""
    _synthetic_results(folder)
    report = json.loads((folder / "report.json").read_text())
    (folder / "pgd").mkdir()
    for name in ("adversarial", "perturbation_hu"):
        shutil.copy(folder / f"fgsm/{name}.nrrd", folder / f"pgd/{name}.nrrd")
    shutil.copy(folder / "clean_labels.nrrd", folder / "pgd/adversarial_labels.nrrd")
    report["files"].update({f"pgd/{n}": f"pgd/{n}.nrrd" for n in ("adversarial", "perturbation_hu", "adversarial_labels")})
    report["attacks"]["pgd"] = {**report["attacks"]["fgsm"], "method": "pgd"}
    (folder / "report.json").write_text(json.dumps(report))
    return folder


def test_several_attacks_one_shown_at_a_time_and_linked_3d_cameras(viewer_app, tmp_path):
    from FreqAdvSegmentLib.mrml.results import load_results
    from FreqAdvSegmentLib.mrml.views import ADVERSARIAL_SLICE
    from FreqAdvSegmentLib.web.viewer import CHANGES_SLICE

    app, viewer = viewer_app
    folder = _two_attacks(tmp_path / "out")
    loaded = viewer.load_input(sitk.ReadImage(str(folder / "fgsm" / "adversarial.nrrd")), "phantom")
    results = load_results(app.scene, folder, loaded.volume)
    viewer.show_results(results)
    assert viewer.attack == "fgsm" and viewer.changed["fgsm"] > 50 and viewer.changed["pgd"] == 0
    views = {v.get_singleton_tag(): v for v in app.view_manager.get_views()}
    composite = app.scene.GetNodeByID(f"vtkMRMLSliceCompositeNode{CHANGES_SLICE}")
    viewer.show_attack("pgd")
    assert viewer.attack == "pgd" and composite.GetLabelVolumeID() == viewer.changes["pgd"].GetID()
    assert views[ADVERSARIAL_SLICE].get_background_volume_id() == results.attack_nodes("pgd").adversarial_volume.GetID()
    assert not results.attack_nodes("fgsm").adversarial_segmentation.GetDisplayNode().GetVisibility()
    # The window applies to the clean and every adversarial CT alike.
    viewer.set_window(1500.0, -600.0)
    for volume in (loaded.volume, *(a.adversarial_volume for a in results.attacks.values())):
        assert (volume.GetDisplayNode().GetWindow(), volume.GetDisplayNode().GetLevel()) == (1500.0, -600.0)
    # Turning one 3D view turns the other.
    viewer.link_cameras()
    first, second = app.view_manager.get_threed_views()
    camera = first.renderer().GetActiveCamera()
    camera.Azimuth(40.0)
    camera.Elevation(10.0)
    other = second.renderer().GetActiveCamera()
    assert np.allclose(other.GetPosition(), camera.GetPosition()) and np.allclose(other.GetViewUp(), camera.GetViewUp())
    other.Zoom(1.5)
    assert np.isclose(camera.GetViewAngle(), other.GetViewAngle()) and np.allclose(camera.GetPosition(), other.GetPosition())


def test_hu_readout_reads_the_voxel_under_a_slice_view_pixel(viewer_app, tmp_path):
    import vtk

    from FreqAdvSegmentLib.mrml.views import CLEAN_SLICE
    from FreqAdvSegmentLib.web.hu_readout import readout, slice_point, voxel_value

    app, viewer = viewer_app
    folder = _synthetic_results(tmp_path / "out")
    ct = sitk.ReadImage(str(folder / "fgsm" / "adversarial.nrrd"))
    loaded = viewer.load_input(ct, "phantom")
    array = sitk.GetArrayFromImage(ct)
    to_ras = vtk.vtkMatrix4x4()
    loaded.volume.GetIJKToRASMatrix(to_ras)
    for i, j, k in ((3, 4, 5), (9, 12, 12), (23, 0, 7)):
        ras = to_ras.MultiplyPoint((i, j, k, 1.0))[:3]
        assert voxel_value(loaded.volume, ras) == pytest.approx(float(array[k, j, i]), abs=1e-4)
    assert voxel_value(loaded.volume, (1e4, 0.0, 0.0)) is None
    view = {v.get_singleton_tag(): v for v in app.view_manager.get_slice_views()}[CLEAN_SLICE]
    node = view.get_view_node()
    width, height, _ = node.GetDimensions()
    ras = slice_point(node, width / 2, height / 2)
    assert ras[2] == pytest.approx(node.GetSliceOffset(), abs=1e-3)  # on the slice on show
    assert readout((12.34, -5.0, 30.0), {"clean": 42.2, "fgsm": None}) == "R 12.3, P 5.0, S 30.0 mm: clean 42 HU"


def _render(view: Any) -> np.ndarray:
    import vtk
    from vtkmodules.util import numpy_support

    window = view.render_window()
    window.SetSize(300, 300)
    view.fit_view_to_content()
    window.Render()
    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.Update()
    image = grab.GetOutput()
    width, height, _ = image.GetDimensions()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)


# --- a real server -------------------------------------------------------------------------------


class Server:
    """``python -m FreqAdvSegmentLib.web --port 0`` in a child process, on loopback."""

    def __init__(self, work_dir: Path) -> None:
        command = [sys.executable, "-m", "FreqAdvSegmentLib.web", "--port", "0", "--host", "127.0.0.1",
                   "--max-upload-mb", "8", "--work-dir", str(work_dir), "--method", "fgsm", "--device", "cpu"]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=work_dir,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.url = self._wait_for_url(timeout=300)  # a loaded machine takes minutes to start VTK
        self.host = self.url.split("//")[1].rstrip("/")

    def _read(self) -> None:
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace")
            self.log.append(line)
            self.lines.put(line)

    def _wait_for_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            match = re.search(r"the viewer is at (http://127\.0\.0\.1:\d+/)", line)
            if match:
                return match.group(1)
        self.stop()
        raise AssertionError("the server did not start:\n" + "".join(self.log[-40:]))

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", int(self.host.split(":")[1]), timeout=30)
        try:
            connection.request(method, path, body=body, headers={"Host": self.host, **(headers or {})})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def server():
    work_dir = Path(tempfile.mkdtemp(prefix="freqadv-web-test-"))
    server = Server(work_dir)
    yield server
    server.stop()
    shutil.rmtree(work_dir, ignore_errors=True)


def test_server_serves_the_page_on_loopback_only(server):
    status, body = server.request("GET", "/index.html")
    assert status == 200 and b"<html" in body.lower()
    # A DNS-rebinding page (its own host name) and another site's script are refused.
    assert server.request("GET", "/index.html", headers={"Host": f"evil.example:{server.host.split(':')[1]}"})[0] == 403
    assert server.request("GET", "/index.html", headers={"Origin": "http://evil.example"})[0] == 403
    assert server.request("GET", "/index.html", headers={"Origin": f"http://{server.host}"})[0] == 200


@pytest.fixture(scope="module")
def page_token(server) -> str:
    """The upload token, read where the page reads it: the trame state, in a browser."""
    browser = _browser_or_skip()
    try:
        browser.get(server.url)
        return _wait(browser, "return window.trame && window.trame.state && window.trame.state.get('fa_upload_token')", 60, "the token")
    finally:
        browser.quit()


def test_server_checks_uploads_before_storing_them(server, page_token):
    def upload(name: str, body: bytes, token: str = page_token, length: int | None = None) -> tuple[int, dict]:
        headers = {routes.TOKEN_HEADER: token, **({"Content-Length": str(length)} if length is not None else {})}
        status, reply = server.request("POST", f"{routes.UPLOAD_PATH}?name={name}", body, headers)
        return status, json.loads(reply or b"{}")

    assert upload("ct.nii", b"x" * 400, token="forged")[0] == 403
    assert upload("notes.txt", b"x" * 400)[0] == 415
    assert upload("ct.nii", b"x" * 400)[0] == 415
    status, reply = upload("ct.nii.gz", gzip.compress(_nifti_header((9000, 9000, 9000))))
    assert status == 413 and "voxels" in reply["error"]
    status, reply = upload("ct.nii", b"", length=50 * 2**20)  # declared too large: refused unread
    assert status == 413 and "limited" in reply["error"]
    status, reply = upload("ct.nii.gz", sample_ct_path().read_bytes())
    assert status == 200 and re.fullmatch(r"[0-9a-f]{24}", reply["id"])
    status, reply = upload("series.zip", b"PK\x03\x04 not a zip" * 30)
    assert status == 415 and "not a zip" in reply["error"]


def test_server_tells_the_page_where_its_websocket_is(server):
    """trame's page asks /paraview/ first; a 405 there is a console error on every load."""
    status, body = server.request("POST", routes.LAUNCHER_PATH, b"{}", {"Referer": f"http://{server.host}/"})
    assert status == 200 and json.loads(body) == {"sessionURL": "ws://USE_HOST/ws"}
    assert routes.websocket_url("https://example.org/viewer/index.html") == "ws://USE_HOST/viewer/ws"


def test_server_has_no_downloads_before_a_job(server):
    assert server.request("GET", "/freqadv/download/anything/report.json")[0] == 404
    assert server.request("GET", "/freqadv/download/anything/../../etc/passwd")[0] == 404


# --- the browser ---------------------------------------------------------------------------------


def _browser_or_skip() -> Any:
    """Headless Debian Chromium through selenium; skip (or fail, with FREQADV_REQUIRE_BROWSER)."""
    missing = [p for p in ("/usr/bin/chromium", "/usr/bin/chromedriver") if not Path(p).exists()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (pip install selenium)")
    if missing:
        message = f"browser test needs {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if os.environ.get("FREQADV_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", f"--user-data-dir={tempfile.mkdtemp(prefix='freqadv-chromium-')}",
                     "--window-size=1600,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, for its errors
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def _wait(browser: Any, script: str, timeout: float, what: str = "") -> Any:
    """Poll a JavaScript expression until it is truthy; its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = browser.execute_script(script)
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or script}")


def _text(browser: Any, element_id: str) -> str:
    return browser.execute_script(f"const e = document.getElementById('{element_id}'); return e ? e.innerText : ''")


def _wait_text(browser: Any, element_id: str, words: str, timeout: float) -> str:
    return _wait(browser, f"const e = document.getElementById('{element_id}'); "
                          f"return e && e.innerText.includes({json.dumps(words)}) ? e.innerText : ''",
                 timeout, f"#{element_id} to say {words!r}")


def _click(browser: Any, element_id: str) -> None:
    from selenium.webdriver.common.by import By

    _wait(browser, f"const e = document.getElementById('{element_id}'); return e && !e.disabled", 30,
          f"#{element_id} to be enabled")
    browser.find_element(By.ID, element_id).click()


def _choose(browser: Any, select_id: str, item: str) -> None:
    """Pick ``item`` in a Vuetify select: open its menu, click the entry."""
    from selenium.webdriver.common.by import By

    # The input itself sits under Vuetify's field overlay: click the field, as a person would.
    browser.find_element(By.ID, select_id).find_element(By.XPATH, "./ancestor::div[contains(@class, 'v-field')][1]").click()
    entry = f"//div[contains(concat(' ', @class, ' '), ' v-list-item ') and normalize-space(.)='{item}']"
    _wait(browser, f"return document.evaluate(\"{entry}\", document, null, 9, null).singleNodeValue", 10, item)
    time.sleep(0.6)  # let the menu's opening transition end: until then its entries overlap
    browser.find_element(By.XPATH, entry).click()
    _wait(browser, f"return document.getElementById('{select_id}').closest('.v-select').innerText.includes('{item}')",
          10, f"{item} chosen")


def _shots_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("FREQADV_WEB_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _type_into(browser: Any, element_id: str, text: str) -> None:
    """Click a field, select its text and type over it, as a person does (the field keeps focus)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    field = browser.find_element(By.ID, element_id)
    field.click()
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(text)


def test_browser_upload_sample_attack_results_and_downloads(server, tmp_path):
    import torch
    from PIL import Image
    from selenium.webdriver.common.by import By

    browser = _browser_or_skip()
    shots = _shots_dir(tmp_path)
    try:
        _viewport(browser, 1600, 1000)
        browser.get(server.url)
        _wait(browser, "return document.getElementById('fa-load-sample')", 60, "the page")
        accept = browser.find_element(By.CSS_SELECTOR, "input[type=file]").get_attribute("accept")
        assert ".nii.gz" in accept and ".nrrd" in accept, f"the file picker's accept is {accept!r}"

        # Upload: a wrong type is refused with a message, a NIfTI is loaded.
        notes = tmp_path / "notes.txt"
        notes.write_text("not a volume")
        browser.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(notes))
        _wait_text(browser, "fa-error", "is not a NIfTI", 30)
        browser.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(sample_ct_path()))
        _wait_text(browser, "fa-input-info", "patientA_ct.nii.gz, 122 x 101 x 112", 60)
        # Its labels, as a second upload: checked against the CT's grid, then the reference.
        browser.find_element(By.CSS_SELECTOR, "#fa-upload-labels").send_keys(str(sample_labels_path()))
        _wait_text(browser, "fa-input-info", "with labels patientA_labels.nii.gz", 60)
        assert _state(browser, "fa_has_truth")
        errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, f"errors in the browser's console: {errors}"

        # The sample, with its reference labels.
        _click(browser, "fa-load-sample")
        _wait_text(browser, "fa-input-info", "sample CT", 60)
        assert "no attack result yet" in _text(browser, "fa-views"), "result views must not show the clean CT"

        # A failing job (no CUDA here) shows the engine's error; the page stays usable.
        if not torch.cuda.is_available():
            _choose(browser, "fa-device", "cuda")
            _click(browser, "fa-run")
            _wait_text(browser, "fa-error", "no CUDA GPU", 120)
            assert "failed" in _text(browser, "fa-status")
            _choose(browser, "fa-device", "cpu")

        # Edit a field, then press Run at once (the field still focused): the run must start.
        assert _state(browser, "fa_chosen") == ["fgsm"], "the server was started with --method fgsm"
        _type_into(browser, "fa-param-fgsm-eps", "6")
        _click(browser, "fa-run")
        _wait(browser, "return !document.getElementById('fa-cancel').disabled", 30, "a running job after editing a field")
        assert browser.find_element(By.ID, "fa-run").get_attribute("disabled"), "Run must be disabled while a job runs"
        _click(browser, "fa-cancel")
        _wait_text(browser, "fa-status", "cancelled", 30)

        # The real run: FGSM (one step) on the CPU, with progress, then the results.
        _type_into(browser, "fa-param-fgsm-eps", "4")
        _click(browser, "fa-run")
        _wait(browser, "const p = document.getElementById('fa-progress'); return p && p.offsetParent !== null",
              30, "the progress bar")
        _wait(browser, "return document.querySelectorAll('#fa-metrics-table tbody tr').length", 300, "the metrics table")
        _check_metrics_table(browser)
        assert "done" in _text(browser, "fa-status")
        assert re.search(r"−\d+(\.\d)? HU", _text(browser, "fa-perturbation-legend")), "no perturbation colour scale"
        assert re.search(r"L∞: \d+\.\d HU", _text(browser, "fa-budget")) and "SSIM" in _text(browser, "fa-budget")

        # The views: segment colours in the slice and 3D views (rendered server-side, streamed).
        views = browser.find_element(By.ID, "fa-views")
        deadline, counts, red = time.monotonic() + 40, {}, 0
        while time.monotonic() < deadline:
            views.screenshot(str(shots / "freqadv-web-views.png"))
            views_rgb = np.asarray(Image.open(shots / "freqadv-web-views.png").convert("RGB"))
            counts = _organ_pixels(views_rgb)
            red = _red_pixels(_view_pixels(browser, views_rgb, "where it broke"))
            if sum(n >= 200 for n in counts.values()) >= 4 and red >= 30:
                break
            time.sleep(1)
        browser.save_screenshot(str(shots / "freqadv-web-page-1600x1000.png"))
        assert sum(n >= 200 for n in counts.values()) >= 4, f"too few segment colours in the views: {counts}"
        assert red >= 30, f"the label-change view shows {red} red pixels after an FGSM run"
        _check_perturbation_colours(browser, views_rgb)
        assert "S " in _text(browser, "fa-views") and " mm" in _text(browser, "fa-views"), "no slice position"

        _check_probe(browser)
        _check_downloads(browser, server, tmp_path)
        _check_legend(browser, server)
        _check_small_window(browser, shots)
    finally:
        browser.quit()


def _viewport(browser: Any, width: int, height: int) -> None:
    """The page's own size (the window's includes the browser's frame)."""
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


def _check_probe(browser: Any) -> None:
    """Moving the mouse over the clean slice view reads the HU under it, clean and adversarial."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    title = next(e for e in browser.find_elements(By.CLASS_NAME, "fa-title") if e.text.startswith("clean CT"))
    view = title.find_element(By.XPATH, "./ancestor::div[contains(@class, 'layout-grid-item')][1]")
    ActionChains(browser).move_to_element_with_offset(view, -10, 0).pause(0.3).move_by_offset(20, 5).perform()
    text = _wait_text(browser, "fa-probe", " HU", 20)
    assert re.search(r"S -?\d+\.\d mm: clean -?\d+ HU, fgsm -?\d+ HU", text), text


def _state(browser: Any, name: str) -> Any:
    return browser.execute_script(f"return window.trame.state.get('{name}')")


def _red_pixels(rgb: np.ndarray) -> int:
    """Pure red pixels (the label-change colour; no organ and no CT grey is that red)."""
    return int(((rgb[..., 0] > 180) & (rgb[..., 1] < 70) & (rgb[..., 2] < 70)).sum())


def _view_pixels(browser: Any, views_rgb: np.ndarray, title_start: str) -> np.ndarray:
    """The part of the views' screenshot showing the view whose title starts with ``title_start``."""
    left, top, width, height = browser.execute_script(
        "const box = document.getElementById('fa-views').getBoundingClientRect();"
        f"const title = [...document.querySelectorAll('.fa-title')].find(e => e.innerText.startsWith('{title_start}'));"
        "const r = title.closest('.layout-grid-item').getBoundingClientRect();"
        "return [r.left - box.left, r.top - box.top, r.width, r.height].map(Math.round);")
    return views_rgb[top:top + height, left:left + width].astype(int)


def _check_perturbation_colours(browser: Any, views_rgb: np.ndarray) -> None:
    """The perturbation view tints the CT both ways (diverging map); the clean view is grey but for
    a few blue segments."""
    def tinted(rgb: np.ndarray) -> tuple[int, int]:
        red_minus_blue = rgb[..., 0] - rgb[..., 2]
        return int((red_minus_blue > 12).sum()), int((red_minus_blue < -12).sum())

    red, blue = tinted(_view_pixels(browser, views_rgb, "perturbation"))
    _, clean_blue = tinted(_view_pixels(browser, views_rgb, "clean CT"))
    assert red > 1000 and blue > 1000 and blue > 3 * clean_blue, (red, blue, clean_blue)


def _table(browser: Any) -> tuple[list[str], list[list[str]]]:
    return browser.execute_script(
        "const t = document.getElementById('fa-metrics-table');"
        "return [[...t.querySelectorAll('thead th')].map(c => c.innerText.trim()),"
        "        [...t.querySelectorAll('tbody tr')].map(r => [...r.querySelectorAll('td')].map(c => c.innerText.trim()))]")


def _check_metrics_table(browser: Any) -> None:
    heads, rows = _table(browser)
    assert heads == ["organ", "Dice clean", "Dice fgsm", "change", "HD95 clean (mm)", "HD95 fgsm (mm)"], heads
    table = {row[0].rstrip(" *"): dict(zip(heads[1:], row[1:])) for row in rows}
    assert {"liver", "spleen", "aorta"} <= set(table) and rows[-1][0] == "mean (organs)", table
    assert "vs the ground truth" in _text(browser, "fa-metrics")  # the sample's labels are the reference
    organs = [table[row[0].rstrip(" *")] for row in rows[:-1]]
    mean = table["mean (organs)"]
    # The mean shown is the mean of the rows shown (to the 3 decimals shown), for every Dice column.
    for column in ("Dice clean", "Dice fgsm"):
        values = [float(r[column]) for r in organs if r[column] != "–"]
        assert abs(sum(values) / len(values) - float(mean[column])) < 1e-3, (column, values, mean)
    changes = [float(r["change"]) for r in organs if r["change"] != "–"]
    assert changes == sorted(changes), "rows must be sorted worst first"
    for r in organs:  # the change is attack - clean, negative when the Dice fell
        if r["change"] != "–":
            assert abs(float(r["Dice fgsm"]) - float(r["Dice clean"]) - float(r["change"])) < 2e-3, r
    bars = browser.execute_script("return document.querySelectorAll('#fa-dice-chart .fa-bar-attack').length")
    assert bars == len(rows)


def _check_legend(browser: Any, server: Server) -> None:
    """The colour key names every organ of the clean segmentation (its label map, downloaded)."""
    links = browser.execute_script("return [...document.querySelectorAll('#fa-downloads a')].map(a => a.href)")
    labels_url = next(u for u in links if "/clean_labels." in u)
    status, body = server.request("GET", labels_url.split(server.host, 1)[1])
    assert status == 200
    with tempfile.NamedTemporaryFile(suffix=".nrrd") as f:
        f.write(body)
        f.flush()
        present = {BTCV_LABELS[v] for v in np.unique(sitk.GetArrayFromImage(sitk.ReadImage(f.name))) if v > 0}
    named = set(browser.execute_script(
        "return [...document.querySelectorAll('#fa-legend .fa-organ-name')].map(e => e.innerText.trim())"))
    assert present and present <= named, f"organs without a colour key: {present - named}"


def _check_downloads(browser: Any, server: Server, tmp_path: Path) -> None:
    """One zip holds the whole result; its report.html shows every figure; nothing else leaks."""
    import zipfile

    archive_url = browser.find_element("id", "fa-download-all").get_attribute("href")
    path = archive_url.split(server.host, 1)[1]
    status, body = server.request("GET", path)
    assert status == 200
    (tmp_path / "all.zip").write_bytes(body)
    with zipfile.ZipFile(tmp_path / "all.zip") as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "unzipped")
    assert {"report.html", "report.json", "scene.mrb", "fgsm/adversarial.nrrd"} <= names, sorted(names)
    sources = re.findall(r"<img src='([^']+)'", (tmp_path / "unzipped" / "report.html").read_text())
    assert sources and set(sources) <= names, (sources, sorted(names))
    main_window = browser.current_window_handle
    browser.switch_to.new_window("tab")
    try:
        browser.get((tmp_path / "unzipped" / "report.html").as_uri())
        images = _wait(browser, "const i = [...document.images]; return i.length && i.every(e => e.complete) && "
                                "i.map(e => e.naturalWidth)", 20, "the report's images")
        assert len(images) == len(sources) and all(w > 0 for w in images), f"broken images in report.html: {images}"
    finally:
        browser.close()
        browser.switch_to.window(main_window)
    token_dir = path.rsplit("/", 1)[0]
    for probe in ("../../uploads", "..%2F..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "fgsm/../../job.txt"):
        assert server.request("GET", f"{token_dir}/{probe}")[0] == 404, probe
    assert server.request("GET", path.replace(token_dir.rsplit("/", 1)[1], "not-the-token"))[0] == 404


def _check_small_window(browser: Any, shots: Path) -> None:
    """At 800 x 600 the views keep the width; the panels open from the app bar, over them."""
    _viewport(browser, 800, 600)
    width = _wait(browser, "const w = document.getElementById('fa-views').getBoundingClientRect().width; "
                           "return w > 700 ? w : 0", 20, "the views to take the width")
    browser.save_screenshot(str(shots / "freqadv-web-page-800x600.png"))
    _click(browser, "fa-open-results")
    _wait(browser, "const p = document.getElementById('fa-results-panel'); "
                   "const r = p.getBoundingClientRect(); return r.right > 700 && r.left < 500", 10, "the results panel")
    time.sleep(0.5)
    browser.save_screenshot(str(shots / "freqadv-web-page-800x600-results.png"))
    assert width > 700


def test_server_log_has_no_tracebacks(server):
    """Everything above went through the server; none of it may have crashed an action."""
    log = "".join(server.log)
    assert "Traceback" not in log and "Exception in" not in log, log[-3000:]
