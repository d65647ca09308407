"""The robust-twins scripts: the patient-A split (train_robust_demo.sh split), the curve sweep
(robust_curves.py) on a real slab with demo-unet, and the report's equal-SSIM reading."""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from FreqAdvSegmentLib.sample_data import sample_ct_path, sample_labels_path

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


curves = _load("robust_curves")
report = _load("robust_report")


def _z_range_mm(path: Path) -> tuple[float, float]:
    """Physical S-I extent (centre of first slice, centre of last) of a RAS volume."""
    img = nib.load(str(path))
    first = img.affine @ np.array([0, 0, 0, 1])
    last = img.affine @ np.array([0, 0, img.shape[2] - 1, 1])
    return float(first[2]), float(last[2])


def test_split_holds_out_a_slab_no_training_piece_touches(tmp_path):
    env = {**os.environ, "FREQADV_CACHE": str(tmp_path), "PYTHON": sys.executable,
           "PYTHONPATH": str(REPO / "FreqAdvSegment")}
    subprocess.run(["bash", str(SCRIPTS / "train_robust_demo.sh"), "split"], check=True, env=env,
                   capture_output=True)
    folder = tmp_path / "patientA_split"
    heldout = folder / "patientA_heldout_z082-097_ct.nii.gz"
    pieces = [folder / "patientA_train_z000-079_ct.nii.gz", folder / "patientA_train_z100-111_ct.nii.gz"]
    assert [nib.load(str(p)).shape[2] for p in (*pieces, heldout)] == [80, 12, 16]
    lo, hi = _z_range_mm(heldout)
    for piece in pieces:  # at least the two-slice gap (2 x 3 mm) between slab and every piece
        a, b = _z_range_mm(piece)
        assert b <= lo - 9.0 or a >= hi + 9.0, (piece.name, a, b, lo, hi)
    # The slab is patient A's own voxels, slice 82 onwards, labels included.
    full = np.asarray(nib.load(str(sample_labels_path())).dataobj)
    slab = np.asarray(nib.load(str(folder / "patientA_heldout_z082-097_labels.nii.gz")).dataobj)
    np.testing.assert_array_equal(slab, full[:, :, 82:98])
    assert "training" in (folder / "train.json").read_text() and "validation" in (folder / "heldout.json").read_text()


def test_sweep_requests_parse_with_the_attacks_own_parameters():
    requests = curves.sweep_requests(
        [("pgd", "eps", "1/255,4/255"), ("vafa:public-code", "q_max", "10")], {"steps": "2", "block_size": "8"}
    )
    assert [(r.method, r.preset, r.params) for r in requests] == [
        ("pgd", None, {"steps": 2, "eps": 1 / 255}),
        ("pgd", None, {"steps": 2, "eps": 4 / 255}),
        ("vafa", "public-code", {"steps": 2, "block_size": 8, "q_max": 10.0}),
    ]
    with pytest.raises(ValueError, match="no parameter 'q_max'.*eps"):
        curves.sweep_requests([("pgd", "q_max", "10")], {})


def test_dice_at_ssim_interpolates_between_neighbours():
    points = [(0.0, 1.0, 0.8), (1.0, 0.96, 0.7), (2.0, 0.90, 0.4)]
    assert report.dice_at_ssim(points, 0.95) == pytest.approx(0.7 - 0.3 * 0.01 / 0.06)
    assert report.dice_at_ssim(points, 0.98) == pytest.approx(0.75)
    assert report.dice_at_ssim(points, 0.85) is None  # the sweep never got that far


def test_curve_on_a_real_slab_then_report(tmp_path, capsys):
    # A small slab of patient A (12 slices) so that demo-unet runs in seconds on CPU.
    case = {}
    for key, path in (("image", sample_ct_path()), ("label", sample_labels_path())):
        nib.save(nib.load(str(path)).slicer[10:110, 10:90, 84:96], str(tmp_path / f"{key}.nii.gz"))
        case[key] = f"{key}.nii.gz"
    (tmp_path / "d.json").write_text(__import__("json").dumps({"validation": [case]}))
    out = tmp_path / "eval" / "curves" / "natural"
    argv = [str(tmp_path / "d.json"), "-o", str(out), "--models", "natural=demo-unet",
            "--sweep", "gn", "std", "4/255,16/255", "--sweep", "fgsm", "eps", "8/255",
            "--sweep", "vafa:public-code", "q_max", "20", "--set", "steps=1", "--set", "block_size=8"]
    assert curves.main(argv) == 0
    rows = list(csv.DictReader((out / "curve.csv").open()))
    assert [(r["method"], r["shown"]) for r in rows] == [
        ("clean", "0.0"), ("gn", "4.0"), ("gn", "16.0"), ("fgsm", "8.0"), ("vafa:public-code", "20.0")]
    ssim = [float(r["ssim"]) for r in rows]
    assert ssim[0] == 1.0 and 1.0 > ssim[1] > ssim[2]  # more noise, less similar
    assert float(rows[3]["linf"]) == pytest.approx(8 / 255, abs=1e-4)  # FGSM spends its whole budget
    assert float(rows[3]["mean_dice"]) < float(rows[0]["mean_dice"])
    assert float(rows[4]["ssim"]) < 1.0 and float(rows[4]["mean_dice"]) < float(rows[0]["mean_dice"])

    assert report.main([str(tmp_path / "eval"), "--png", str(tmp_path / "c.png"), "--csv-dir", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "robust_models_heldout.csv").read_text() == (out / "curve.csv").read_text().replace("\r\n", "\n")
    assert not (tmp_path / "r" / "robust_models_patientB.csv").exists()  # no patient-B evaluation here
    text = capsys.readouterr().out
    gn4 = f"{float(rows[1]['mean_dice']):.3f} ({float(rows[1]['ssim']):.3f})"
    assert f"| natural (demo-unet) | {float(rows[0]['mean_dice']):.3f} | {gn4} | n/a |" in text  # GN 4/255, no FGSM 4/255
    assert (tmp_path / "c.png").stat().st_size > 10_000


def test_curves_bad_sweep_is_one_error_line(tmp_path, capsys):
    argv = [str(tmp_path / "none.json"), "-o", str(tmp_path / "o"), "--models", "demo-unet",
            "--sweep", "pgd", "eps", "lots"]
    assert curves.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("robust_curves: error:") and "eps" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_shipped_vaft_twin_matches_its_pinned_sha256_and_is_a_demo_unet_twin():
    from safetensors.torch import load_file

    from FreqAdvSegmentLib.models.registry import resolve_model

    twin, base = resolve_model("demo-unet-vaft"), resolve_model("demo-unet")  # raises on a sha256 mismatch
    a, b = load_file(str(twin)), load_file(str(base))
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    assert any(not (a[k] == b[k]).all() for k in a)  # fine-tuned, not a copy
