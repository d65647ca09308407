"""Tests of FreqAdvSegmentLib.training: regimes, the frequency consistency loss, exact resume,
checkpoint errors, the datalist format, gradient checkpointing, the command line and DDP.

CPU only: synthetic phantoms (32^3 at 2 mm, written as NIfTI) and a UNet with 4 and 8 channels
on 16^3 patches, so every run is a second or two; the DDP test starts 2 gloo processes with
torchrun on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from FreqAdvSegmentLib.models import build_model, load_model
from FreqAdvSegmentLib.samples.phantoms import make_phantom
from FreqAdvSegmentLib.training import TrainConfig, Trainer
from FreqAdvSegmentLib.training.checkpoint import (
    CheckpointError,
    capture_rng_state,
    list_checkpoints,
    load_checkpoint,
    restore_rng_state,
)
from FreqAdvSegmentLib.cli.train import main as train_main
from FreqAdvSegmentLib.training.data import read_datalist
from FreqAdvSegmentLib.training.losses import frequency_consistency_loss
from FreqAdvSegmentLib.training.grad_checkpointing import enable_gradient_checkpointing
from safetensors.torch import load_file
from scipy.fft import dctn

TINY_SPEC = {
    "arch": "unet",
    "arch_args": {"channels": [4, 8], "strides": [2], "num_res_units": 0},
    "target_spacing": [2.0, 2.0, 2.0],
    "roi_size": [16, 16, 16],
}
FAST_ATTACKS = {"steps": 2, "block_size": 8, "q_init": 20.0}


def _write_case(folder: Path, name: str, seed: int, shape=(32, 32, 32)) -> dict[str, str]:
    hu, labels = make_phantom(shape, seed=seed)
    entry = {}
    for key, array in (("image", hu.astype(np.int16)), ("label", labels)):
        image = sitk.GetImageFromArray(array.transpose(2, 1, 0))
        image.SetSpacing((2.0, 2.0, 2.0))
        path = folder / f"{name}_{key}.nii.gz"
        sitk.WriteImage(image, str(path))
        entry[key] = path.name
    return entry


@pytest.fixture(scope="session")
def datalist(tmp_path_factory) -> Path:
    """Two training phantoms and one validation phantom (NIfTI, 2 mm) and their datalist."""
    folder = tmp_path_factory.mktemp("phantom_data")
    cases = [_write_case(folder, f"case{i}", seed=i) for i in range(3)]
    path = folder / "datalist.json"
    path.write_text(json.dumps({"training": cases[:2], "validation": cases[2:]}))
    return path


def _config(datalist: Path, out: Path, **overrides) -> TrainConfig:
    settings = dict(
        datalist=str(datalist), output=str(out), spec=TINY_SPEC, num_samples=2, max_steps=4, lr=1e-2,
        val_every=0, ckpt_every=0, progress=False, threads=1, attack_params=FAST_ATTACKS,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


# --- regimes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("regime", ["natural", "pgd", "fgsm", "bim", "gn", "vafa", "vafa-fr"])
def test_every_regime_trains(regime, datalist, tmp_path):
    result = Trainer(_config(datalist, tmp_path / regime, regime=regime, max_steps=3)).fit()
    assert result.steps == 3 and len(result.losses) == 3
    assert all(np.isfinite(result.losses))
    assert result.losses[-1] < result.losses[0]  # lr 1e-2 on a tiny UNet: a few steps already help
    _, spec = load_model(result.final_model)
    assert spec.arch == "unet" and spec.roi_size == (16, 16, 16)
    log = (tmp_path / regime / "train_log.csv").read_text().splitlines()
    assert log[0].startswith("step,epoch,loss") and len(log) == 4


def test_vaft_logs_all_three_terms_and_weights_them(datalist, tmp_path):
    cfg = _config(datalist, tmp_path / "vaft", regime="vaft", max_steps=1, fr_form="normalized",
                  fr_weight=2.0, clean_weight=0.5)
    assert cfg.regime == "vafa-fr"
    Trainer(cfg).fit()
    row = (tmp_path / "vaft" / "train_log.csv").read_text().splitlines()[1].split(",")
    _, _, loss, clean, adv, fr, *_ = row
    assert float(fr) > 0
    assert float(loss) == pytest.approx(0.5 * float(clean) + float(adv) + 2.0 * float(fr), rel=1e-4)


def test_validation_picks_the_best_model_and_vafa_selection(datalist, tmp_path):
    out = tmp_path / "val"
    result = Trainer(_config(datalist, out, max_steps=4, val_every=1, select_by="vafa",
                             val_attack_steps=1)).fit()
    rows = (out / "val_log.csv").read_text().splitlines()
    assert len(rows) == 3  # header + 2 epochs (2 training cases, batch 1: 2 steps per epoch)
    assert result.best_model == out / "model_best.safetensors" and result.best_metric is not None
    dice_clean, dice_vafa = (float(v) for v in rows[-1].split(",")[2:4])
    assert 0 <= dice_vafa <= 1 and 0 <= dice_clean <= 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["select_by"] == "vafa" and summary["steps"] == 4


def test_fine_tuning_starts_from_init_weights(datalist, tmp_path):
    first = Trainer(_config(datalist, tmp_path / "a", max_steps=2)).fit()
    cfg = _config(datalist, tmp_path / "b", max_steps=1, spec=None, init=str(first.final_model), lr=0.0,
                  export=str(tmp_path / "exported.safetensors"))
    Trainer(cfg).fit()
    start, after, exported = (_weights(p) for p in (first.final_model, tmp_path / "b" / "model_final.safetensors",
                                                     tmp_path / "exported.safetensors"))
    for key in start:  # lr 0: the fine-tuned model is the init model
        assert torch.equal(start[key], after[key]) and torch.equal(after[key], exported[key])


# --- the frequency consistency loss --------------------------------------------------------


def _dct_np(x: np.ndarray, block: int | None) -> np.ndarray:
    """Independent reference: scipy's orthonormal DCT-II per block (or over the whole patch)."""
    if block is None:
        return dctn(x, type=2, norm="ortho", axes=(-3, -2, -1))
    out = np.empty_like(x)
    h, w, d = x.shape[-3:]
    for i in range(0, h, block):
        for j in range(0, w, block):
            for k in range(0, d, block):
                sl = (..., slice(i, i + block), slice(j, j + block), slice(k, k + block))
                out[sl] = dctn(x[sl], type=2, norm="ortho", axes=(-3, -2, -1))
    return out


@pytest.mark.parametrize("shape,block", [((2, 3, 8, 6, 4), None), ((1, 2, 8, 8, 8), None), ((2, 3, 8, 8, 16), 4)])
def test_frequency_loss_matches_scipy_in_both_forms(shape, block):
    rng = np.random.default_rng(0)
    clean, adv = rng.normal(size=shape), rng.normal(size=shape)
    dc, da = _dct_np(clean, block), _dct_np(adv, block)
    want_l1 = np.abs(dc - da).mean()
    want_norm = np.abs(dc - da).sum() / np.abs(dc).sum()
    c, a = torch.tensor(clean, dtype=torch.float32), torch.tensor(adv, dtype=torch.float32)
    assert float(frequency_consistency_loss(c, a, "l1", block)) == pytest.approx(want_l1, rel=1e-4)
    assert float(frequency_consistency_loss(c, a, "normalized", block)) == pytest.approx(want_norm, rel=1e-4)


def test_frequency_loss_is_zero_for_identical_logits_and_flows_into_both_branches():
    logits = torch.randn(2, 14, 8, 8, 8)
    for form in ("l1", "normalized"):
        assert float(frequency_consistency_loss(logits, logits.clone(), form)) == 0.0
    clean = torch.randn(1, 3, 8, 8, 8, requires_grad=True)
    adv = torch.randn(1, 3, 8, 8, 8, requires_grad=True)
    frequency_consistency_loss(clean, adv, "normalized", block=4).backward()
    assert clean.grad.abs().sum() > 0 and adv.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="differ in shape"):
        frequency_consistency_loss(torch.zeros(1, 2, 4, 4, 4), torch.zeros(1, 2, 4, 4, 8))


# --- exact resume ----------------------------------------------------------------------------


def _without_seconds(path: Path) -> list[str]:
    """A CSV log's lines without their last column (wall-clock seconds)."""
    return [line.rsplit(",", 1)[0] for line in path.read_text().splitlines()]


class Crash(RuntimeError):
    """A simulated kill: raised after a step, before any checkpoint of that step."""


def _crash_at(step: int):
    def hook(done: int, losses: dict) -> None:
        if done == step:
            raise Crash(f"killed after step {done}")

    return hook


def test_resume_after_a_kill_gives_the_same_weights(datalist, tmp_path):
    # Every random source at work: augmentation (all probabilities high), PGD-free VAFT with its
    # attack, validation in between, a mid-epoch checkpoint (step 3 of 2-step epochs).
    settings = dict(regime="vafa-fr", max_steps=6, val_every=1, ckpt_every=3, flip_prob=0.5,
                    rot90_prob=0.5, scale_prob=0.5, shift_prob=0.5, warmup_steps=2)
    whole = Trainer(_config(datalist, tmp_path / "whole", **settings)).fit()

    out = tmp_path / "killed"
    with pytest.raises(Crash):
        Trainer(_config(datalist, out, **settings), hook=_crash_at(5)).fit()
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step_00000003.pt", "step_00000004.pt"]
    resumed = Trainer(_config(datalist, out, **settings), resume=True).fit()
    assert resumed.steps == 6 and len(resumed.losses) == 2  # steps 5 and 6 again

    a, b = _weights(whole.final_model), _weights(resumed.final_model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The logs read as if the run had never stopped (only the wall-clock column differs).
    for name in ("train_log.csv", "val_log.csv"):
        assert _without_seconds(tmp_path / "whole" / name) == _without_seconds(out / name)


def test_resume_from_a_mid_epoch_checkpoint_by_path(datalist, tmp_path):
    settings = dict(regime="pgd", max_steps=5, ckpt_every=3)
    whole = Trainer(_config(datalist, tmp_path / "whole", **settings)).fit()
    out = tmp_path / "run"
    with pytest.raises(Crash):
        Trainer(_config(datalist, out, **settings), hook=_crash_at(4)).fit()
    resumed = Trainer(_config(datalist, out, **settings), resume=out / "checkpoints" / "step_00000003.pt").fit()
    a, b = _weights(whole.final_model), _weights(resumed.final_model)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sigint_stops_after_the_step_with_a_checkpoint(datalist, tmp_path):
    out = tmp_path / "sig"

    def interrupt(step, losses):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    result = Trainer(_config(datalist, out, max_steps=6), hook=interrupt).fit()
    assert result.interrupted and result.steps in (2, 3) and result.final_model is None
    assert list_checkpoints(out / "checkpoints")[-1].name == f"step_{result.steps:08d}.pt"
    assert Trainer(_config(datalist, out, max_steps=6), resume=True).fit().steps == 6


def test_a_new_run_refuses_a_folder_with_checkpoints_and_resume_refuses_other_settings(datalist, tmp_path):
    out = tmp_path / "run"
    Trainer(_config(datalist, out, max_steps=2, ckpt_every=1)).fit()
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(_config(datalist, out, max_steps=2))
    with pytest.raises(ValueError, match="lr: 0.01 -> 0.5"):
        Trainer(_config(datalist, out, max_steps=4, lr=0.5), resume=True)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        Trainer(_config(datalist, tmp_path / "empty"), resume=True)


def test_checkpoints_load_with_weights_only_and_hold_rng_states(datalist, tmp_path):
    out = tmp_path / "run"
    Trainer(_config(datalist, out, max_steps=2, ckpt_every=1)).fit()
    path = list_checkpoints(out / "checkpoints")[-1]
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "freqadv-train-checkpoint" and raw["step"] == 2
    assert set(raw["rng"][0]) == {"torch", "numpy", "python", "cuda"}
    state = capture_rng_state()
    expected = (torch.rand(3), np.random.rand(3), __import__("random").random())
    restore_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), __import__("random").random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]


def test_corrupt_and_foreign_checkpoints_get_clear_errors(datalist, tmp_path):
    out = tmp_path / "run"
    Trainer(_config(datalist, out, max_steps=1, ckpt_every=1)).fit()
    good = list_checkpoints(out / "checkpoints")[-1]

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        Trainer(_config(datalist, out, max_steps=1), resume=truncated)

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(1000))
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(garbage)

    weights = tmp_path / "weights.pt"
    torch.save({"state_dict": build_model(load_model(out / "model_final.safetensors")[1]).state_dict()}, weights)
    with pytest.raises(CheckpointError, match="holds model weights.*--init"):
        load_checkpoint(weights)

    other = tmp_path / "other.pt"
    torch.save({"epoch": 3, "note": "someone else's"}, other)
    with pytest.raises(CheckpointError, match="not a FreqAdvSegment training checkpoint"):
        load_checkpoint(other)

    newer = tmp_path / "newer.pt"
    content = torch.load(good, weights_only=True)
    content["version"] = 99
    torch.save(content, newer)
    with pytest.raises(CheckpointError, match="upgrade"):
        load_checkpoint(newer)


# --- data ------------------------------------------------------------------------------------

BTCV_TRAIN = (5, 6, 7, 9, 10, 21, 23, 24, 26, 27, 28, 30, 31, 33, 34, 37, 39, 40)
BTCV_VAL = (1, 2, 3, 4, 8, 22, 25, 29, 32, 35, 36, 38)


def _btcv_datalist(folder: Path) -> Path:
    """The paper's dataset_synapse_18_12.json layout (metadata, 'test' without labels, 18/12)."""

    def entry(i: int) -> dict[str, str]:
        return {"image": f"imagesTr/img{i:04d}.nii.gz", "label": f"labelsTr/label{i:04d}.nii.gz"}

    data = {
        "description": "btcv yucheng", "labels": {"0": "background", "1": "spleen"}, "licence": "yt",
        "modality": {"0": "CT"}, "name": "btcv", "numTest": 20, "numTraining": 80,
        "tensorImageSize": "3D", "test": [{"image": f"imagesTs/img{i:04d}.nii.gz"} for i in range(61, 81)],
        "training": [entry(i) for i in BTCV_TRAIN], "validation": [entry(i) for i in BTCV_VAL],
    }
    path = folder / "dataset_synapse_18_12.json"
    path.write_text(json.dumps(data, indent=4))
    return path


def test_the_papers_btcv_18_12_datalist_loads_as_is(tmp_path):
    path = _btcv_datalist(tmp_path)
    train = read_datalist(path, "training")
    val = read_datalist(path, "validation")
    assert len(train) == 18 and len(val) == 12
    assert train[0] == {"image": str(tmp_path / "imagesTr/img0005.nii.gz"),
                        "label": str(tmp_path / "labelsTr/label0005.nii.gz")}
    root = tmp_path / "elsewhere"
    assert read_datalist(path, "validation", data_root=root)[-1]["label"] == str(root / "labelsTr/label0038.nii.gz")
    with pytest.raises(ValueError, match=r"test\[0\].*'label'"):
        read_datalist(path, "test")
    with pytest.raises(ValueError, match="no 'nope' list"):
        read_datalist(path, "nope")


def test_a_run_on_the_btcv_layout_and_missing_files_are_named(tmp_path):
    path = _btcv_datalist(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"36 file\(s\) of the training split"):
        Trainer(_config(path, tmp_path / "run", max_steps=1))
    for sub in ("imagesTr", "labelsTr"):
        (tmp_path / sub).mkdir()
    for i in BTCV_TRAIN + BTCV_VAL:
        entry = _write_case(tmp_path, f"c{i}", seed=i, shape=(16, 16, 16))
        os.replace(tmp_path / entry["image"], tmp_path / f"imagesTr/img{i:04d}.nii.gz")
        os.replace(tmp_path / entry["label"], tmp_path / f"labelsTr/label{i:04d}.nii.gz")
    trainer = Trainer(_config(path, tmp_path / "run", max_steps=1, batch_size=6, val_every=1))
    assert len(trainer.train_cases) == 18 and len(trainer.val_data) == 12
    assert trainer.steps_per_epoch == 3
    assert trainer.fit().steps == 1


def test_augmentation_is_a_function_of_seed_and_draw(datalist, tmp_path):
    cfg = _config(datalist, tmp_path / "x", flip_prob=0.5, rot90_prob=0.5, scale_prob=0.5, shift_prob=0.5)
    a, b = Trainer(cfg), Trainer(cfg)
    first = a.loader.dataset[(0, 7)]
    assert all(torch.equal(torch.as_tensor(p["image"]), torch.as_tensor(q["image"]))
               for p, q in zip(first, b.loader.dataset[(0, 7)]))
    other = a.loader.dataset[(0, 8)]
    assert not all(torch.equal(torch.as_tensor(p["image"]), torch.as_tensor(q["image"])) for p, q in zip(first, other))


def test_slab_augmentation_zeroes_image_and_labels_outside_one_slab():
    from FreqAdvSegmentLib.training.data import RandSlabd

    slab = RandSlabd(["image", "label"], prob=1.0)
    slab.set_random_state(seed=3)
    image, label = torch.rand(1, 24, 24, 24) + 0.1, torch.ones(1, 24, 24, 24, dtype=torch.long)
    for _ in range(5):
        out = slab({"image": image, "label": label})
        kept = out["image"][0] != 0
        assert torch.equal(kept, out["label"][0] != 0)
        profiles = [kept.any(dim=tuple(d for d in range(3) if d != axis)) for axis in range(3)]
        cut = [p for p in profiles if not p.all()]
        assert len(cut) == 1  # one axis is cut
        rows = torch.nonzero(cut[0])[:, 0]
        thickness = len(rows)
        assert 8 <= thickness <= 24 - 8 and rows[-1] - rows[0] + 1 == thickness  # contiguous
        assert int(kept.sum()) == thickness * 24 * 24


# --- memory ----------------------------------------------------------------------------------


def test_gradient_checkpointing_gives_the_same_gradients():
    from FreqAdvSegmentLib.models import ModelSpec

    spec = ModelSpec.from_dict(TINY_SPEC)
    torch.manual_seed(0)
    plain = build_model(spec).train()
    wrapped = build_model(spec).train()
    wrapped.load_state_dict(plain.state_dict())
    assert enable_gradient_checkpointing(wrapped) > 0
    x = torch.rand(1, 1, 16, 16, 16)
    for model in (plain, wrapped):
        model(x).square().mean().backward()
    for (name, p), q in zip(plain.named_parameters(), wrapped.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), name
    assert set(plain.state_dict()) == set(wrapped.state_dict())


def test_every_trainable_unetr_parameter_gets_a_gradient():
    """DDP (find_unused_parameters=False) needs a gradient for every trainable parameter; MONAI's
    UNETR carries unused norm_cross_attn layers, which the trainer freezes."""
    from FreqAdvSegmentLib.models import ModelSpec
    from FreqAdvSegmentLib.training.trainer import freeze_unused_parameters

    spec = ModelSpec(arch="unetr", roi_size=(32, 32, 32), arch_args={
        "img_size": [32, 32, 32], "feature_size": 4, "hidden_size": 24, "mlp_dim": 48, "num_heads": 2,
        "proj_type": "perceptron"})
    model = build_model(spec).train()
    frozen = freeze_unused_parameters(model)
    assert frozen and all("norm_cross_attn" in name for name in frozen)
    model(torch.rand(1, 1, 32, 32, 32)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


# --- command line ----------------------------------------------------------------------------


def test_command_line_trains_resumes_and_reports_errors(datalist, tmp_path, capsys):
    out = tmp_path / "cli"
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(TINY_SPEC))
    args = [str(datalist), "-o", str(out), "--spec", str(spec), "--regime", "vafa-fr", "--max-steps", "2",
            "--num-samples", "1", "--attack-steps", "1", "--block-size", "8", "--fr-form", "normalized",
            "--val-every", "0", "--ckpt-every", "1", "--no-progress", "--threads", "1", "--flip-axes", "1,2"]
    assert train_main(args) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["regime"] == "vafa-fr" and config["fr_form"] == "normalized" and config["flip_axes"] == [1, 2]
    assert config["attack_params"] == {"steps": 1, "block_size": 8}
    # Resume needs only the folder; a longer run is allowed, a different regime is not.
    assert train_main(["-o", str(out), "--resume", "--max-steps", "3"]) == 0
    assert json.loads((out / "summary.json").read_text())["steps"] == 3
    assert train_main(["-o", str(out), "--resume", "--regime", "pgd"]) == 2
    assert "cannot resume with different settings (regime" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert train_main(["-o", str(out), "--resume", str(bad)]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err
    assert train_main([str(datalist), "-o", str(tmp_path / "none")]) == 2
    assert "--init MODEL" in capsys.readouterr().err


# --- many processes --------------------------------------------------------------------------

DDP_WORKER = textwrap.dedent(
    """
    import json, sys
    import torch
    from FreqAdvSegmentLib.job.pipeline import AttackRequest, RunOptions
    from FreqAdvSegmentLib.evaluation.distributed_eval import evaluate_datalist_distributed
    from FreqAdvSegmentLib.training import TrainConfig, Trainer
    from FreqAdvSegmentLib.training.distributed import cleanup, init_distributed

    datalist, out, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    assert ctx.world_size == 2, ctx
    cfg = TrainConfig(datalist=datalist, output=out + "/run", spec=spec, regime="vafa-fr", num_samples=1,
                      max_steps=2, lr=1e-2, val_every=1, ckpt_every=1, progress=False,
                      attack_params={"steps": 1, "block_size": 8})
    trainer = Trainer(cfg, ctx)
    before = {k: v.clone() for k, v in trainer.net.state_dict().items()}
    result = trainer.fit()
    torch.save({"before": before, "after": trainer.net.state_dict(), "steps": result.steps},
               f"{out}/rank{ctx.rank}.pt")
    evaluate_datalist_distributed(datalist, [out + "/run/model_final.safetensors"], [AttackRequest("fgsm")],
                                  out + "/eval", RunOptions(), split="training", ctx=ctx)
    cleanup(ctx)  # leave the process group together (a rank exiting inside it can abort)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_gloo_ranks_agree_and_evaluation_is_sharded(datalist, tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(DDP_WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for _ in range(2):  # a second try only if another process took the free port meanwhile
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
               str(worker), str(datalist), str(tmp_path), json.dumps(TINY_SPEC)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=240, check=False)
        if "address already in use" not in proc.stderr.lower():
            break
    assert proc.returncode == 0, proc.stderr[-3000:]

    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["steps"] == ranks[1]["steps"] == 2
    for key, value in ranks[0]["after"].items():
        assert torch.equal(value, ranks[1]["after"][key]), key  # DDP kept the replicas identical
    assert any(not torch.equal(ranks[0]["before"][k], v) for k, v in ranks[0]["after"].items())
    # Only rank 0 wrote: one run folder, one final model equal to the replicas' weights.
    final = _weights(tmp_path / "run" / "model_final.safetensors")
    assert all(torch.equal(final[k], ranks[0]["after"][k]) for k in final)
    assert (tmp_path / "run" / "val_log.csv").read_text().count("\n") == 3  # header + 2 validations

    # Sharded evaluation: both training cases, in datalist order, as one process writes them.
    rows = (tmp_path / "eval" / "results.csv").read_text().splitlines()
    cases = [r.split(",")[1] for r in rows[1:]]
    assert cases == ["case0_image.nii.gz", "case0_image.nii.gz", "case1_image.nii.gz", "case1_image.nii.gz"]
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    model = str(tmp_path / "run" / "model_final.safetensors")
    assert summary[model]["clean"]["cases"] == 2 and summary[model]["fgsm"]["cases"] == 2
