"""How long does each realistic CT corruption take on the shipped sample CT?

The sample (patientA_ct.nii.gz) is prepared as the pipeline prepares it for the paper's models
(RAS, 1.5 x 1.5 x 2 mm, window -175..250 HU), and every registered corruption (registry entries
with ``adversarial=False``) runs once at its default setting on that model grid, through the same
``use_grid`` + ``run`` path the pipeline takes; the best of ``--repeat`` runs is printed, and its
ratio to one pass of preparing the volume (resampling, in the same process) as a baseline.

    python benchmarks/corruption_speed.py                  # 2 threads (the target: <= 2 s each)
    python benchmarks/corruption_speed.py --threads 8 --only dose motion
"""

from __future__ import annotations

import argparse
import time

import torch

from FreqAdvSegmentLib.attacks import registry
from FreqAdvSegmentLib.files.images import read_image
from FreqAdvSegmentLib.job.preprocess import Preprocessing, hu_on_model_grid, prepare
from FreqAdvSegmentLib.samples.sample_data import sample_ct_path


def best_of(repeat: int, run) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=None, help="corruption names (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    image = read_image(sample_ct_path())
    prep = Preprocessing()
    baseline = best_of(args.repeat, lambda: prepare(image, prep))
    x, ctx = prepare(image, prep)
    hu = hu_on_model_grid(image, ctx)
    model = torch.nn.Conv3d(1, 2, 1)  # corruptions never call the model when labels are given
    labels = torch.zeros(1, 1, *x.shape[2:], dtype=torch.long)
    print(f"sample CT {image.GetSize()} -> model grid {tuple(x.shape[2:])} at {ctx.model.spacing} mm; "
          f"{args.threads} threads; preparing it takes {baseline:.2f} s")
    for name in args.only or registry.corruption_names():
        corruption = registry.build(name, model, seed=0)
        corruption.use_grid(ctx.window, ctx.model.spacing, hu)
        seconds = best_of(args.repeat, lambda: corruption.run(x, labels))
        print(f"{name:<10s} {seconds:6.2f} s   ({seconds / baseline:5.1f} x preparing)   {'ok' if seconds <= 2 else 'OVER 2 s'}")


if __name__ == "__main__":
    main()
