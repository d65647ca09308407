"""``freqadv attack``: segment, attack, write adversarial volumes, perturbations, label maps, a report."""

from __future__ import annotations

import argparse
from typing import Any

from .console import BarProgress, print_summary, warn_if_not_ct
from .options import INPUT_HELP, add_attack_options, add_budget_options, add_run_options
from .scene import write_scene_if_asked
from .settings import apply_eps_hu, attack_requests, existing_paths, load_options, run_options


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``attack`` to ``freqadv``'s sub-command parsers."""
    p = subparsers.add_parser("attack", help="attack a model on a CT and report what broke", formatter_class=argparse.RawDescriptionHelpFormatter,
                              description="Segment, attack, and write adversarial volumes, perturbations, label maps and a report.")
    p.add_argument("input", help=INPUT_HELP)
    p.add_argument("-o", "--output", required=True, help="output folder (created atomically)")
    p.add_argument("--labels", default=None, help="ground-truth label map (model's label values); without it, attacks target the clean prediction")
    p.add_argument("--format", choices=["nii.gz", "nrrd"], default="nii.gz", help="volume file format (nrrd for 3D Slicer)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--scene", action="store_true", help="also write OUT/scene.mrb that opens in 3D Slicer with every result (needs slicer-core)")
    add_run_options(p)
    add_attack_options(p)
    add_budget_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the chosen attacks on ``args.input``; 0 when the output folder and report are written."""
    # SimpleITK, MONAI: loaded when a command runs, not for --help.
    from ..files.images import check_output_target, read_image
    from ..job.inference import load_segmentation_model
    from ..job.pipeline import run_job, write_outputs

    check_output_target(args.output, args.overwrite, existing_paths(args.input, args.labels, args.model))
    image = read_image(args.input)
    labels = read_image(args.labels) if args.labels else None
    if args.eps_hu is not None and getattr(args, "eps", None) is not None:
        raise ValueError("give the voxel attacks' budget once: --eps (on the [0, 1] scale) or --eps-hu (in HU), not both")
    loaded = load_segmentation_model(args.model, args.device, options=load_options(args))
    warn_if_not_ct(args, image, loaded)
    requests = apply_eps_hu(attack_requests(args, ["vafa"]), args.eps_hu, loaded.spec)
    job = run_job(image, loaded, requests, labels, run_options(args), BarProgress())
    out = write_outputs(job, args.output, overwrite=args.overwrite, suffix="." + args.format)
    print_summary(job)
    print(f"report: {out / 'report.html'}")
    write_scene_if_asked(args, out, args.input, args.labels)
    return 0
