"""``freqadv curve``: sweep attacks' strengths on one CT and write curve.csv, curve.png, curve.html.

    freqadv curve CT.nii.gz --method vafa:public-code --method pgd --labels GT.nii.gz -o curve/
    freqadv curve CT.nii.gz --method pgd --points pgd=1/255,2/255,4/255 --models demo-unet demo-unet-vaft -o c/
    freqadv curve CT.nii.gz --method vafa --method pgd -o curve/ --resume     # after an interruption
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .console import BarProgress
from .options import INPUT_HELP, add_run_options
from .settings import load_options, run_options

CURVE_DESCRIPTION = """\
For one CT, one or more models and several attacks: run each attack at several strengths (its own
strength parameter: eps for voxel attacks, q_max for VAFA; defaults from the attack registry) and
write OUT/curve.csv (one row per point), OUT/curve.png (mean Dice against in-body SSIM and against
the largest HU change, one line per attack and model) and OUT/curve.html, with the sentence "at SSIM
>= 0.95 the strongest attack here is X". Each measured point is saved beside OUT as it finishes, so
an interrupted sweep continues with --resume."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``curve`` to ``freqadv``'s sub-command parsers."""
    p = subparsers.add_parser("curve", help="robustness curves: Dice against SSIM and HU change over each attack's strength",
                              description=CURVE_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help=INPUT_HELP)
    p.add_argument("-o", "--output", required=True, help="output folder (created atomically)")
    p.add_argument("--labels", default=None, help="ground-truth label map; without it, Dice is against the clean prediction")
    p.add_argument("--method", action="append", default=None, metavar="REQUEST",
                   help="attack request name[:preset][,key=value...], e.g. vafa:public-code or pgd,steps=10; repeat (default: vafa and pgd)")
    p.add_argument("--points", action="append", default=[], metavar="ATTACK=V1,V2,...",
                   help="strengths to sweep for one attack, in its own units (e.g. vafa=5,10,20 or pgd=1/255,4/255); default: the registry's sweep")
    p.add_argument("--steps", type=int, default=None, help="steps for every attack that takes them (default: each attack's own)")
    p.add_argument("--models", nargs="+", default=None, help="several models, one set of lines each (registry names or files)")
    p.add_argument("--resume", action="store_true", help="reuse the points an interrupted run with the same settings saved")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    add_run_options(p)
    return p


def curve_attacks(methods: list[str], steps: int | None) -> list:
    """CurveAttacks from the --method texts; --steps added to those that take steps and set none."""
    from ..evaluation.curve import CurveAttack  # SimpleITK, MONAI: loaded when a command runs, not for --help

    attacks, seen = [], set()
    for text in methods:
        attack = CurveAttack.parse(text)
        if steps is not None and "steps" in attack.spec.param_names and "steps" not in attack.params:
            attack = CurveAttack(attack.text + f",steps={steps}", attack.spec, attack.preset, {**attack.params, "steps": steps})
        if attack.text in seen:
            raise ValueError(f"--method {text!r} is given twice")
        seen.add(attack.text)
        attacks.append(attack)
    return attacks


def run(args: argparse.Namespace) -> int:
    """Sweep every attack over its strengths for every model; 0 when the curve is written."""
    # SimpleITK, MONAI, matplotlib: loaded when a command runs, not for --help.
    from ..evaluation.curve import PartialSweep, parse_points, summary_sentence, sweep, sweep_values, write_curve
    from ..files.images import check_output_target, read_image
    from ..job.inference import load_segmentation_model
    from ..job.pipeline import start_job

    attacks = curve_attacks(args.method or ["vafa", "pgd"], args.steps)
    points = parse_points(args.points, attacks)
    models = args.models or [args.model]
    image = read_image(args.input)
    labels = read_image(args.labels) if args.labels else None
    options = run_options(args)
    load = load_options(args)  # --spec/--arch/--fold/--configuration/--no-tta, for every model
    partial = PartialSweep(args.output, _settings(args, attacks, points, models, options))
    inputs = [p for p in (args.input, args.labels, *models) if p and Path(p).exists()]
    check_output_target(args.output, args.overwrite, inputs)  # before any model work
    done = partial.start(args.resume)
    if done:
        print(f"resuming: {len(done)} point(s) already measured", file=sys.stderr)
    per_model = sum(len(sweep_values(a, points)) for a in attacks)
    progress, results = BarProgress(), []
    for i, name in enumerate(models):
        loaded = load_segmentation_model(name, args.device, options=load)
        job = start_job(image, loaded, labels, options)
        results += sweep(job, attacks, points, progress, done, partial.add, (i * per_model, len(models) * per_model))
    out = write_curve(results, args.output, overwrite=args.overwrite, inputs=inputs)
    partial.remove()
    for p in results:
        flag = "  VISIBLE" if p.visible else ""
        print(f"{p.model:<16s} {p.attack:<28s} {p.param}={p.shown:<8.4g} Dice {p.mean_dice:.3f} (drop {p.dice_drop:+.3f})  "
              f"max {p.linf_hu:6.1f} HU  RMS {p.rms_hu:5.1f} HU  SSIM {p.ssim:.3f}{flag}")
    print(summary_sentence(results))
    print(f"curve: {out / 'curve.html'}")
    return 0


def _settings(args: argparse.Namespace, attacks: list, points: dict, models: list[str], options: Any) -> dict[str, Any]:
    """Everything that changes a point's value; --resume reuses points only if all of it matches."""
    from ..files.digest import content_sha256

    source = Path(args.input).resolve()
    return {
        "input": str(source), "input_sha256": content_sha256(source),
        "labels": str(Path(args.labels).resolve()) if args.labels else None,
        "labels_sha256": content_sha256(args.labels) if args.labels else None,
        "models": models, "models_sha256": [_model_sha256(name) for name in models], "attacks": [a.text for a in attacks], "points": {k: list(v) for k, v in points.items()},
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(options).items()}, "device": args.device,
        "load": {"spec": args.spec, "arch": args.arch, "fold": args.fold, "configuration": args.configuration,
                 "tta": not args.no_tta},
    }


def _model_sha256(name: str | None) -> str | None:
    """SHA-256 of a model's file or folder (a registry name: of the file it names, if it is here)."""
    from ..files.digest import content_sha256
    from ..models import resolve_model

    try:
        return content_sha256(resolve_model(name)) if name is not None else None
    except (OSError, ValueError):
        return None  # not available here: loading the model says why
