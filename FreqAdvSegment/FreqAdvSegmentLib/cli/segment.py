"""``freqadv segment``: one CT through a model; OUT/segmentation.<format> on the input's grid."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .console import warn_if_not_ct
from .options import INPUT_HELP, add_run_options
from .settings import existing_paths, load_options, run_options


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``segment`` to ``freqadv``'s sub-command parsers."""
    p = subparsers.add_parser("segment", help="segment a CT with a model", formatter_class=argparse.RawDescriptionHelpFormatter,
                              description="Segment a CT (NIfTI, NRRD or a DICOM folder); writes OUT/segmentation.<format> on the input's grid.")
    p.add_argument("input", help=INPUT_HELP)
    p.add_argument("-o", "--output", required=True, help="output folder (created atomically)")
    p.add_argument("--format", choices=["nii.gz", "nrrd"], default="nii.gz", help="label map file format (nrrd for 3D Slicer)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    add_run_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Segment ``args.input``; 0 when the label map is written."""
    # SimpleITK, MONAI: loaded when a command runs, not for --help.
    from ..files.images import atomic_output_dir, check_output_target, read_image, write_image
    from ..job.inference import load_segmentation_model
    from ..job.pipeline import run_segmentation

    inputs = existing_paths(args.input, args.model)
    check_output_target(args.output, args.overwrite, inputs)
    image = read_image(args.input)
    loaded = load_segmentation_model(args.model, args.device, options=load_options(args))
    warn_if_not_ct(args, image, loaded)
    *_, labels = run_segmentation(image, loaded, run_options(args))
    name = f"segmentation.{args.format}"
    with atomic_output_dir(args.output, args.overwrite, inputs) as tmp:
        write_image(labels, tmp / name)
    print(f"wrote {Path(args.output) / name}")
    return 0
