"""``freqadv demo``: the shipped sample CT and demo model through segment, VAFA, PGD, budgets, a
small robustness curve and a report, in about two minutes on 2 CPU cores."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..attacks import registry
from .console import BarProgress, print_summary
from .scene import write_scene_if_asked

DEMO_STEPS = 3
"""The demo's attack steps: few, so that it finishes in about two minutes on 2 CPU cores."""
DEMO_CURVE = {"vafa": (5.0, 20.0), "pgd": (4 / 255, 16 / 255)}
"""The demo curve's strengths (q_max, eps); the demo's own runs (q_max 20, eps 4/255) are among them."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``demo`` to ``freqadv``'s sub-command parsers."""
    p = subparsers.add_parser("demo", help="the shipped sample CT: segment, VAFA (paper and public code), PGD, budgets, curve, report",
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              description="Runs segment -> VAFA (paper), VAFA (public code), PGD (and SA2 when installed) -> budgets, "
                                          "a small robustness curve and a report on the shipped sample CT with the shipped demo model. "
                                          "It uses fewer steps and sweep points than a study, to finish in about two minutes on 2 CPU cores.")
    p.add_argument("-o", "--output", default="freqadv-out-demo", help="output folder (default: freqadv-out-demo)")
    p.add_argument("--steps", type=int, default=DEMO_STEPS, help=f"attack steps (default {DEMO_STEPS}, to stay quick; the paper uses 20)")
    p.add_argument("--no-curve", action="store_true", help="skip the robustness curve (faster)")
    p.add_argument("--overwrite", action="store_true", default=True, help=argparse.SUPPRESS)
    p.add_argument("--device", default="auto", help="auto (CUDA GPU when available), cpu, cuda, cuda:N or mps (Apple GPU) (default: auto)")
    p.add_argument("--seed", type=int, default=0, help="seed for the attacks' randomness (default 0)")
    p.add_argument("--scene", action="store_true", help="also write OUT/scene.mrb that opens in 3D Slicer with every result (needs slicer-core)")
    return p


DEMO_DOSE = "dose:25"
"""The demo's realistic corruption: the same scan at a quarter of its dose (see corruptions/dose.py)."""


def demo_requests(steps: int) -> list:
    """The demo's attacks: VAFA as the paper's Algorithm 1, VAFA as the authors' code runs it, PGD at
    the paper's 4/255, and SA2 when the registry has it; each at ``steps`` steps."""
    from ..job.pipeline import AttackRequest  # SimpleITK, MONAI: loaded when a command runs, not for --help

    requests = [
        AttackRequest("vafa:paper", {"steps": steps}),
        # The issue-10 measurements use the code's preset on 32^3 blocks (the paper's Table 5 size).
        AttackRequest("vafa:public-code", {"steps": steps, "block_size": 32}),
        AttackRequest("pgd", {"eps": 4 / 255, "alpha": 0.01, "steps": steps}),
    ]
    if "sa2" in registry.names():
        requests.append(AttackRequest("sa2", {"steps": steps} if "steps" in registry.get("sa2").param_names else {}))
    if "dose" in registry.names():  # what really happens to a CT: a quarter of the dose, beside the attacks
        requests.append(AttackRequest(DEMO_DOSE))
    return requests


def demo_curve(job: Any, steps: int, progress: Any = None) -> list:
    """A small robustness curve for VAFA (public code) and PGD, reusing the demo's own runs as one
    point of each line: the strengths of ``DEMO_CURVE``, where a study would use the registry's
    five or more and more steps."""
    from ..evaluation.curve import CurveAttack, point_from_outcome, sweep  # loaded when a command runs, not for --help

    lines = [("vafa:public-code", "block_size=32", DEMO_CURVE["vafa"]), ("pgd", "alpha=0.01", DEMO_CURVE["pgd"])]
    plan = []
    for method, extra, values in lines:
        attack = CurveAttack.parse(f"{method},{extra},steps={steps}")
        reused = next(o for o in job.outcomes if o.request.label == method.replace(":", "-"))
        value = reused.request.kwargs()[attack.spec.strength]
        plan.append((attack, reused, value, [v for v in values if abs(v - value) > 1e-12]))
    total, ran, points = sum(len(new) for *_, new in plan), 0, []
    for attack, reused, value, new in plan:
        points.append(point_from_outcome(job, reused, attack, value))
        points += sweep(job, [attack], {attack.spec.name: new}, progress, count_from=(ran, total))
        ran += len(new)
    dose = next((o for o in job.outcomes if o.request.method == "dose"), None)
    if dose is not None:  # one point: the realistic reference on the attacks' axes
        points.append(point_from_outcome(job, dose, CurveAttack.parse(DEMO_DOSE), dose.request.kwargs()["fraction"]))
    return sorted(points, key=lambda p: (p.attack, p.value))


def run(args: argparse.Namespace) -> int:
    """Run the demo into ``args.output``; 0 when the report is written."""
    # SimpleITK, MONAI: loaded when a command runs, not for --help.
    from ..evaluation.curve import summary_sentence
    from ..files.images import check_output_target, read_image
    from ..job.inference import load_segmentation_model
    from ..job.pipeline import RunOptions, run_job, write_outputs
    from ..samples.sample_data import sample_ct_path, sample_labels_path

    # Re-running the demo replaces its own earlier results; a folder of anything else is refused.
    check_output_target(args.output, args.overwrite)
    loaded = load_segmentation_model("demo-unet", args.device)
    print(f"sample CT: {sample_ct_path()}\nmodel: demo-unet on {loaded.device}; {args.steps} steps per attack "
          f"(a study would use 20)", file=sys.stderr)
    progress = BarProgress()
    job = run_job(read_image(sample_ct_path()), loaded, demo_requests(args.steps), read_image(sample_labels_path()),
                  RunOptions(seed=args.seed), progress)
    job.notes.append(f"Demo settings: {args.steps} steps per attack and {sum(len(v) for v in DEMO_CURVE.values())} curve points, "
                     "fewer than a study would use (the paper: 20 steps; freqadv curve: 5 points per attack), to finish "
                     "in about two minutes on 2 CPU cores. Stronger settings give larger drops.")
    curve = None if args.no_curve else demo_curve(job, args.steps, progress)
    out = write_outputs(job, args.output, overwrite=args.overwrite, curve=curve)
    print_summary(job)
    if curve:
        print(f"curve ({len(curve)} points, {args.steps} steps each): {summary_sentence(curve)}")
    print(f"report: {out / 'report.html'}")
    write_scene_if_asked(args, out, sample_ct_path(), sample_labels_path())
    return 0
