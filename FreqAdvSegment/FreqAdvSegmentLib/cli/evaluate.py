"""``freqadv evaluate``: Dice/HD95 per case and per attack over a datalist, as a resumable study
split into parts and torchrun ranks, with transfer between models; ``freqadv evaluate merge``: the
tables of a study run in parts (see evaluation/study.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .console import BarProgress
from .options import add_attack_options, add_run_options, positive_int
from .settings import attack_requests, existing_paths, load_options, run_options


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``evaluate`` to ``freqadv``'s sub-command parsers."""
    p = subparsers.add_parser("evaluate", help="Dice/HD95 per case and per attack over a datalist", formatter_class=argparse.RawDescriptionHelpFormatter,
                              description="Evaluate models, clean and under attack, on a MONAI Decathlon-style datalist JSON.")
    p.add_argument("datalist", nargs="+", metavar="DATALIST",
                   help='JSON with {"validation": [{"image": ..., "label": ...}, ...]} (paths relative to the file); '
                        "or `merge PART_FOLDER...`: the tables of a study run in parts")
    p.add_argument("-o", "--output", required=True, help="output folder: units/ (one file per finished unit), and when "
                   "every unit is there results.csv, summary.json, summary.md (and transfer_ATTACK.csv); rerun the same "
                   "command to resume")
    p.add_argument("--split", default="validation", help="datalist key to evaluate (default: validation)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    g = p.add_argument_group("study")
    g.add_argument("--transfer", action="store_true", help="craft each attack on each model once and evaluate it on every "
                   "model: a transfer matrix (source x target, Dice drop) per attack")
    g.add_argument("--num-parts", type=positive_int, default=1, help="split the study's units into N parts (e.g. a SLURM array)")
    g.add_argument("--part-id", type=int, default=0, help="which part this run does, 0..N-1 (default 0)")
    add_run_options(p)
    p.set_defaults(model=None)
    p.add_argument("--models", nargs="+", default=None, help="several models to compare (registry names or files)")
    add_attack_options(p, ["none"])
    return p


def run(args: argparse.Namespace) -> int:
    """Run this part of the study (or merge parts); 0 when done, summary printed when complete."""
    # SimpleITK, MONAI: loaded when a command runs, not for --help.
    from ..evaluation.evaluate import load_datalist
    from ..evaluation.study import merge_parts, run_study
    from ..files.images import check_output_target
    from ..job.inference import using_load_options

    if args.datalist[0] == "merge":
        if len(args.datalist) < 2:
            raise ValueError("evaluate merge needs the parts' output folders: freqadv evaluate merge OUT0 OUT1 ... -o MERGED")
        print(merge_parts(args.datalist[1:], args.output, args.overwrite))
        return 0
    if len(args.datalist) > 1:
        raise ValueError(f"evaluate takes one datalist, got {len(args.datalist)} ({' '.join(args.datalist)}); "
                         "to merge parts: freqadv evaluate merge OUT0 OUT1 ... -o MERGED")
    datalist = args.datalist[0]
    if not 0 <= args.part_id < args.num_parts:
        raise ValueError(f"--part-id must be in 0..{args.num_parts - 1} for --num-parts {args.num_parts}, got {args.part_id}")
    models = args.models or [args.model or "demo-unet"]
    cases = load_datalist(datalist, args.split)
    out = Path(args.output)
    if out.is_symlink():
        raise FileExistsError(f"output path '{out}' is a symbolic link; choose a real folder")
    if not (out / "units").is_dir():  # a folder with units/ is a study's: the same command resumes it
        case_files = [path for case in cases for path in case.values()]
        check_output_target(out, args.overwrite, existing_paths(datalist, *case_files, *models))
    with using_load_options(load_options(args)):
        summary = run_study(datalist, models, attack_requests(args, []), out, run_options(args), args.device,
                            split=args.split, transfer=args.transfer, num_parts=args.num_parts,
                            part_id=args.part_id, overwrite=args.overwrite, progress=BarProgress())
    if summary:
        print(summary)
    elif not _is_worker():
        print(f"part {args.part_id} of {args.num_parts} done in {out}; when every part is done: "
              f"freqadv evaluate merge PART_FOLDERS... -o MERGED (or rerun to resume)")
    return 0


def _is_worker() -> bool:
    """A torchrun rank other than 0 (which prints nothing)."""
    import os

    return int(os.environ.get("RANK", "0")) != 0
