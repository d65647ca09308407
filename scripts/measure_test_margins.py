"""Measure the Dice figures the attack tests' thresholds rest on, over phantom seeds and threads.

The tests use the shipped fixture UNet (Testing/data/fixture_unet.safetensors) and a held-out
phantom (seed 100 by default; FREQADV_TEST_PHANTOM_SEED picks another). A threshold must hold
for every seed and thread count, not for one run; this prints, per setting, the mean foreground
Dice of the attacked prediction against the clean one, so the margins can be read off:

    PYTHONPATH=FreqAdvSegment python scripts/measure_test_margins.py --seeds 100 101 102 --threads 1 2

Each thread count runs in its own process (torch fixes its thread pool at start-up).

Measured on the 2-core CPU machine (2026-12-04), mean foreground Dice against the clean prediction;
1 and 2 threads gave identical figures to the third decimal for every seed measured:

    seed  vafa paper  vafa q_max start  gn at vafa's rms  pgd    fgsm   bim    cw     gn 16/255
    100   0.986       0.522             0.94 (3 noise seeds 0.936-0.951)  0.100  0.352  0.089  0.565  0.664
    101   0.980       0.480             0.917             0.117  0.297  0.129  0.487  0.470
    102   0.987       0.394             0.95 (0.947-0.956)  0.056  0.345  0.151  0.608  0.731

Thresholds in Testing/attacks/test_attacks.py: every attack < 0.99 (VAFA from q = 1 < 0.9999),
PGD and BIM < gn - 0.2 (smallest margin 0.34), VAFA < noise of its own RMS - 0.2 (smallest 0.4),
CW at its default c < 0.9.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(seed: int) -> dict[str, float]:
    import torch

    sys.path.insert(0, str(ROOT / "Testing"))
    from conftest import fixture_unet

    from FreqAdvSegmentLib.attacks import BIM, CW, FGSM, PGD, VAFA, GaussianNoise, eps_from_255
    from FreqAdvSegmentLib.attacks.ensemble import mean_dice
    from FreqAdvSegmentLib.samples.phantoms import phantom_batch

    model = fixture_unet()
    x, _ = phantom_batch(1, (32, 32, 32), seed=seed)
    settings = {
        "vafa (paper defaults)": lambda m: VAFA(m, q_max=20, steps=20, block_size=8, seed=0),
        "vafa (tables start at q_max)": lambda m: VAFA(m, q_max=20, steps=20, block_size=8, q_init=20, seed=0),
        "pgd": lambda m: PGD(m, eps=eps_from_255(8), alpha=0.01, steps=10, seed=0),
        "fgsm": lambda m: FGSM(m, eps=eps_from_255(8)),
        "bim": lambda m: BIM(m, eps=eps_from_255(8), alpha=0.01, steps=10),
        "cw": lambda m: CW(m, steps=10, search_steps=1),
        "gn": lambda m: GaussianNoise(m, std=eps_from_255(16), seed=0),
    }
    with torch.no_grad():
        clean = model(x).argmax(1, keepdim=True)
    out = {}
    for name, make in settings.items():
        adv = make(model)(x)
        with torch.no_grad():
            out[name] = round(float(mean_dice(model(adv).argmax(1, keepdim=True), clean)), 4)
        if name == "vafa (tables start at q_max)":  # noise of VAFA's own size, for a fair baseline
            same = GaussianNoise(model, std=(adv - x).pow(2).mean().sqrt().item(), seed=0)(x)
            with torch.no_grad():
                out["gn at vafa's rms"] = round(float(mean_dice(model(same).argmax(1, keepdim=True), clean)), 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child process: one seed, print JSON
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one)))
        return
    for threads in args.threads:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        for seed in args.seeds:
            text = subprocess.run([sys.executable, __file__, "--one", str(seed)], env=env, check=True,
                                  capture_output=True, text=True).stdout
            row = json.loads(text.strip().splitlines()[-1])
            print(f"threads {threads} seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)


if __name__ == "__main__":
    main()
