"""Robustness curves: the sweep, its files, the `freqadv curve` verb and --resume."""

from __future__ import annotations

import csv
import html
import json

import pytest
import SimpleITK as sitk

from budget_fixtures import loaded_test_model, phantom_ct, write_phantom_files
from FreqAdvSegmentLib.cli import main
from FreqAdvSegmentLib.evaluation.curve import CurveAttack, parse_points, summary_sentence, sweep, write_curve
from FreqAdvSegmentLib.job.pipeline import start_job

PGD_POINTS = (1 / 255, 4 / 255, 16 / 255)


@pytest.fixture(scope="module")
def pgd_curve(trained_unet):
    ct, gt = phantom_ct()
    job = start_job(ct, loaded_test_model(trained_unet), gt)
    return sweep(job, [CurveAttack.parse("pgd,steps=3")], {"pgd": PGD_POINTS})


def test_pgd_curve_is_monotone_in_budget(pgd_curve):
    assert [p.value for p in pgd_curve] == list(PGD_POINTS)
    dice = [p.mean_dice for p in pgd_curve]
    assert all(a >= b for a, b in zip(dice, dice[1:])), dice
    assert dice[0] > dice[-1], "16/255 must hurt the test model more than 1/255"
    hu = [p.linf_hu for p in pgd_curve]
    assert all(a < b for a, b in zip(hu, hu[1:])) and hu[-1] <= 16 / 255 * 425 + 1e-3
    ssim = [p.ssim for p in pgd_curve]
    assert all(a > b for a, b in zip(ssim, ssim[1:]))
    assert all(p.dice_drop == pytest.approx(p.clean_dice - p.mean_dice) for p in pgd_curve)


def test_curve_files(pgd_curve, tmp_path):
    out = write_curve(pgd_curve, tmp_path / "curve")
    with (out / "curve.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(PGD_POINTS), "one row per point"
    assert [float(r["shown"]) for r in rows] == pytest.approx([1, 4, 16])
    assert (out / "curve.png").stat().st_size > 10_000
    page = (out / "curve.html").read_text(encoding="utf-8")
    assert html.escape(summary_sentence(pgd_curve)) in page and "at SSIM &gt;= 0.95" in page
    assert json.loads((out / "curve.json").read_text(encoding="utf-8"))["summary"] == summary_sentence(pgd_curve)


def test_summary_names_the_strongest_attack_at_equal_ssim(pgd_curve):
    kept = [p for p in pgd_curve if p.ssim >= 0.95]
    sentence = summary_sentence(pgd_curve)
    if kept:
        best = max(kept, key=lambda p: p.dice_drop)
        assert sentence.startswith("at SSIM >= 0.95 the strongest attack here is pgd,steps=3")
        assert f"Dice drop {best.dice_drop:.3f}" in sentence
    else:
        assert "no attack" in sentence


def test_requests_that_set_the_swept_strength_are_refused():
    with pytest.raises(ValueError, match="sweeps eps"):
        CurveAttack.parse("pgd,eps=4/255")
    with pytest.raises(ValueError, match="one of the chosen attacks"):
        parse_points(["fgsm=1/255"], [CurveAttack.parse("pgd")])
    assert parse_points(["vafa=20,5"], [CurveAttack.parse("vafa")]) == {"vafa": (5.0, 20.0)}


@pytest.fixture()
def phantom_files(trained_unet, tmp_path):
    write_phantom_files(trained_unet, tmp_path)
    return tmp_path


def test_curve_command_resumes_an_interrupted_sweep(phantom_files, monkeypatch, capsys):
    import FreqAdvSegmentLib.cli.curve as curve_verb
    import FreqAdvSegmentLib.job.pipeline as pipeline

    d = phantom_files
    out = d / "curve"
    argv = ["curve", str(d / "ct.nii.gz"), "--labels", str(d / "gt.nii.gz"), "--model", str(d / "unet.safetensors"),
            "--method", "pgd", "--method", "vafa:public-code", "--steps", "1", "--points", "pgd=2/255,8/255",
            "--points", "vafa=10,20", "--device", "cpu", "-o", str(out)]

    class Interrupt(curve_verb.BarProgress):
        def __call__(self, stage, done, total):
            if stage == "curve" and done == 2:
                raise KeyboardInterrupt
            super().__call__(stage, done, total)

    monkeypatch.setattr(curve_verb, "BarProgress", Interrupt)
    assert main(argv) == 130
    assert not out.exists(), "an interrupted sweep writes no output folder"
    partial = d / ".curve.curve-partial.jsonl"
    assert len(partial.read_text(encoding="utf-8").splitlines()) == 1 + 2, "settings line + the two points measured"

    monkeypatch.undo()
    runs = []
    real = pipeline.run_attack
    monkeypatch.setattr(pipeline, "run_attack", lambda *a, **k: runs.append(a[1].label) or real(*a, **k))
    assert main(argv + ["--resume"]) == 0
    assert runs == ["vafa-public-code", "vafa-public-code"], "only the two missing points are run again"
    with (out / "curve.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["attack"], float(r["value"])) for r in rows] == [
        ("pgd,steps=1", pytest.approx(2 / 255)), ("pgd,steps=1", pytest.approx(8 / 255)),
        ("vafa:public-code,steps=1", 10.0), ("vafa:public-code,steps=1", 20.0)]
    assert not partial.exists(), "a finished sweep removes its partial file"
    printed = capsys.readouterr().out
    assert "at SSIM >= 0.95" in printed and "curve.html" in printed
