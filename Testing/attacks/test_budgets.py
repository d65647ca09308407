"""Budgets beside every result: HU change, PSNR and SSIM inside the body, visibility, --eps-hu,
label-change maps, per-organ drops, and where VAFA's strength comes from."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from budget_fixtures import loaded_test_model, phantom_ct, write_phantom_files
from FreqAdvSegmentLib.attacks import registry
from FreqAdvSegmentLib.attacks.measures import body_mask, budget, masked_ssim, strength, visibility
from FreqAdvSegmentLib.attacks.ssim import ssim3d
from FreqAdvSegmentLib.cli import apply_eps_hu, main
from FreqAdvSegmentLib.job.pipeline import AttackRequest, run_attack, run_job, start_job, write_outputs

WINDOW = (-175.0, 250.0)


def _torso(shape=(24, 40, 40)) -> np.ndarray:
    """HU [Z, Y, X]: air, a soft-tissue body with an air-filled lung inside it, and a separate couch."""
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    hu = np.full(shape, -1000.0, dtype=np.float32)
    body = ((y - 18) / 14.0) ** 2 + ((x - 20) / 16.0) ** 2 <= 1
    hu[body] = 40.0
    lung = ((y - 18) / 5.0) ** 2 + ((x - 14) / 4.0) ** 2 <= 1
    lung &= (z > 4) & (z < 19)  # enclosed by tissue above and below
    hu[lung] = -850.0
    hu[:, 36:38, 4:36] = 300.0  # the couch: dense, but not the patient
    return hu


def test_body_mask_keeps_the_patient_and_its_cavities_but_not_air_or_couch():
    hu = _torso()
    mask = body_mask(hu)
    assert mask[10, 18, 14], "an air-filled lung inside the body belongs to the body"
    assert mask[10, 18, 20] and not mask[10, 1, 1], "tissue in, outside air out"
    assert not mask[:, 36:38].any(), "the couch is a separate, smaller object"
    assert body_mask(np.full((4, 5, 6), 20.0)).all(), "a volume cropped inside the body is all body"


def test_budget_ignores_air_outside_the_body():
    hu = _torso()
    delta = np.zeros_like(hu)
    delta[8:12, 15:20, 18:23] = 30.0  # inside the body
    measured = budget(hu, delta, WINDOW)
    outside = delta.copy()
    outside[:, 0:2, :] = 500.0  # a huge change in the air around the patient
    with_air = budget(hu, outside, WINDOW)
    for key in ("linf_hu", "rms_hu", "psnr_db", "ssim"):
        assert with_air[key] == pytest.approx(measured[key]), key
    assert with_air["linf_hu_anywhere"] == 500.0
    mask = body_mask(hu)
    assert measured["linf_hu"] == pytest.approx(30.0)
    assert measured["rms_hu"] == pytest.approx(np.sqrt((delta[mask] ** 2).mean()))
    assert measured["psnr_db"] == pytest.approx(20 * np.log10(425.0 / measured["rms_hu"]))
    assert 0.5 < measured["ssim"] < 1.0
    assert budget(hu, np.zeros_like(hu), WINDOW)["ssim"] == pytest.approx(1.0)


def test_masked_ssim_matches_whole_volume_ssim_and_does_not_depend_on_slabs():
    rng = np.random.default_rng(0)
    a = rng.random((13, 11, 9)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
    full = np.ones(a.shape, dtype=bool)
    whole = float(ssim3d(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None])[0])
    assert masked_ssim(a, b, full) == pytest.approx(whole, rel=1e-5)
    half = np.zeros(a.shape, dtype=bool)
    half[:7] = True
    assert masked_ssim(a, b, half, slab=2) == pytest.approx(masked_ssim(a, b, half, slab=50), rel=1e-6)


def _full_grid_budget(hu: np.ndarray, delta: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """The budget as it was first written: float64 copies and SSIM over the whole grid."""
    inside = np.abs(delta[mask]).astype(np.float64)
    windowed = [np.clip((v.astype(np.float32) - WINDOW[0]) / (WINDOW[1] - WINDOW[0]), 0, 1) for v in (hu, hu + delta)]
    return {"linf_hu": inside.max(), "rms_hu": np.sqrt(np.mean(inside**2)), "body_voxels": int(mask.sum()),
            "ssim": masked_ssim(windowed[0], windowed[1], mask), "linf_hu_anywhere": np.abs(delta).max()}


@pytest.mark.parametrize("where", ["interior", "on the faces"])
def test_budget_on_the_body_box_equals_the_full_grid_computation(where):
    """On a crop of the shipped CT (int16, as read) with a noisy change: the box, the slabs and the
    float32 passes give the full-grid float64 figures, with the body inside the volume or touching
    its faces (where SSIM leaves the border voxels out)."""
    from FreqAdvSegmentLib.samples.sample_data import sample_ct_path

    image = sitk.ReadImage(str(sample_ct_path()))  # kept: the view below lives in its buffer
    ct = sitk.GetArrayViewFromImage(image)  # [z, y, x] int16, as the pipeline passes it
    hu = ct[40:70, 10:90, 10:110]  # the body runs through the crop's faces
    if where == "interior":  # air all round, so the body's box lies inside the volume
        hu = np.pad(hu, 3, constant_values=-1000)
    rng = np.random.default_rng(1)
    delta = rng.normal(0, 8, hu.shape).astype(np.float32)
    mask = body_mask(hu)
    assert mask.any() and not mask.all()
    touches = mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, :, 0].any() or mask[:, :, -1].any()
    assert touches == (where == "on the faces")
    expected = _full_grid_budget(hu, delta, mask)
    measured = budget(hu, delta, WINDOW, mask)
    for key, value in expected.items():
        assert measured[key] == pytest.approx(value, rel=1e-6), key
    assert measured["ssim"] < 0.999, "the change is large enough to show in SSIM"


def test_visibility_in_plain_words():
    assert visibility({"linf_hu": 20.0, "ssim": 0.97}) is None
    loud = visibility({"linf_hu": 215.0, "ssim": 0.61})
    assert loud.startswith("VISIBLE CHANGE") and "215 HU" in loud and "0.61" in loud
    assert "SSIM" not in visibility({"linf_hu": 60.0, "ssim": 0.95}) and "structural" not in visibility({"linf_hu": 60.0, "ssim": 0.95})


def test_strength_reads_the_attacks_own_budget(trained_unet):
    pgd = registry.build("pgd", trained_unet, {"eps": 4 / 255})
    s = strength(pgd, WINDOW)
    assert (s["param"], s["shown"]) == ("eps", pytest.approx(4.0))
    assert s["hu"] == pytest.approx(4 / 255 * 425) and "6.7 HU" in s["text"]
    vafa = registry.build("vafa:public-code", trained_unet, {"q_max": 30})
    assert strength(vafa, WINDOW)["value"] == 30.0 and strength(vafa, WINDOW)["hu"] is None


def test_eps_hu_maps_through_the_models_window():
    spec = SimpleNamespace(intensity_window=(-1000.0, 1000.0))
    requests = apply_eps_hu([AttackRequest("pgd"), AttackRequest("vafa")], 10.0, spec)
    assert requests[0].params["eps"] == pytest.approx(10 / 2000) and "eps" not in requests[1].params
    with pytest.raises(ValueError, match="none was chosen"):
        apply_eps_hu([AttackRequest("vafa")], 10.0, spec)
    with pytest.raises(ValueError, match="no.*window|window.*none"):
        apply_eps_hu([AttackRequest("pgd")], 10.0, SimpleNamespace(intensity_window=None))


@pytest.fixture(scope="module")
def phantom_job(trained_unet):
    ct, gt = phantom_ct()
    return run_job(ct, loaded_test_model(trained_unet), [AttackRequest("pgd", {"eps": 8 / 255, "steps": 3})], gt)


def test_every_outcome_carries_its_budget(phantom_job):
    m = phantom_job.outcomes[0].metrics
    b = m.budget
    # PGD's L-inf ball is 8/255 of the 425 HU window; linear resampling cannot exceed it.
    assert 0 < b.linf_hu <= 8 / 255 * 425 + 1e-3 and 0 < b.rms_hu <= b.linf_hu
    assert 0 < b.ssim < 1 and np.isfinite(b.psnr_db)
    # 13 HU is under the HU threshold (the 3-voxel SSIM may still call sign noise visible).
    assert m.strength.param == "eps" and "HU" not in (m.visible or "")
    drops = [r.dice_drop for r in m.organ_drops]
    assert drops == sorted(drops, reverse=True), "worst organ first"


def test_label_change_maps_and_report(phantom_job, tmp_path):
    out = write_outputs(phantom_job, tmp_path / "run")
    outcome = phantom_job.outcomes[0]
    clean = sitk.GetArrayFromImage(phantom_job.clean_labels)
    adv = sitk.GetArrayFromImage(outcome.adv_labels)
    lost = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "pgd/labels_lost.nii.gz")))
    gained = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "pgd/labels_gained.nii.gz")))
    changed = clean != adv
    assert changed.any(), "PGD at 8/255 must change some labels of the test model"
    np.testing.assert_array_equal(lost, np.where(changed, clean, 0))
    np.testing.assert_array_equal(gained, np.where(changed, adv, 0))
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    entry = report["attacks"]["pgd"]
    assert set(entry["budget"]) >= {"linf_hu", "rms_hu", "psnr_db", "ssim"}
    total_lost = sum(v["lost"] for v in entry["label_changes"].values())
    assert total_lost == int(changed.sum())
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "id='budgets'" in page and "largest change of any voxel inside the body" in page
    assert (out / "figures/pgd_changes.png").stat().st_size > 5_000


def test_visible_attack_is_flagged(trained_unet):
    ct, gt = phantom_ct()
    job = start_job(ct, loaded_test_model(trained_unet), gt)
    outcome = run_attack(job, AttackRequest("pgd", {"eps": 64 / 255, "steps": 1}))
    assert outcome.metrics.budget.linf_hu > 50
    assert outcome.metrics.visible and "HU" in outcome.metrics.visible


def test_public_code_strength_comes_from_per_slice_renormalisation(trained_unet):
    """The issue-10 finding, as a direction: VAFA's public-code preset hurts the model more with
    its per-axial-slice min-max renormalisation than with the paper's clipping, and its change is
    larger too."""
    ct, gt = phantom_ct()
    job = start_job(ct, loaded_test_model(trained_unet), gt)
    params = {"steps": 5, "block_size": 8}
    renormalised = run_attack(job, AttackRequest("vafa:public-code", params))
    clipped = run_attack(job, AttackRequest("vafa:public-code", {**params, "renormalize": None}))
    clean = job.clean_metrics.mean_dice
    drop_on = clean - renormalised.metrics.vs_reference.mean_dice
    drop_off = clean - clipped.metrics.vs_reference.mean_dice
    assert drop_on > drop_off, (drop_on, drop_off)
    assert renormalised.metrics.budget.ssim < clipped.metrics.budget.ssim


def test_attack_command_takes_eps_in_hu_and_prints_the_budget(trained_unet, tmp_path, capsys):
    write_phantom_files(trained_unet, tmp_path)
    base = ["attack", str(tmp_path / "ct.nii.gz"), "--model", str(tmp_path / "unet.safetensors"), "--device", "cpu"]
    assert main(base + ["--method", "fgsm", "--eps-hu", "20", "-o", str(tmp_path / "o")]) == 0
    report = json.loads((tmp_path / "o" / "report.json").read_text(encoding="utf-8"))
    fgsm = report["attacks"]["fgsm"]
    assert fgsm["params"]["eps"] == pytest.approx(20 / 425)
    assert 0 < fgsm["budget"]["linf_hu"] <= 20 + 1e-3
    printed = capsys.readouterr().out
    assert "budget: eps" in printed and "inside the body: max" in printed
    out = tmp_path / "o2"
    assert main(base + ["--method", "vafa", "--eps-hu", "20", "-o", str(out)]) == 2
    assert "none was chosen" in capsys.readouterr().err and not out.exists()
    assert main(base + ["--method", "fgsm", "--eps", "4/255", "--eps-hu", "20", "-o", str(out)]) == 2
    assert "not both" in capsys.readouterr().err and not out.exists()


def test_written_outputs_and_report_agree_with_an_independent_computation(trained_unet, tmp_path):
    """On an input grid finer than the model's (so every map goes through a resample back): the
    report's per-organ Dice and HD95 equal a scipy computation on the written label maps, the
    written adversarial CT is adversarial_to_original's, and the budget is the full-grid one."""
    from scipy.ndimage import binary_erosion, distance_transform_edt

    from FreqAdvSegmentLib.job.preprocess import adversarial_to_original

    ct, gt = phantom_ct()
    for image in (ct, gt):
        image.SetSpacing((0.8, 0.9, 1.25))  # model grid 1 mm: a real resample each way
    job = run_job(ct, loaded_test_model(trained_unet), [AttackRequest("pgd", {"eps": 8 / 255, "steps": 2})], gt)
    out = write_outputs(job, tmp_path / "run")
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    read = {name: sitk.GetArrayFromImage(sitk.ReadImage(str(out / name)))
            for name in ("clean_labels.nii.gz", "pgd/adversarial_labels.nii.gz", "pgd/adversarial.nii.gz", "pgd/perturbation_hu.nii.gz")}
    reference = sitk.GetArrayFromImage(gt)
    spacing = tuple(reversed(ct.GetSpacing()))  # arrays are [z, y, x]
    checked = 0
    for labels, metrics in ((read["clean_labels.nii.gz"], report["clean_vs_ground_truth"]),
                            (read["pgd/adversarial_labels.nii.gz"], report["attacks"]["pgd"]["vs_reference"])):
        for c, name in enumerate(job.loaded.spec.label_names[1:], start=1):
            p, r = labels == c, reference == c
            entry = metrics["per_class"][name]
            if not (p.any() and r.any()):
                continue
            assert entry["dice"] == pytest.approx(2 * (p & r).sum() / (p.sum() + r.sum()), abs=1e-6)
            ep, er = p ^ binary_erosion(p), r ^ binary_erosion(r)
            hd = max(np.percentile(distance_transform_edt(~er, sampling=spacing)[ep], 95),
                     np.percentile(distance_transform_edt(~ep, sampling=spacing)[er], 95))
            assert entry["hd95_mm"] == pytest.approx(hd, abs=1e-3)
            checked += 1
    assert checked >= 4
    outcome = job.outcomes[0]
    expected_adv = adversarial_to_original(outcome.result.adv, outcome.result.clean, ct, job.ctx)
    np.testing.assert_array_equal(read["pgd/adversarial.nii.gz"], sitk.GetArrayFromImage(expected_adv))
    delta = read["pgd/perturbation_hu.nii.gz"]
    assert np.abs(delta).max() > 1.0, "the attack changed the CT"
    hu = sitk.GetArrayFromImage(ct).astype(np.float32)
    full = _full_grid_budget(hu, delta, body_mask(hu))
    for key, value in full.items():
        assert report["attacks"]["pgd"]["budget"][key] == pytest.approx(value, rel=1e-6), key
