"""``freqadv evaluate``: Dice/HD95 per case and per attack over a datalist (sharded under torchrun)."""

from __future__ import annotations

import argparse
from typing import Any

from .console import BarProgress
from .options import add_attack_options, add_run_options
from .settings import attack_requests, existing_paths, load_options, run_options


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``evaluate`` to ``freqadv``'s sub-command parsers."""
    p = subparsers.add_parser("evaluate", help="Dice/HD95 per case and per attack over a datalist", formatter_class=argparse.RawDescriptionHelpFormatter,
                              description="Evaluate models, clean and under attack, on a MONAI Decathlon-style datalist JSON.")
    p.add_argument("datalist", help='JSON with {"validation": [{"image": ..., "label": ...}, ...]} (paths relative to the file)')
    p.add_argument("-o", "--output", required=True, help="output folder: results.csv, summary.json, summary.md")
    p.add_argument("--split", default="validation", help="datalist key to evaluate (default: validation)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    add_run_options(p)
    p.set_defaults(model=None)
    p.add_argument("--models", nargs="+", default=None, help="several models to compare (registry names or files)")
    add_attack_options(p, ["none"])
    return p


def run(args: argparse.Namespace) -> int:
    """Evaluate every model on the datalist's cases; 0 when results are written."""
    # SimpleITK, MONAI: loaded when a command runs, not for --help.
    from ..evaluation.distributed_eval import evaluate_datalist_distributed
    from ..evaluation.evaluate import load_datalist
    from ..files.images import check_output_target
    from ..job.inference import using_load_options

    models = args.models or [args.model or "demo-unet"]
    cases = load_datalist(args.datalist, args.split)
    case_files = [path for case in cases for path in case.values()]
    check_output_target(args.output, args.overwrite, existing_paths(args.datalist, *case_files, *models))
    # One process: plain evaluation; under torchrun: cases sharded over ranks, rank 0 writes.
    with using_load_options(load_options(args)):
        summary = evaluate_datalist_distributed(
            args.datalist, models, attack_requests(args, []), args.output, run_options(args), args.device,
            split=args.split, overwrite=args.overwrite, progress=BarProgress(),
        )
    if summary:
        print(summary)
    return 0
