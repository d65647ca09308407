"""End-to-end `freqadv` runs on the shipped sample CT with the shipped demo model (small settings)."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from FreqAdvSegmentLib.cli import main
from FreqAdvSegmentLib.samples.sample_data import sample_ct_path, sample_labels_path

CT = str(sample_ct_path())
LABELS = str(sample_labels_path())


def _sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing())
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-4)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)
    )


@pytest.fixture(scope="module")
def attack_run(tmp_path_factory):
    """`freqadv attack` with ground truth, VAFA and PGD, 2 steps each."""
    out = tmp_path_factory.mktemp("cli") / "attack"
    before = (_sha(CT), _sha(LABELS))
    rc = main(["attack", CT, "--labels", LABELS, "--method", "vafa", "--method", "pgd", "--steps", "2",
               "--q-init", "20", "--device", "cpu", "-o", str(out)])
    return rc, out, before


def test_attack_writes_every_output(attack_run):
    rc, out, before = attack_run
    assert rc == 0
    assert before == (_sha(CT), _sha(LABELS)), "inputs must never be modified"
    for name in ("clean_labels.nii.gz", "report.json", "report.html", "figures/dice.png",
                 "figures/spectrum.png", "figures/vafa_slices.png", "figures/pgd_slices.png"):
        assert (out / name).is_file(), name
    for attack in ("vafa", "pgd"):
        for name in ("adversarial", "perturbation_hu", "adversarial_labels"):
            assert (out / attack / f"{name}.nii.gz").is_file()
    assert not list(out.parent.glob(".*tmp*")), "no temporary folder may be left behind"


def test_outputs_sit_on_the_input_grid(attack_run):
    _, out, _ = attack_run
    ct = sitk.ReadImage(CT)
    for name in ("clean_labels.nii.gz", "vafa/adversarial.nii.gz", "vafa/perturbation_hu.nii.gz", "pgd/adversarial_labels.nii.gz"):
        assert _same_grid(sitk.ReadImage(str(out / name)), ct), name
    adv = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "pgd/adversarial.nii.gz")))
    delta = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "pgd/perturbation_hu.nii.gz")))
    original = sitk.GetArrayFromImage(ct).astype(np.float32)
    np.testing.assert_allclose(adv, original + delta, atol=0.05)
    # PGD's L-inf budget 4/255 on the 425 HU window is 6.7 HU; linear resampling cannot exceed it.
    assert 0 < np.abs(delta).max() <= 4 / 255 * 425 + 1e-3


def test_report_contents(attack_run):
    _, out, _ = attack_run
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["reference"] == "ground truth"
    assert report["clean_vs_ground_truth"]["mean_dice"] > 0.5, "the demo model must segment its sample"
    assert set(report["attacks"]) == {"vafa", "pgd"}
    for attack in report["attacks"].values():
        assert 0 <= attack["vs_reference"]["mean_dice"] <= 1
        assert len(attack["history"]) == 2
        assert set(attack["perturbation"]) >= {"linf", "l2", "psnr_db", "ssim", "band_energy"}
    assert report["attacks"]["vafa"]["params"]["q_init"] == 20
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "figures/vafa_slices.png" in page and "<table id=\"summary\">" in page and "liver" in page


def test_attack_without_labels_targets_clean_prediction(tmp_path):
    out = tmp_path / "nolabels"
    assert main(["attack", CT, "--method", "fgsm", "--eps", "8/255", "--device", "cpu", "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["reference"] == "clean prediction" and report["clean_vs_ground_truth"] is None
    fgsm = report["attacks"]["fgsm"]
    assert fgsm["vs_reference"]["mean_dice"] == pytest.approx(fgsm["vs_clean_prediction"]["mean_dice"])
    assert fgsm["vs_reference"]["mean_dice"] < 1.0
    assert fgsm["params"]["eps"] == pytest.approx(8 / 255)


def test_segment_a_dicom_series(tmp_path):
    """A DICOM series written here, read back by `freqadv segment`; labels land on its grid."""
    ct = sitk.ReadImage(CT)[:, :, 40:72]
    folder = tmp_path / "dicom"
    folder.mkdir()
    _write_dicom_series(sitk.Cast(ct, sitk.sitkInt16), folder)
    out = tmp_path / "seg"
    assert main(["segment", str(folder), "--device", "cpu", "-o", str(out)]) == 0
    labels = sitk.ReadImage(str(out / "segmentation.nii.gz"))
    assert _same_grid(labels, ct)
    assert len(np.unique(sitk.GetArrayFromImage(labels))) > 3, "organs must be found in the series"


def _write_dicom_series(image: sitk.Image, folder: Path) -> None:
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = image.GetDirection()
    series_tags = [
        ("0008|0060", "CT"),
        ("0020|000e", "1.2.826.0.1.3680043.2.1125.1.4242"),
        ("0020|000d", "1.2.826.0.1.3680043.2.1125.1.4243"),
        ("0020|0037", "\\".join(str(v) for v in direction[0:3] + direction[3:6])),
        ("0028|1052", "0"),
        ("0028|1053", "1"),
    ]
    for k in range(image.GetDepth()):
        s = image[:, :, k]
        for tag, value in series_tags:
            s.SetMetaData(tag, value)
        s.SetMetaData("0020|0032", "\\".join(str(v) for v in image.TransformIndexToPhysicalPoint((0, 0, k))))
        s.SetMetaData("0020|0013", str(k))
        s.SetMetaData("0018|0050", str(image.GetSpacing()[2]))
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(s)


def test_demo_runs_end_to_end(tmp_path, capsys):
    from FreqAdvSegmentLib.attacks import registry

    out = tmp_path / "demo"
    assert main(["demo", "--steps", "1", "--device", "cpu", "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    expected = {"vafa-paper", "vafa-public-code", "pgd", "dose-25"} | ({"sa2"} if "sa2" in registry.names() else set())
    assert set(report["attacks"]) == expected
    assert (out / "figures" / "vafa-public-code_slices.png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    for name, attack in report["attacks"].items():
        assert set(attack["budget"]) >= {"linf_hu", "rms_hu", "psnr_db", "ssim"} and attack["strength"], name
        assert f"{name:<10s} mean Dice" in printed
    assert printed.count("budget: ") == len(expected)
    # The demo's curve: VAFA (public code) and PGD, two strengths each, the demo's own runs among
    # them, and the reduced-dose scan as one realistic point beside them.
    rows = (out / "curve" / "curve.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 1 + 5
    assert sum(row.split(",")[1] == "dose:25" for row in rows[1:]) == 1, rows
    assert report["curve"]["summary"].startswith("at SSIM >= 0.95")
    assert "worst realistic change" in report["curve"]["summary"]
    assert "curve/curve.png" in (out / "report.html").read_text(encoding="utf-8")


def test_evaluate_a_datalist(tmp_path):
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"validation": [{"image": CT, "label": LABELS}]}))
    out = tmp_path / "eval"
    assert main(["evaluate", str(datalist), "--method", "fgsm", "--device", "cpu", "-o", str(out)]) == 0
    rows = (out / "results.csv").read_text().splitlines()
    assert rows[0].startswith("model,case,condition,mean_dice") and len(rows) == 3
    summary = json.loads((out / "summary.json").read_text())
    clean, fgsm = summary["demo-unet"]["clean"]["mean_dice"], summary["demo-unet"]["fgsm"]["mean_dice"]
    assert fgsm < clean
    # Every attacked result carries its budget; the clean row has none to carry.
    with (out / "results.csv").open(encoding="utf-8") as f:
        by_condition = {row["condition"]: row for row in csv.DictReader(f)}
    assert by_condition["clean"]["linf_hu"] == "" and by_condition["clean"]["ssim"] == ""
    attacked = by_condition["fgsm"]
    assert float(attacked["linf_hu"]) > 0 and 0 < float(attacked["ssim"]) < 1 and float(attacked["psnr_db"]) > 0
    fgsm_summary = summary["demo-unet"]["fgsm"]
    assert fgsm_summary["max_linf_hu"] == pytest.approx(float(attacked["linf_hu"]))
    assert fgsm_summary["mean_ssim"] == pytest.approx(float(attacked["ssim"]))
    assert "mean_ssim" not in summary["demo-unet"]["clean"]
    text = (out / "summary.md").read_text(encoding="utf-8")
    assert "| demo-unet |" in text and f"[SSIM {fgsm_summary['mean_ssim']:.3f}," in text


# --- bad input: a clear error, and no output folder ------------------------------------------------


def _fails(argv: list[str], capsys, pattern: str, out: Path) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err and pattern in err, err
    assert not out.exists(), "a failed run must leave no output folder"


def test_missing_file(tmp_path, capsys):
    out = tmp_path / "o"
    _fails(["attack", str(tmp_path / "nope.nii.gz"), "-o", str(out)], capsys, "nope.nii.gz", out)


def test_2d_image(tmp_path, capsys):
    path = tmp_path / "slice.nii.gz"
    sitk.WriteImage(sitk.Image(64, 64, sitk.sitkInt16), str(path))
    out = tmp_path / "o"
    _fails(["attack", str(path), "-o", str(out)], capsys, "3D", out)


def test_wrong_checkpoint(tmp_path, capsys):
    import torch
    from monai.networks.nets import SegResNet

    path = tmp_path / "other.pt"
    torch.save({"state_dict": SegResNet(spatial_dims=3, out_channels=14).state_dict()}, path)
    out = tmp_path / "o"
    _fails(["attack", CT, "--model", str(path), "-o", str(out)], capsys, "other.pt", out)


def test_unknown_label(tmp_path, capsys):
    labels = sitk.ReadImage(LABELS)
    arr = sitk.GetArrayFromImage(labels)
    arr[0, 0, 0] = 42
    bad = sitk.GetImageFromArray(arr)
    bad.CopyInformation(labels)
    path = tmp_path / "bad_labels.nii.gz"
    sitk.WriteImage(bad, str(path))
    out = tmp_path / "o"
    _fails(["attack", CT, "--labels", str(path), "--method", "fgsm", "-o", str(out)], capsys, "[42]", out)


def test_cancel_leaves_no_output(tmp_path, monkeypatch):
    """A run interrupted while writing (Ctrl-C) leaves nothing behind."""
    import FreqAdvSegmentLib.evaluation.report as report

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "write_report", interrupted)
    out = tmp_path / "o"
    assert main(["attack", CT, "--method", "gn", "--device", "cpu", "-o", str(out)]) == 130
    assert not out.exists() and not list(tmp_path.iterdir())


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "FreqAdvSegmentLib.cli", "attack", "--help"], capture_output=True, encoding="utf-8")
    assert result.returncode == 0
    assert "--q-max" in result.stdout and "4/255" in result.stdout
