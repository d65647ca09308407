"""SA², SegPGD, CosPGD, APGD and the worst-case ensemble; padding to the model's multiple."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from monai.networks.nets import UNETR, UNet

from FreqAdvSegmentLib.attacks import APGD, FGSM, PGD, SA2, CosPGD, GaussianNoise, SegPGD, WorstCase, registry
from FreqAdvSegmentLib.attacks.apgd import apgd_checkpoints, halve_step
from FreqAdvSegmentLib.attacks.cospgd import cosine_weights, cospgd_loss
from FreqAdvSegmentLib.attacks.ensemble import mean_dice, pick_worst
from FreqAdvSegmentLib.attacks.frequency import blockwise_dct3, blockwise_idct3
from FreqAdvSegmentLib.attacks.losses import paper_dice_ce
from FreqAdvSegmentLib.attacks.sa2 import band_mask
from FreqAdvSegmentLib.attacks.segpgd import segpgd_lambda, segpgd_loss
from FreqAdvSegmentLib.job.inference import segment
from FreqAdvSegmentLib.attacks.padding import ShapeError, padded_forward


def _logits_and_labels(seed: int = 0, k: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, k, 5, 4, 3, generator=g), torch.randint(0, k, (2, 1, 5, 4, 3), generator=g)


def _ce_by_hand(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-voxel cross-entropy, log-sum-exp minus the true logit: [N, h, w, d]."""
    true = logits.gather(1, labels).squeeze(1)
    return logits.exp().sum(1).log() - true


# --- SegPGD ---------------------------------------------------------------------------------------


def test_segpgd_lambda_rises_from_0_to_half_over_the_steps():
    assert [segpgd_lambda(t, 4) for t in range(4)] == [0.0, 0.125, 0.25, 0.375]
    assert segpgd_lambda(19, 20) == pytest.approx(19 / 40)  # the paper's (T - 1) / (2T)


def test_segpgd_loss_weights_correct_and_wrong_voxels_by_hand():
    logits, labels = _logits_and_labels()
    ce = _ce_by_hand(logits, labels)
    correct = logits.argmax(1) == labels[:, 0]
    for lam in (0.0, 0.3):
        want = ((1 - lam) * ce[correct].sum() + lam * ce[~correct].sum()) / ce.numel()
        assert segpgd_loss(lam)(logits, labels).item() == pytest.approx(want.item(), rel=1e-5)
    # At lambda 0 the wrong voxels get no gradient at all.
    leaf = logits.clone().requires_grad_(True)
    segpgd_loss(0.0)(leaf, labels).backward()
    assert leaf.grad.permute(0, 2, 3, 4, 1)[~correct].abs().max() == 0
    assert leaf.grad.permute(0, 2, 3, 4, 1)[correct].abs().max() > 0


def test_segpgd_runs_its_schedule_within_the_budget(trained_unet, test_case):
    x, y = test_case
    result = SegPGD(trained_unet, eps=4 / 255, steps=4, seed=0).run(x, y)
    assert [h["lambda"] for h in result.history] == [0.0, 0.125, 0.25, 0.375]
    assert (result.adv - x).abs().max() <= 4 / 255 + 1e-6


# --- CosPGD ---------------------------------------------------------------------------------------


def test_cospgd_weights_are_per_voxel_cosines_by_hand():
    logits, labels = _logits_and_labels(1)
    onehot = F.one_hot(labels[:, 0], 4).permute(0, 4, 1, 2, 3).float()
    want = F.cosine_similarity(logits.softmax(1), onehot, dim=1)  # [N, h, w, d]
    torch.testing.assert_close(cosine_weights(logits, labels), want)
    loss = cospgd_loss(logits, labels)
    assert loss.item() == pytest.approx((want * _ce_by_hand(logits, labels)).mean().item(), rel=1e-5)
    one_mean = want.mean() * _ce_by_hand(logits, labels).mean()  # the variant the paper is not
    assert abs(loss.item() - one_mean.item()) > 1e-3


def test_cospgd_weight_is_not_differentiated(trained_unet):
    logits, labels = _logits_and_labels(2)
    a = logits.clone().requires_grad_(True)
    cospgd_loss(a, labels).backward()
    b = logits.clone().requires_grad_(True)
    weights = cosine_weights(logits, labels)
    (weights * F.cross_entropy(b, labels[:, 0], reduction="none")).mean().backward()
    torch.testing.assert_close(a.grad, b.grad)


# --- APGD -----------------------------------------------------------------------------------------


def test_apgd_checkpoints_follow_the_reference_code():
    # fra31/auto-attack: first span int(0.22 N), shrinking by int(0.03 N) to int(0.06 N) (each >= 1)
    assert apgd_checkpoints(20) == [4, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]


@pytest.mark.parametrize("raised, span, halved_last, best_last, best_now, halve", [
    (10, 22, False, 1.0, 2.0, True),    # 10 <= 0.75 * 22: too few steps raised the loss
    (15, 20, False, 1.0, 2.0, True),    # <=, not <: exactly 0.75 of the span halves
    (17, 22, False, 1.0, 2.0, False),   # enough raised, and the best improved
    (17, 22, False, 2.0, 2.0, True),    # the best did not improve and the step was not just halved
    (17, 22, True, 2.0, 2.0, False),    # ... but it was halved at the last checkpoint
])
def test_apgd_halving_rule(raised, span, halved_last, best_last, best_now, halve):
    assert halve_step(raised, span, halved_last, best_last, best_now) is halve


def test_apgd_halves_only_at_checkpoints_and_returns_its_best_point(trained_unet, test_case):
    x, y = test_case
    eps = 4 / 255
    result = APGD(trained_unet, eps=eps, steps=10, seed=0).run(x, y)
    etas = [h["eta"] for h in result.history]
    assert etas[0] == pytest.approx(2 * eps)
    marks = apgd_checkpoints(10)
    for k in range(1, 10):
        if etas[k] != etas[k - 1]:
            assert k in marks and etas[k] == pytest.approx(etas[k - 1] / 2), (k, etas)
    assert (result.adv - x).abs().max() <= eps + 1e-6
    with torch.no_grad():
        loss = paper_dice_ce()(trained_unet(result.adv), y).item()
    assert loss == pytest.approx(result.extras["best_loss"], rel=1e-4)
    assert result.extras["best_loss"] >= max(h["loss"] for h in result.history) - 1e-6


# --- SA² ------------------------------------------------------------------------------------------


def test_sa2_band_masks_split_the_block_by_frequency():
    low, middle, high, every = (band_mask(8, b) for b in ("low", "middle", "high", "all"))
    assert not (low & middle).any() and not (low & high).any() and not (middle & high).any()
    assert torch.equal(low | middle | high, every)
    assert not every[0, 0, 0], "the DC coefficient is never scaled"
    # index sums <= 3 (20 of them, less DC), >= 18 (20) and the 472 between
    assert (low.sum().item(), middle.sum().item(), high.sum().item()) == (19, 472, 20)
    assert low[1, 1, 1] and high[7, 7, 7] and middle[3, 3, 3] and not low[2, 1, 1]


def test_sa2_factors_stay_in_their_range_and_give_the_output(trained_unet, test_case):
    x, y = test_case
    start = SA2(trained_unet, rho=0.2, steps=0, band="all", seed=0).run(x, y).extras["factors"]
    mask = band_mask(8, "all")
    assert start[..., mask].min() >= 0.8 and start[..., mask].max() <= 1.2
    assert start[..., mask].std() > 0.1, "the factors start uniform in [1 - rho, 1 + rho]"
    result = SA2(trained_unet, rho=0.2, steps=3, band="low", seed=0).run(x, y)
    f = result.extras["factors"]
    low = band_mask(8, "low")
    assert f[..., low].min() >= 0.8 - 1e-6 and f[..., low].max() <= 1.2 + 1e-6
    assert torch.equal(f[..., ~low], torch.ones_like(f[..., ~low])), "outside the band the factor is 1"
    want = blockwise_idct3(blockwise_dct3(x, 8) * f, (32, 32, 32)).clamp(0, 1)
    torch.testing.assert_close(result.adv, want, atol=1e-5, rtol=0)


def test_sa2_lowers_dice_and_keeps_ssim_high(trained_unet, test_case, clean_pred_new):
    from FreqAdvSegmentLib.attacks.measures import summarize

    x = test_case[0]
    adv = SA2(trained_unet, rho=0.2, steps=10, seed=0)(x)
    with torch.no_grad():
        pred = trained_unet(adv).argmax(1, keepdim=True)
    assert mean_dice(pred, clean_pred_new).item() < 0.99
    assert summarize(x, adv)[0]["ssim"] > 0.9


@pytest.fixture(scope="module")
def clean_pred_new(trained_unet, test_case):
    with torch.no_grad():
        return trained_unet(test_case[0]).argmax(1, keepdim=True)


# --- worst-case ensemble --------------------------------------------------------------------------


def test_pick_worst_takes_the_lowest_dice_per_volume():
    dice = torch.tensor([[0.9, 0.2], [0.4, 0.5], [0.4, 0.7]])  # [members, volumes]
    assert pick_worst(dice).tolist() == [1, 0]
    labels = torch.tensor([0, 1, 1, 2]).reshape(1, 1, 4, 1, 1)
    assert mean_dice(labels, labels).item() == 1.0
    assert mean_dice(torch.zeros_like(labels), labels).item() == 0.0


def test_worst_case_keeps_the_strongest_member_and_names_it(trained_unet, test_case):
    x, y = test_case
    result = WorstCase(trained_unet, attacks="fgsm+pgd", eps=8 / 255, steps=5, seed=0).run(x, y)
    dice = result.extras["dice"]
    assert set(dice) == {"fgsm", "pgd"}
    winner = min(dice, key=lambda m: dice[m][0])
    assert result.extras["winner"] == winner
    assert result.extras["budgets"] == {"fgsm": 8 / 255, "pgd": 8 / 255}
    own = {"fgsm": FGSM(trained_unet, eps=8 / 255, seed=0), "pgd": PGD(trained_unet, eps=8 / 255, steps=5, seed=0)}
    torch.testing.assert_close(result.adv, own[winner](x, y))


def test_worst_case_members_keep_their_own_settings(trained_unet):
    mixed = WorstCase(trained_unet, attacks="pgd+apgd:autoattack", eps=1e-4)
    assert [a.eps for a in mixed.attacks] == [1e-4, 1e-4], "one budget for all members"
    assert [a.steps for a in mixed.attacks] == [20, 100], "each member keeps its own steps"
    assert [a.steps for a in WorstCase(trained_unet, attacks="pgd+apgd", steps=3).attacks] == [3, 3]


def test_worst_case_refuses_bad_members(trained_unet):
    with pytest.raises(ValueError, match="unknown attack 'jpeg'"):
        WorstCase(trained_unet, attacks="pgd+jpeg")
    with pytest.raises(ValueError, match="cannot contain itself"):
        WorstCase(trained_unet, attacks="pgd+worst-case")
    for other in ("vafa", "sa2", "gn", "cw"):
        with pytest.raises(ValueError, match=f"^{other} is not an L-inf attack.*one threat model"):
            WorstCase(trained_unet, attacks=f"pgd+{other}")
    with pytest.raises(ValueError, match=r"pgd:eps8 runs at eps 8/255 but the ensemble's budget is 4/255"):
        WorstCase(trained_unet, attacks="pgd:eps8+fgsm")
    assert [a.eps for a in WorstCase(trained_unet, attacks="pgd:eps8+fgsm", eps=8 / 255).attacks] == [8 / 255] * 2


# --- volumes the model cannot take as they are ----------------------------------------------------


@pytest.fixture(scope="module")
def two_level_unet() -> torch.nn.Module:
    torch.manual_seed(0)
    return UNet(3, 1, 3, channels=(4, 8, 16), strides=(2, 2), num_res_units=0).eval()


def test_the_two_level_unet_cannot_take_the_odd_volume_itself(two_level_unet):
    with pytest.raises(RuntimeError, match="Sizes of tensors must match"):
        two_level_unet(torch.rand(1, 1, 30, 27, 21))


@pytest.mark.parametrize("method", registry.names())
def test_every_attack_pads_an_odd_volume_and_crops_back(method, two_level_unet):
    x = torch.rand(1, 1, 30, 27, 21)
    spec = registry.get(method)
    params = {"steps": 1} if "steps" in spec.param_names else {}
    if method == "worst-case":
        params["attacks"] = "pgd+fgsm"
    result = registry.build(method, two_level_unet, params, seed=0).run(x)
    assert result.adv.shape == x.shape and result.adv.min() >= 0 and result.adv.max() <= 1


def test_segmentation_pads_and_padding_keeps_real_voxels_exact(two_level_unet):
    x = torch.rand(1, 1, 30, 27, 21)
    assert segment(two_level_unet, x, None).shape == (1, 1, 30, 27, 21)
    # The logits of the real voxels are those of the padded volume, cropped.
    padded = F.pad(x, (0, 3, 0, 1, 0, 2), mode="replicate")
    with torch.no_grad():
        torch.testing.assert_close(padded_forward(two_level_unet, x), two_level_unet(padded)[..., :30, :27, :21])


def test_a_fixed_size_model_refuses_a_larger_volume_naming_its_size():
    model = UNETR(1, 3, img_size=(16, 16, 16), feature_size=4, hidden_size=32, mlp_dim=64, num_heads=2).eval()
    assert PGD(model, steps=1, seed=0)(torch.rand(1, 1, 12, 16, 10)).shape == (1, 1, 12, 16, 10)
    with pytest.raises(ShapeError, match=r"at most \(16, 16, 16\).*sliding windows"):
        PGD(model, steps=1)(torch.rand(1, 1, 20, 16, 16))


# --- the command line -----------------------------------------------------------------------------


def test_the_new_attacks_run_and_report_from_the_command_line(tmp_path):
    from FreqAdvSegmentLib.cli import main
    from FreqAdvSegmentLib.samples.sample_data import sample_ct_path, sample_labels_path

    out = tmp_path / "new"
    argv = ["attack", str(sample_ct_path()), "--labels", str(sample_labels_path()), "--device", "cpu", "-o", str(out),
            "--steps", "1", "--method", "sa2", "--method", "segpgd", "--method", "cospgd", "--method", "apgd",
            "--method", "worst-case,attacks=fgsm+bim"]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert list(report["attacks"]) == ["sa2", "segpgd", "cospgd", "apgd", "worst-case"]
    for name, entry in report["attacks"].items():
        assert 0 <= entry["vs_reference"]["mean_dice"] <= 1, name
        assert (out / name / "adversarial.nii.gz").is_file()
