"""Make the test suite's small UNet (Testing/data/fixture_unet.safetensors).

The tests need a model that segments the synthetic phantoms well. Training it inside the test run
made its weights, and every threshold that rests on them, depend on the machine's floating-point
path (a second 2-core machine got a different model and failed a Dice threshold). The suite now
loads these shipped weights instead; this script is how they were made, and how to remake them:

    PYTHONPATH=FreqAdvSegment python scripts/make_fixture_unet.py            # writes the file
    PYTHONPATH=FreqAdvSegment python scripts/make_fixture_unet.py --check    # compares, writes nothing

Training: MONAI UNet (8, 16, 32 channels, strides 2, 2, one residual unit, 14 classes), 200 Adam
steps at lr 1e-2 on eight 32^3 phantoms (seed 0), DiceCE, 4 phantoms a step, one thread. The file
is about 200 KB of float32. Remaking it on another machine may give slightly different weights
(that is the point of shipping it); the tests' thresholds were measured on the shipped file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from safetensors.torch import load_file, save_file

from FreqAdvSegmentLib.samples.phantoms import phantom_batch

OUT = Path(__file__).resolve().parents[1] / "Testing" / "data" / "fixture_unet.safetensors"


def small_unet(out_channels: int = 14) -> torch.nn.Module:
    """The fixture's architecture (Testing/conftest.py builds the same)."""
    return UNet(3, 1, out_channels, channels=(8, 16, 32), strides=(2, 2), num_res_units=1)


def train(steps: int = 200) -> torch.nn.Module:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = small_unet()
    images, labels = phantom_batch(8, (32, 32, 32), seed=0)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(steps):
        idx = torch.arange(4) + (step % 2) * 4
        opt.zero_grad()
        loss_fn(model(images[idx]), labels[idx]).backward()
        opt.step()
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="train and report the largest difference to the shipped file")
    args = parser.parse_args()
    state = {k: v.detach().contiguous() for k, v in train().state_dict().items()}
    if args.check:
        shipped = load_file(OUT)
        diff = max((state[k] - shipped[k]).abs().max().item() for k in shipped)
        print(f"largest weight difference to {OUT.name}: {diff:.3g}")
        return
    OUT.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(OUT))
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KB, {sum(v.numel() for v in state.values())} values)")


if __name__ == "__main__":
    main()
