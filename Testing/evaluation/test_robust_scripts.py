"""The robust-twins scripts: the patient-A split (train_robust_demo.sh split), `freqadv evaluate`
and `freqadv curve` on the held-out slab through the script, the report's tables and figure, the
reproduction check of a shipped twin, and the report's equal-SSIM reading."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from FreqAdvSegmentLib.samples.sample_data import sample_ct_path, sample_labels_path

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
MODELS = REPO / "FreqAdvSegment" / "FreqAdvSegmentLib" / "resources" / "models"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def test_dice_at_ssim_interpolates_between_neighbours():
    points = [(0.0, 1.0, 0.8), (1.0, 0.96, 0.7), (2.0, 0.90, 0.4)]
    assert report.dice_at_ssim(points, 0.95) == pytest.approx(0.7 - 0.3 * 0.01 / 0.06)
    assert report.dice_at_ssim(points, 0.98) == pytest.approx(0.75)
    assert report.dice_at_ssim(points, 0.85) is None  # the sweep never got that far


def test_model_key_names_the_twin_from_what_the_commands_were_given():
    assert report.model_key("demo-unet") == "natural"
    assert report.model_key("/tmp/freqadv-robust/sa2at/demo_unet_sa2at.safetensors") == "sa2at"
    assert report.title("/runs/pgdat/demo_unet_pgdat.safetensors") == "PGD-AT"
    assert report.title("/elsewhere/my_model.safetensors") == "my_model"


def _script(tmp_path: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """train_robust_demo.sh on the slab only, one attack step, everything under tmp_path."""
    env = {**os.environ, "FREQADV_CACHE": str(tmp_path / "cache"), "PYTHON": sys.executable,
           "PYTHONPATH": str(REPO / "FreqAdvSegment"), "RUNS": str(tmp_path / "runs"),
           "EVAL_OUT": str(tmp_path / "eval"), "DATA": "slab", "EVAL_STEPS": "1"}
    result = subprocess.run(["bash", str(SCRIPTS / "train_robust_demo.sh"), *args], env=env,
                            capture_output=True, text=True, encoding="utf-8")
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def _twin(tmp_path: Path, name: str, source: Path) -> Path:
    path = tmp_path / "runs" / name / f"demo_unet_{name}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, path)
    return path


def test_evaluate_curves_and_report_run_freqadv_on_the_held_out_slab(tmp_path, capsys):
    # Two models (demo-unet and the shipped VAFT twin as if retrained here), every attack at the
    # paper's budgets through `freqadv evaluate`; demo-unet's curve through `freqadv curve`.
    _twin(tmp_path, "vaft", MODELS / "demo_unet_vaft.safetensors")
    _script(tmp_path, "evaluate", "natural", "vaft")
    _script(tmp_path, "curves", "natural")
    eval_dir = tmp_path / "eval"
    summary = json.loads((eval_dir / "evaluate" / "slab" / "natural" / "summary.json").read_text(encoding="utf-8"))
    conditions = summary["demo-unet"]
    assert list(conditions) == ["clean", "gn", "fgsm", "pgd", "vafa", "vafa-public-code", "sa2"]
    assert all(0 < conditions[c]["mean_ssim"] < 1 for c in conditions if c != "clean")
    assert conditions["pgd"]["mean_dice"] < conditions["clean"]["mean_dice"]

    points = report.read_curves(eval_dir / "curve" / "slab")
    assert points[0]["request"] == "gn" and {p["attack"] for p in points} == {
        "gn", "fgsm", "pgd", "vafa", "vafa:public-code", "sa2"}  # the request, less the shared steps=1
    pgd = sorted((float(p["value"]), float(p["ssim"])) for p in points if p["attack"] == "pgd")
    assert [round(v * 255) for v, _ in pgd] == [1, 2, 4, 8, 16]
    assert all(a > b for (_, a), (_, b) in zip(pgd, pgd[1:]))  # a larger eps changes the CT more

    figures, tables = tmp_path / "figures", tmp_path / "tables"
    assert report.main([str(eval_dir), "--figures", str(figures), "--csv-dir", str(tables)]) == 0
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith("| natural (demo-unet) | 0."))
    pgd_cell = f"{conditions['pgd']['mean_dice']:.3f} [{conditions['pgd']['mean_ssim']:.2f}, "
    assert pgd_cell in row and "| VAFT (public-code VAFA) |" in text
    assert "Dice at equal SSIM" in text and "pgd @ 0.95" in text
    with (tables / "robust_models_slab_evaluate.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 7 and {r["model"] for r in rows} == {"demo-unet", str(tmp_path / "runs" / "vaft" / "demo_unet_vaft.safetensors")}
    assert (figures / "robust_curve_slab.png").stat().st_size > 10_000
    assert not (figures / "robust_curve_patientB.png").exists()  # patient B was not evaluated here


def test_check_passes_a_bit_identical_retrain_and_fails_a_different_one(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    shipped = MODELS / "demo_unet_vaft.safetensors"
    twin = _twin(tmp_path, "vaft", shipped)
    assert "bit-identical" in _script(tmp_path, "check").stdout
    # A "retrain" whose final layer lost most of its weights must not pass for the shipped twin.
    with safe_open(str(shipped), "pt") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    last = sorted(k for k in tensors if k.endswith("weight"))[-1]
    tensors[last] = tensors[last] * 0.1
    save_file(tensors, str(twin), metadata=metadata)
    result = _script(tmp_path, "check", check=False)
    assert result.returncode == 1 and "differ from the shipped file" in result.stdout, result.stdout + result.stderr


def test_shipped_vaft_twin_matches_its_pinned_sha256_and_is_a_demo_unet_twin():
    from safetensors.torch import load_file

    from FreqAdvSegmentLib.models.registry import resolve_model

    twin, base = resolve_model("demo-unet-vaft"), resolve_model("demo-unet")  # raises on a sha256 mismatch
    a, b = load_file(str(twin)), load_file(str(base))
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    assert any(not (a[k] == b[k]).all() for k in a)  # fine-tuned, not a copy
