#!/usr/bin/env python
"""Train the shipped demo model (a small 3D MONAI UNet, BTCV labels) on patient A, on the CPU.

The recipe follows the paper's UNETR/BTCV training (Hanif et al., MICCAI 2023; MONAI's BTCV
tutorial), scaled down to a couple of CPU cores:

* data: patient A only (``sample_data.sample_ct_path()``), preprocessed exactly as the model's
  spec says (RAS, 3 mm isotropic, window -175..250 HU -> [0, 1]); patient B is never seen here
  except in the final evaluation;
* random cubic crops centred on an organ voxel (``--pos-fraction`` of them, organ chosen
  uniformly among those present, like MONAI's ``RandCropByLabelClasses``) or on any voxel;
* random flips along the A-P and S-I axes, small random intensity scale and shift;
* "slab" crops (``--slab-prob``): all but a random slab zeroed, so that thin scans, which
  sliding-window inference zero-pads, are not out of distribution (see :func:`slab`);
* MONAI ``DiceCELoss(to_onehot_y=True, softmax=True)``, AdamW (lr 1e-3) with cosine decay;
* everything seeded (``--seed``): the crop sampler uses its own numpy Generator.

Afterwards the model is evaluated with ``monai.inferers.sliding_window_inference`` (roi = the
spec's roi_size) on patient A (training data) and on the held-out patient B, and the per-organ
Dice goes to a JSON report next to the weights. Caveat: both patients' labels are
TotalSegmentator's model output (silver standard), not manual annotation.

Usage::

    python scripts/train_demo_model.py --steps 5 --out /tmp/x.safetensors   # time a few steps
    python scripts/train_demo_model.py                                        # the shipped model
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_PARENT = REPO_ROOT / "FreqAdvSegment"
if str(PACKAGE_PARENT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(PACKAGE_PARENT))

import monai  # noqa: E402
from monai.inferers import sliding_window_inference  # noqa: E402
from monai.losses import DiceCELoss  # noqa: E402

from FreqAdvSegmentLib.files.images import read_image  # noqa: E402
from FreqAdvSegmentLib.organs import BTCV_LABELS  # noqa: E402
from FreqAdvSegmentLib.evaluation.metrics import segmentation_metrics  # noqa: E402
from FreqAdvSegmentLib.models import ModelSpec, build_model, save_model  # noqa: E402
from FreqAdvSegmentLib.job.preprocess import Preprocessing, prepare, prepare_labels  # noqa: E402
from FreqAdvSegmentLib.samples.sample_data import (  # noqa: E402
    PREPARE_HELDOUT_COMMAND,
    heldout_patient_paths,
    sample_ct_path,
    sample_labels_path,
)

MODELS_DIR = PACKAGE_PARENT / "FreqAdvSegmentLib" / "resources" / "models"
DEFAULT_OUT = MODELS_DIR / "demo_unet.safetensors"
LABEL_CAVEAT = (
    "Reference labels are TotalSegmentator's own model output (silver standard; Wasserthal et "
    "al., Radiology: AI 2023), not manual annotation: Dice measures agreement with "
    "TotalSegmentator, not with ground truth. Patient A is the training volume, so its Dice "
    "only shows that training converged; patient B (a different, contrast-enhanced 20-slice "
    "scan) is the only held-out figure and is a single patient."
)
# Index-axis flips allowed as augmentation. Axis 0 is the patient's left-right axis in RAS:
# flipping it would put the liver on the left while the labels still say "right kidney", so
# it is excluded; flips along A-P (1) and S-I (2) keep every left/right label meaningful.
FLIP_AXES: tuple[int, ...] = (1, 2)
# Thickness (slices at 3 mm) of the thin-coverage check on patient A: 42 mm, about the 40 mm
# that a 20-slice, 2 mm series covers.
SLAB_SLICES = 14


def demo_spec() -> ModelSpec:
    """The demo model's spec: MONAI UNet 16-32-64-128, 1 residual unit, 14 BTCV labels, 3 mm."""
    return ModelSpec(
        arch="unet",
        arch_args={
            "in_channels": 1,
            "out_channels": len(BTCV_LABELS),
            "channels": (16, 32, 64, 128),
            "strides": (2, 2, 2),
            "num_res_units": 1,
        },
        label_names=BTCV_LABELS,
        intensity_window=(-175.0, 250.0),
        target_spacing=(3.0, 3.0, 3.0),
        roi_size=(128, 112, 112),
        orientation="RAS",
    )


@dataclass(frozen=True)
class Volume:
    """One preprocessed patient on the model grid.

    Attributes:
        image: float32 [1, 1, H, W, D] in [0, 1].
        labels: int64 [1, 1, H, W, D], BTCV values 0..13.
        spacing: voxel size in mm along (H, W, D).
    """

    image: torch.Tensor
    labels: torch.Tensor
    spacing: tuple[float, float, float]


def load_volume(ct_path: Path, labels_path: Path, spec: ModelSpec) -> Volume:
    """Read a CT and its label map and bring both onto the spec's model grid."""
    prep = Preprocessing(spec.target_spacing, spec.intensity_window, spec.orientation)
    image, ctx = prepare(read_image(ct_path), prep)
    labels = prepare_labels(read_image(labels_path), ctx)
    return Volume(image, labels, ctx.model.spacing)


# ---------------------------------------------------------------------------------------------
# Crop sampling and augmentation
# ---------------------------------------------------------------------------------------------


class CropSampler:
    """Seeded random cubic crops of one volume, organ-centred or anywhere.

    Positive crops pick an organ uniformly among those present and then one of its voxels as
    the centre, so 166-voxel adrenals are sampled as often as the 41,692-voxel liver (with
    plain foreground sampling the liver would dominate). Crops are shifted to lie inside the
    volume, as MONAI's ``RandCropByPosNegLabel`` does.
    """

    def __init__(self, volume: Volume, size: int, pos_fraction: float, rng: np.random.Generator):
        labels = volume.labels[0, 0].numpy()
        if min(labels.shape) < size:
            raise ValueError(f"crop size {size} exceeds the volume {labels.shape}")
        self.image = volume.image[0]  # [1, H, W, D]
        self.labels = volume.labels[0]  # [1, H, W, D]
        self.size = size
        self.pos_fraction = pos_fraction
        self.rng = rng
        # Flat voxel indices per present organ, and of all voxels' grid shape for unravelling.
        self.shape = labels.shape
        self.organ_voxels = [np.flatnonzero(labels == c) for c in range(1, int(labels.max()) + 1)]
        self.organ_voxels = [v for v in self.organ_voxels if v.size]

    def centre(self) -> np.ndarray:
        """A crop centre (3 voxel indices): an organ voxel or a uniformly random voxel."""
        if self.rng.random() < self.pos_fraction:
            voxels = self.organ_voxels[self.rng.integers(len(self.organ_voxels))]
            return np.array(np.unravel_index(voxels[self.rng.integers(voxels.size)], self.shape))
        return np.array([self.rng.integers(n) for n in self.shape])

    def crop(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One crop: image [1, S, S, S] float32 and labels [1, S, S, S] int64 (S = size)."""
        start = self.centre() - self.size // 2
        start = np.clip(start, 0, np.array(self.shape) - self.size)
        region = tuple(slice(int(s), int(s) + self.size) for s in start)
        return self.image[(slice(None), *region)], self.labels[(slice(None), *region)]


def slab(
    image: torch.Tensor, labels: torch.Tensor, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep a random slab of one crop (image, labels: [1, S, S, S]) and zero the rest.

    ``sliding_window_inference`` zero-pads any volume thinner than the roi (128 x 112 x 112):
    a 20-slice series becomes a window that is ~85 % padding. Trained only on crops full of
    anatomy, the network segments nothing there (checked on 14- and 40-slice slabs of patient
    A). Zeroing all but a slab 8..S-8 voxels thick, along a random axis, shows it such windows;
    the zeroed part is background (label 0), exactly as the padding is at inference.
    """
    size = image.shape[1]
    axis = int(rng.integers(3))
    thickness = int(rng.integers(8, size - 7))
    start = int(rng.integers(0, size - thickness + 1))
    keep = torch.zeros(size, dtype=torch.bool)
    keep[start : start + thickness] = True
    view = [1, 1, 1, 1]
    view[axis + 1] = size
    keep = keep.view(view)
    return image * keep, labels * keep


def augment(
    image: torch.Tensor, labels: torch.Tensor, rng: np.random.Generator, args: argparse.Namespace
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flips, intensity scale/shift and slabs of one crop (image, labels: [1, S, S, S]).

    Intensity changes act on the windowed [0, 1] values, as the paper's RandScaleIntensity /
    RandShiftIntensity do; they are not clipped back, so the network also sees values outside
    [0, 1], as it will for adversarial inputs. Slabs come last so that their padding stays
    exactly 0, the value sliding-window inference pads with.
    """
    for axis in FLIP_AXES:
        if rng.random() < args.flip_prob:
            image, labels = image.flip(axis + 1), labels.flip(axis + 1)
    if rng.random() < args.intensity_prob:
        scale = 1.0 + rng.uniform(-args.intensity_scale, args.intensity_scale)
        shift = rng.uniform(-args.intensity_shift, args.intensity_shift)
        image = image * scale + shift
    if rng.random() < args.slab_prob:
        image, labels = slab(image, labels, rng)
    return image, labels


def make_batch(
    sampler: CropSampler, rng: np.random.Generator, args: argparse.Namespace
) -> tuple[torch.Tensor, torch.Tensor]:
    """``args.batch`` augmented crops: images [B, 1, S, S, S], labels [B, 1, S, S, S]."""
    pairs = [augment(*sampler.crop(), rng, args) for _ in range(args.batch)]
    images = torch.stack([p[0] for p in pairs]).contiguous()
    labels = torch.stack([p[1] for p in pairs]).contiguous()
    return images, labels


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch (weights init) and return the numpy Generator that drives all sampling."""
    torch.manual_seed(seed)
    np.random.seed(seed)  # nothing here uses the global numpy RNG; seeded in case MONAI does
    return np.random.default_rng(seed)


def train(
    model: torch.nn.Module, sampler: CropSampler, rng: np.random.Generator, args: argparse.Namespace
) -> tuple[list[float], float]:
    """Train ``model`` in place for ``args.steps`` steps.

    Returns:
        (per-step losses, wall seconds of the loop).
    """
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    # Cosine decay to zero over the whole run, stepped per iteration.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(args.steps, 1))
    model.train()
    losses: list[float] = []
    start = time.perf_counter()
    bar = tqdm(range(args.steps), desc="train", unit="step", dynamic_ncols=True)
    for _ in bar:
        images, labels = make_batch(sampler, rng, args)
        optimiser.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), labels)
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", lr=f"{schedule.get_last_lr()[0]:.1e}")
    return losses, time.perf_counter() - start


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def predict(model: torch.nn.Module, image: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """Sliding-window labels [H, W, D] (int64) for an image [1, 1, H, W, D]."""
    model.eval()
    logits = sliding_window_inference(
        image, roi_size=spec.roi_size, sw_batch_size=1, predictor=model, overlap=0.25
    )
    return logits.argmax(1)[0]


def evaluate(model: torch.nn.Module, volume: Volume, spec: ModelSpec) -> dict[str, Any]:
    """Per-organ Dice and the mean over organs present in the reference (background excluded).

    ``segmentation_metrics`` also counts organs predicted but absent from the reference (Dice 0)
    in its ``mean_dice``; that stricter figure is kept as ``mean_dice_incl_false_organs``.
    """
    pred = predict(model, volume.image, spec)
    metrics = segmentation_metrics(pred, volume.labels, volume.spacing, spec.label_names)
    organs = {
        name: {
            "dice": _rounded(m.dice),
            "hd95_mm": _rounded(m.hd95_mm),
            "ref_voxels": m.ref_voxels,
            "pred_voxels": m.pred_voxels,
        }
        for name, m in metrics.per_class.items()
    }
    present = [m.dice for m in metrics.per_class.values() if m.ref_voxels > 0]
    return {
        "shape": list(volume.image.shape[2:]),
        "mean_dice": _rounded(float(np.mean(present))) if present else None,
        "organs_in_reference": len(present),
        "mean_dice_incl_false_organs": _rounded(metrics.mean_dice),
        "per_organ": organs,
    }


def central_slab(volume: Volume, slices: int = SLAB_SLICES) -> Volume:
    """The ``slices``-thick slab of a volume (along D) centred on its organs' mean slice.

    A thin-coverage scan made from patient A: tests, without any held-out data, whether the
    model copes with windows that sliding-window inference has mostly zero-padded.
    """
    organ_slices = torch.nonzero(volume.labels[0, 0] > 0)[:, 2].float()
    depth = volume.image.shape[-1]
    start = int(min(max(round(organ_slices.mean().item()) - slices // 2, 0), depth - slices))
    cut = (..., slice(start, start + slices))
    return Volume(volume.image[cut].contiguous(), volume.labels[cut].contiguous(), volume.spacing)


def _rounded(value: float) -> float | None:
    """4 decimals for the report; None (JSON null) for NaN."""
    return None if value is None or math.isnan(value) else round(float(value), 4)


def print_evaluation(name: str, result: dict[str, Any]) -> None:
    """Per-organ Dice table on stdout."""
    print(f"\n{name}: mean Dice {result['mean_dice']} over {result['organs_in_reference']} organs")
    for organ, m in result["per_organ"].items():
        if m["ref_voxels"] or m["pred_voxels"]:
            dice = "  n/a " if m["dice"] is None else f"{m['dice']:.3f}"
            print(f"  {organ:26s} {dice}  ref {m['ref_voxels']:6d}  pred {m['pred_voxels']:6d}")


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def file_facts(path: Path) -> dict[str, Any]:
    """Size and sha256 of a written file."""
    data = path.read_bytes()
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def write_json_atomically(path: Path, content: dict[str, Any]) -> None:
    """Write JSON to a temporary sibling and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(content, file, indent=2)
            file.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; the report ships with the package
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_report(
    args: argparse.Namespace,
    spec: ModelSpec,
    losses: list[float],
    seconds: float,
    evaluations: dict[str, Any],
) -> dict[str, Any]:
    """Everything worth knowing about this training run, JSON-ready."""
    tail = losses[-min(50, len(losses)) :] if losses else [float("nan")]
    return {
        "model": args.out.name,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python scripts/train_demo_model.py "
        + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "spec": spec.to_dict(),
        "training": {
            "data": "patient A only (shipped sample CT, TotalSegmentator 2.4.0 example_ct)",
            "steps": args.steps,
            "seconds": round(seconds, 1),
            "seconds_per_step": round(seconds / max(args.steps, 1), 3),
            "final_loss_mean_last_50": _rounded(float(np.mean(tail))),
            "loss_first_step": _rounded(losses[0]) if losses else None,
            "crop": args.crop,
            "batch": args.batch,
            "pos_fraction": args.pos_fraction,
            "flip_axes": list(FLIP_AXES),
            "flip_prob": args.flip_prob,
            "intensity": {
                "prob": args.intensity_prob,
                "scale": args.intensity_scale,
                "shift": args.intensity_shift,
            },
            "slab_prob": args.slab_prob,
            "loss": "monai DiceCELoss(to_onehot_y=True, softmax=True)",
            "optimiser": f"AdamW(lr={args.lr}, weight_decay={args.weight_decay}), cosine decay",
            "seed": args.seed,
            "threads": args.threads,
        },
        "evaluation": {
            "inference": (
                f"sliding_window_inference(roi_size={list(spec.roi_size)}, overlap=0.25), "
                "argmax; mean Dice over organs present in the reference, background excluded"
            ),
            "patient_A_slab_note": (
                f"patient_A_slab: the {SLAB_SLICES} slices of patient A (training data) centred "
                "on its organs, i.e. a thin-coverage scan that the sliding window zero-pads"
            ),
            **evaluations,
        },
        "caveat": LABEL_CAVEAT,
        "weights_file": file_facts(args.out),
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "monai": monai.__version__,
            "machine": platform.machine(),
        },
    }


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (defaults: the shipped model's recipe)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1200, help="optimiser steps")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .safetensors")
    p.add_argument("--report", type=Path, default=None, help="JSON report (default: --out .json)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--crop", type=int, default=64, help="cubic crop edge in voxels")
    p.add_argument("--batch", type=int, default=2, help="crops per step")
    p.add_argument("--pos-fraction", type=float, default=0.67, help="share of organ-centred crops")
    p.add_argument("--flip-prob", type=float, default=0.1, help="per allowed axis")
    p.add_argument("--intensity-prob", type=float, default=0.5)
    p.add_argument("--intensity-scale", type=float, default=0.1, help="x (1 +- this)")
    p.add_argument("--intensity-shift", type=float, default=0.1, help="+- this, in [0, 1] units")
    p.add_argument("--slab-prob", type=float, default=0.4, help="share of slab crops")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-5)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation and the report")
    args = p.parse_args(argv)
    if args.steps < 1 or args.crop % 8 or args.crop < 16:
        p.error(
            "--steps must be >= 1 and --crop a multiple of 8 (the UNet downsamples 3 times), "
            "at least 16"
        )
    args.report = args.report or args.out.with_suffix(".json")
    return args


def main(argv: list[str] | None = None) -> int:
    """Train, save, evaluate on patients A and B, write the report."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = seed_everything(args.seed)
    spec = demo_spec()
    patient_a = load_volume(sample_ct_path(), sample_labels_path(), spec)
    model = build_model(spec)
    sampler = CropSampler(patient_a, args.crop, args.pos_fraction, rng)
    losses, seconds = train(model, sampler, rng, args)
    print(
        f"trained {args.steps} steps in {seconds:.0f} s; loss (last 50) {np.mean(losses[-50:]):.4f}"
    )
    save_model(args.out, model.eval(), spec)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    if args.no_eval:
        return 0
    evaluations = {"patient_A_train": evaluate(model, patient_a, spec)}
    print_evaluation("patient A (training volume)", evaluations["patient_A_train"])
    evaluations["patient_A_slab"] = evaluate(model, central_slab(patient_a), spec)
    print_evaluation(f"patient A, central {SLAB_SLICES}-slice slab", evaluations["patient_A_slab"])
    try:
        patient_b = load_volume(*heldout_patient_paths(), spec)
    except FileNotFoundError:
        print(f"patient B missing: run `{PREPARE_HELDOUT_COMMAND}` for the held-out evaluation")
    else:
        evaluations["patient_B_heldout"] = evaluate(model, patient_b, spec)
        print_evaluation("patient B (held out)", evaluations["patient_B_heldout"])
    write_json_atomically(args.report, build_report(args, spec, losses, seconds, evaluations))
    print(f"\nwrote {args.report}\n{LABEL_CAVEAT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
