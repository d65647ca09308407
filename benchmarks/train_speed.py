"""Training steps per second: natural, PGD-AT and VAFT on the same model and batch.

Each regime runs the real ``Trainer`` step (attack in eval mode, the regime's loss, AdamW, the
schedule) on one fixed batch, so the figures measure computation only (data loading excluded).
VAFT pays for the attack's steps (a forward and an input-gradient backward each) plus two
training passes (clean and adversarial); PGD-AT for its steps plus one pass.

    python benchmarks/train_speed.py                                  # CPU: demo UNet, 2 x 32^3
    python benchmarks/train_speed.py --size 48 --attack-steps 20      # closer to the paper
    python benchmarks/train_speed.py --device cuda --arch paper_unetr --size 96 --batch 4

Data: one synthetic phantom (``FreqAdvSegmentLib.samples.phantoms``), written to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from FreqAdvSegmentLib.samples.phantoms import make_phantom, phantom_batch
from FreqAdvSegmentLib.training import TrainConfig, Trainer

DEMO_UNET = {"arch": "unet", "arch_args": {"channels": [16, 32, 64, 128], "strides": [2, 2, 2], "num_res_units": 1},
             "target_spacing": [3.0, 3.0, 3.0]}


def write_datalist(folder: Path, size: int) -> Path:
    hu, labels = make_phantom((size, size, size), seed=0)
    for name, array in (("image", hu.astype(np.int16)), ("label", labels)):
        image = sitk.GetImageFromArray(array.transpose(2, 1, 0))
        image.SetSpacing((3.0, 3.0, 3.0))
        sitk.WriteImage(image, str(folder / f"{name}.nii.gz"))
    path = folder / "datalist.json"
    path.write_text(json.dumps({"training": [{"image": "image.nii.gz", "label": "label.nii.gz"}]}))
    return path


def steps_per_second(trainer: Trainer, batch: dict, repeats: int) -> float:
    """Median rate over ``repeats`` steps, after one warm-up step."""
    trainer._train_step(batch)
    times = []
    for _ in range(repeats):
        if trainer.ctx.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        trainer._train_step(batch)
        if trainer.ctx.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1.0 / float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--arch", default="demo_unet", choices=["demo_unet", "paper_unetr"])
    parser.add_argument("--size", type=int, default=32, help="cubic patch side (default 32)")
    parser.add_argument("--batch", type=int, default=2, help="patches per step (default 2)")
    parser.add_argument("--attack-steps", type=int, default=20, help="PGD and VAFA steps (paper: 20)")
    parser.add_argument("--block-size", type=int, default=None, help="VAFA block (default: 32, the paper's AT, or the patch if smaller)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    block = args.block_size or min(32, args.size)
    with tempfile.TemporaryDirectory() as tmp:
        datalist = write_datalist(Path(tmp), args.size)
        images, labels = phantom_batch(args.batch, (args.size,) * 3, seed=1)
        batch = {"image": images, "label": labels}
        rates = {}
        for regime in ("natural", "pgd", "vafa-fr"):
            cfg = TrainConfig(
                datalist=str(datalist), output=str(Path(tmp) / regime), regime=regime,
                spec=None if args.arch == "paper_unetr" else {**DEMO_UNET, "roi_size": [args.size] * 3},
                arch="paper_unetr" if args.arch == "paper_unetr" else None,
                crop=[args.size] * 3, device=args.device, val_every=0, ckpt_every=0, progress=False,
                tensorboard=False, max_steps=1000, num_samples=1,
                attack_params={"steps": args.attack_steps, "block_size": block, "q_init": 20.0},
            )
            trainer = Trainer(cfg)
            rates[regime] = steps_per_second(trainer, batch, args.repeats)
    print(f"device {args.device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), "
          f"{args.arch}, batch {args.batch} x {args.size}^3, attack steps {args.attack_steps}, VAFA block {block}, "
          f"torch {torch.__version__}")
    for regime, rate in rates.items():
        print(f"  {regime:8s} {rate:8.3f} steps/s  ({1 / rate:7.2f} s/step)")
    print(f"  VAFT / natural time per step: {rates['natural'] / rates['vafa-fr']:.1f}x   "
          f"PGD-AT / natural: {rates['natural'] / rates['pgd']:.1f}x")


if __name__ == "__main__":
    main()
