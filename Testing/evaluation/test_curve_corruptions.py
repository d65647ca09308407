"""Attacks and realistic corruptions on one robustness curve (issue 27): `freqadv curve --method
pgd --method dose:25` writes one figure with both, and its sentence names the worst of each."""

from __future__ import annotations

import csv
import json

import pytest

from budget_fixtures import write_phantom_files
from FreqAdvSegmentLib.cli import main
from FreqAdvSegmentLib.evaluation.curve import CurveAttack, is_corruption, summary_sentence, sweep_values


def test_a_preset_that_fixes_the_strength_is_one_point():
    assert sweep_values(CurveAttack.parse("dose:25")) == (0.25,)
    assert sweep_values(CurveAttack.parse("dose")) == (0.5, 0.25, 0.1)
    assert sweep_values(CurveAttack.parse("dose:25"), {"dose": (0.5,)}) == (0.5,), "--points still wins"


def test_curve_command_draws_attacks_and_corruptions_together(tmp_path, capsys):
    import torch
    from conftest import small_unet

    torch.manual_seed(0)
    write_phantom_files(small_unet().eval(), tmp_path)  # plumbing, not robustness: an untrained UNet will do
    out = tmp_path / "curve"
    argv = ["curve", str(tmp_path / "ct.nii.gz"), "--labels", str(tmp_path / "gt.nii.gz"),
            "--model", str(tmp_path / "unet.safetensors"), "--method", "pgd", "--method", "dose:25",
            "--method", "thickness", "--steps", "1", "--points", "pgd=1/255,8/255", "--points", "thickness=5",
            "--device", "cpu", "-o", str(out)]
    assert main(argv) == 0
    with (out / "curve.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["attack"], float(r["value"])) for r in rows] == [
        ("pgd,steps=1", pytest.approx(1 / 255)), ("pgd,steps=1", pytest.approx(8 / 255)),
        ("dose:25", 0.25), ("thickness", 5.0)]
    dose = rows[2]
    assert float(dose["rms_hu"]) > 1.0 and float(dose["ssim"]) < 1.0, "the reduced dose changed the CT, and it was measured"
    assert (out / "curve.png").stat().st_size > 10_000
    summary = json.loads((out / "curve.json").read_text(encoding="utf-8"))["summary"]
    assert summary.startswith("at SSIM >= 0.95 the worst realistic change is ")
    assert "; the worst attack is pgd,steps=1" in summary or "; no attack was measured there" in summary
    printed = capsys.readouterr().out
    assert summary in printed


def test_sentence_names_the_worst_of_each_kind():
    from FreqAdvSegmentLib.evaluation.curve import CurvePoint

    def point(attack, value, drop, ssim):
        return CurvePoint("m", attack, "p", value, value, "", "ground truth", 0.9, 0.9 - drop, drop, 0.9,
                          10.0, 2.0, 40.0, ssim, False, 1.0)

    points = [point("pgd", 1 / 255, 0.05, 0.99), point("pgd", 8 / 255, 0.4, 0.90), point("dose:25", 0.25, 0.02, 0.97),
              point("kernel", 2.5, 0.08, 0.96)]
    assert is_corruption(points[2]) and not is_corruption(points[0])
    sentence = summary_sentence(points)
    assert "the worst realistic change is kernel" in sentence and "Dice drop 0.080" in sentence
    assert "the worst attack is pgd at p" in sentence and "Dice drop 0.050" in sentence, "pgd 8/255 is under SSIM 0.95"
