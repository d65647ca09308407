"""``freqadv fourier``: a 3D Fourier sensitivity map of a model on one CT.

    freqadv fourier CT.nii.gz --model demo-unet --labels GT.nii.gz -o fourier/
    freqadv fourier CT.nii.gz --shells 8 --rms-hu 30 --seeds 3 -o fourier/
    freqadv fourier CT.nii.gz --dct -o fourier/      # also per DCT level of VAFA's 8^3 blocks
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .console import BarProgress, warn_if_not_ct
from .options import INPUT_HELP, add_run_options, positive_int
from .settings import existing_paths, load_options, run_options

FOURIER_DESCRIPTION = """\
Perturb the CT (on the model's grid) with Gaussian noise of a fixed RMS in HU, band-limited to one
radial frequency shell (cycles/mm, from the grid's voxel spacing up to the Nyquist frequency of its
finest axis) and one orientation (in-plane: the frequency lies closer to the axial plane;
through-plane: closer to the slice axis), and measure each organ's Dice against the ground truth
(--labels) or else the clean prediction. Writes OUT/fourier.csv (band, orientation, f_low, f_high,
organ, dice, dice_drop, rms_hu) and OUT/fourier.png (heat maps of the Dice drop), and names the most
damaging band (Yin et al. 2019, in 3D). With --dct, the same per level u+v+w of the 3D DCT of
VAFA's blocks (OUT/dct.csv: level, coefficients, organ, dice, dice_drop, rms_hu)."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``fourier`` to ``freqadv``'s sub-command parsers."""
    p = subparsers.add_parser("fourier", help="3D Fourier sensitivity map: Dice drop per frequency band and organ",
                              description=FOURIER_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help=INPUT_HELP)
    p.add_argument("-o", "--output", required=True, help="output folder (created atomically)")
    p.add_argument("--labels", default=None, help="ground-truth label map; without it, Dice is against the clean prediction")
    p.add_argument("--shells", type=positive_int, default=6, help="radial frequency shells, equal width up to Nyquist (default 6)")
    p.add_argument("--rms-hu", type=float, default=20.0, help="RMS of the band-limited noise in HU (default 20)")
    p.add_argument("--seeds", type=positive_int, default=1, help="noise draws per band, Dice averaged (default 1; from --seed on)")
    p.add_argument("--dct", action="store_true",
                   help="also the Dice drop per 3D-DCT level u+v+w of VAFA's blocks: OUT/dct.csv (3*block-2 more predictions)")
    p.add_argument("--dct-block", type=positive_int, default=8, help="block side for --dct, as VAFA's block_size (default 8)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    add_run_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Measure the map and write it; 0 when written."""
    import math

    # SimpleITK, MONAI, matplotlib: loaded when a command runs, not for --help.
    from ..evaluation.fourier import default_bands, job_fourier_map, summary_sentence, write_fourier_files
    from ..files.images import atomic_output_dir, check_output_target, read_image
    from ..job.inference import load_segmentation_model
    from ..job.pipeline import start_job

    if not (math.isfinite(args.rms_hu) and args.rms_hu > 0):
        raise ValueError(f"--rms-hu must be a positive number of HU, got {args.rms_hu}")
    inputs = existing_paths(args.input, args.labels, args.model)
    check_output_target(args.output, args.overwrite, inputs)  # before any model work
    image = read_image(args.input)
    labels = read_image(args.labels) if args.labels else None
    loaded = load_segmentation_model(args.model, args.device, options=load_options(args))
    warn_if_not_ct(args, image, loaded)
    job = start_job(image, loaded, labels, run_options(args), attacking=False)
    bands = default_bands(job.ctx.model.spacing, args.shells)
    bar = BarProgress()
    seeds = range(args.seed, args.seed + args.seeds)
    rows = job_fourier_map(job, bands, args.rms_hu, seeds, lambda done, total: bar("fourier", done, total))
    dct_rows = None
    if args.dct:
        from ..evaluation.dct_sensitivity import dct_csv, dct_sentence, job_dct_map

        dct_rows = job_dct_map(job, args.dct_block, args.rms_hu, seeds, lambda done, total: bar("dct", done, total))
    with atomic_output_dir(args.output, args.overwrite, inputs) as tmp:
        write_fourier_files(rows, tmp)
        if dct_rows is not None:
            (tmp / "dct.csv").write_text(dct_csv(dct_rows), encoding="utf-8")
    print(summary_sentence(rows))
    if dct_rows is not None:
        print(dct_sentence(dct_rows, args.dct_block))
    print(f"fourier: {Path(args.output) / 'fourier.png'}")
    return 0
