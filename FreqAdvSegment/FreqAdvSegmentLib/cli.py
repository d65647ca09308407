"""The ``freqadv`` command line.

    freqadv demo                                   # the shipped CT, model, VAFA + PGD, a report
    freqadv segment CT.nii.gz -o out/
    freqadv attack CT.nii.gz --method vafa --method pgd --labels GT.nii.gz -o out/
    freqadv evaluate datalist.json --model demo-unet --method vafa --method pgd -o results/
    freqadv curve CT.nii.gz --method vafa:public-code --method pgd --labels GT.nii.gz -o curve/
    freqadv models                                 # models the registry knows
    freqadv models import NNUNET_FOLDER -o model.safetensors   # any model family -> safe format
    freqadv train datalist.json -o run/ --regime vafa-fr --init demo-unet   # VAFT
    freqadv serve                                  # the web viewer on http://127.0.0.1:8080

Run ``freqadv COMMAND --help`` for each command's options.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

from tqdm.auto import tqdm

from .curve_cli import add_curve_parser, cmd_curve
from .errors import describe_error
from .job.progress import JsonProgress, json_requested
from .training.cli import add_train_parser, cmd_train
from .web.cli import add_serve_parser, cmd_serve

def attack_help() -> str:
    """The attack group's text, from the registry: every method and preset, one line each."""
    from .attacks.options import method_listing

    return (
        "--method takes NAME[:PRESET][,KEY=VALUE...], e.g. vafa:public-code,q_max=30 or pgd,eps=8/255;\n"
        "repeat it for several attacks. A parameter flag (--q-max ...) applies to every chosen attack\n"
        "that takes it, a KEY=VALUE of one --method wins over it; --preset applies to every chosen\n"
        "attack that has that preset. Intensities are on the [0, 1] scale: a fraction like 4/255\n"
        "gives the paper's 0-255 units.\n\nmethods and presets:\n" + method_listing()
    )


def _fraction(text: str) -> float:
    """A number or a fraction such as ``4/255``."""
    try:
        return float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a number or a fraction like 4/255, got {text!r}") from None


def _positive_int(text: str) -> int:
    """A whole number >= 1 (``--sw-batch-size``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _overlap(text: str) -> float:
    """A sliding-window overlap in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1) (0.25 is usual; 1 would never move the window), got {value:g}")
    return value


def _triple(text: str) -> tuple[int, int, int]:
    try:
        parts = [int(p) for p in text.replace("x", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 96 or 96,96,64, got {text!r}") from None
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected a size like 96 or 96,96,64, got {text!r}")
    return tuple(parts)  # type: ignore[return-value]


DEMO_STEPS = 3
"""The demo's attack steps: few, so that it finishes in about two minutes on 2 CPU cores."""
DEMO_CURVE = {"vafa": (5.0, 20.0), "pgd": (4 / 255, 16 / 255)}
"""The demo curve's strengths (q_max, eps); the demo's own runs (q_max 20, eps 4/255) are among them."""


# --- parser ---------------------------------------------------------------------------------------


def _add_run_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and device")
    g.add_argument("--model", default="demo-unet", help="registry name (see `freqadv models`), checkpoint file or MONAI bundle folder (default: demo-unet)")
    g.add_argument("--device", default="auto", help="auto (CUDA GPU when available), cpu, cuda, cuda:N or mps (Apple GPU) (default: auto)")
    g.add_argument("--roi", type=_triple, default=None, help="sliding-window size, e.g. 96 or 96,96,96 (default: the model's own)")
    g.add_argument("--overlap", type=_overlap, default=None, help="sliding-window overlap in [0, 1) (default: the model's own, else 0.25)")
    g.add_argument("--sw-batch-size", type=_positive_int, default=None, help="windows per forward pass; lower it if memory runs out (default: the model's own, else 2)")
    g.add_argument("--amp", choices=["bf16", "fp16"], default=None, help="mixed precision (fp16 needs CUDA)")
    g.add_argument("--seed", type=int, default=0, help="seed for the attacks' randomness (default 0)")
    g.add_argument("--include-background", action="store_true", help="count background in mean Dice/HD95 (the paper's convention)")
    g.add_argument("--label-map", default=None, help="ground-truth values -> the model's, e.g. 6:1,2:3 or a JSON file; unlisted values become background")
    _add_model_source_options(p)


def _add_model_source_options(p: argparse.ArgumentParser) -> None:
    """How to read the model: for weights without a spec, nnU-Net folders, TorchScript."""
    from .models.spec import KNOWN_ARCHS

    g = p.add_argument_group("model source")
    g.add_argument("--arch", choices=[a for a in KNOWN_ARCHS if a not in ("nnunet", "torchscript")], default=None,
                   help="network of a plain state dict (default arguments; channels read off the weights)")
    g.add_argument("--spec", default=None, help="the model's full ModelSpec: JSON text or a .json file (overrides the file's own)")
    g.add_argument("--fold", action="append", type=int, default=None, help="nnU-Net: fold to use; repeat to ensemble several (default: all present)")
    g.add_argument("--configuration", default=None, help="nnU-Net: configuration (default: from the folder name, else 3d_fullres)")
    g.add_argument("--no-tta", action="store_true", help="nnU-Net: no mirroring test-time augmentation")
    g.add_argument("--trust-model-code", action="store_true", help="allow TorchScript models (they are code and run when loaded)")


def _add_attack_options(p: argparse.ArgumentParser, default_methods: list[str] | None = None) -> None:
    # Built from the registry when the parser is built, so a registered plug-in attack appears.
    from .attacks import registry
    from .attacks.options import add_param_flags, preset_names, request_text

    g = p.add_argument_group("attacks", attack_help())
    g.add_argument("--method", action="append", type=request_text, default=None, metavar="REQUEST",
                   help=f"attack to run, one of {', '.join(registry.names())} (presets above); repeat for "
                        f"several (default: {' and '.join(default_methods or ['vafa'])})")
    g.add_argument("--preset", choices=preset_names(), default=None,
                   help="preset for every chosen attack that has it (e.g. public-code, table5, eps8)")
    g.add_argument("--public-code", action="store_true", help="the same as --preset public-code (VAFA as the authors' code runs it)")
    add_param_flags(p, g)


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors as one line (and exit 2), like every other error here."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_debug_options(parser: argparse.ArgumentParser, sub: argparse._SubParsersAction) -> None:
    """``--debug`` before or after the command: errors then show their full traceback."""
    text = "show the full traceback of an error instead of one line"
    parser.add_argument("--debug", action="store_true", help=text)
    for command in sub.choices.values():  # SUPPRESS: a command's default must not undo the top-level flag
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="freqadv", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    raw = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser("segment", help="segment a CT with a model", description="Segment a CT (NIfTI, NRRD or a DICOM folder); writes OUT/segmentation.<format> on the input's grid.", formatter_class=raw)
    p.add_argument("input", help="CT volume in HU: .nii/.nii.gz/.nrrd/.mha or a DICOM series folder")
    p.add_argument("-o", "--output", required=True, help="output folder (created atomically)")
    p.add_argument("--format", choices=["nii.gz", "nrrd"], default="nii.gz", help="label map file format (nrrd for 3D Slicer)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    _add_run_options(p)

    p = sub.add_parser("attack", help="attack a model on a CT and report what broke", formatter_class=raw,
                       description="Segment, attack, and write adversarial volumes, perturbations, label maps and a report.")
    p.add_argument("input", help="CT volume in HU: .nii/.nii.gz/.nrrd/.mha or a DICOM series folder")
    p.add_argument("-o", "--output", required=True, help="output folder (created atomically)")
    p.add_argument("--labels", default=None, help="ground-truth label map (model's label values); without it, attacks target the clean prediction")
    p.add_argument("--format", choices=["nii.gz", "nrrd"], default="nii.gz", help="volume file format (nrrd for 3D Slicer)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--scene", action="store_true", help="also write OUT/scene.mrb that opens in 3D Slicer with every result (needs slicer-core)")
    _add_run_options(p)
    _add_attack_options(p)
    _add_budget_options(p)

    p = sub.add_parser("evaluate", help="Dice/HD95 per case and per attack over a datalist", formatter_class=raw,
                       description="Evaluate models, clean and under attack, on a MONAI Decathlon-style datalist JSON.")
    p.add_argument("datalist", help='JSON with {"validation": [{"image": ..., "label": ...}, ...]} (paths relative to the file)')
    p.add_argument("-o", "--output", required=True, help="output folder: results.csv, summary.json, summary.md")
    p.add_argument("--split", default="validation", help="datalist key to evaluate (default: validation)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    _add_run_options(p)
    p.set_defaults(model=None)
    p.add_argument("--models", nargs="+", default=None, help="several models to compare (registry names or files)")
    _add_attack_options(p, ["none"])

    add_curve_parser(sub, raw)

    p = sub.add_parser("demo", help="the shipped sample CT: segment, VAFA (paper and public code), PGD, budgets, curve, report", formatter_class=raw,
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

    p = sub.add_parser("models", help="list the models the registry knows; `models import` converts a model", formatter_class=raw,
                       description="With no argument: the registry's models. `models import SRC -o OUT.safetensors`: read any supported model (nnU-Net folder, MONAI bundle, Auto3DSeg model.pt, state dict) once and save it with its spec in the safe format.")
    verbs = p.add_subparsers(dest="models_command", metavar="VERB")
    q = verbs.add_parser("import", help="convert SRC into a .safetensors file with its spec")
    q.add_argument("source", help="model file or folder (any supported family)")
    q.add_argument("-o", "--output", required=True, help="the .safetensors file to write (atomically)")
    q.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    _add_model_source_options(q)
    add_train_parser(sub)
    add_serve_parser(sub)
    _add_debug_options(parser, sub)
    return parser


def _version() -> str:
    from . import __version__

    return f"freqadv {__version__}"


# --- attack parameters ----------------------------------------------------------------------------



def attack_requests(args: argparse.Namespace, default: Sequence[str] = ("vafa",)):
    """One AttackRequest per --method (``default`` without any), each with the preset and the
    parameter flags it takes; per-request KEY=VALUE wins over the flags. Labels are unique."""
    from .attacks import registry
    from .attacks.options import chosen_preset, check_all_taken, check_preset_used, given_params, params_for, preset_for
    from .job.pipeline import AttackRequest, unique_labels

    preset = chosen_preset(args)
    flags = given_params(args)
    requests = []
    for text in args.method or default:
        spec, own_preset, own = registry.parse_request(text)
        params = {**params_for(spec, flags), **own}
        requests.append(AttackRequest(spec.name, params, own_preset or preset_for(spec, preset)))
    specs = [registry.get(r.method) for r in requests]
    check_all_taken(flags, specs)
    check_preset_used(preset, specs)
    return unique_labels(requests)


def _add_budget_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("budgets")
    g.add_argument("--eps-hu", type=_fraction, default=None,
                   help="L-inf budget of the voxel attacks in HU (e.g. 10), mapped through the model's intensity window: "
                        "4/255 is 6.7 HU on a 425 HU window but 33 HU on a 2000 HU one; replaces --eps")


def apply_eps_hu(requests: list, eps_hu: float | None, spec) -> list:
    """Set eps of every voxel attack in ``requests`` from a budget in HU, through ``spec``'s window.

    Args:
        requests: the run's AttackRequests (changed in place, and returned).
        eps_hu: the budget in HU (None: nothing to do).
        spec: the model's ModelSpec; its ``intensity_window`` (a_min, a_max) in HU maps to [0, 1].
    """
    if eps_hu is None:
        return requests
    from .attacks import registry

    window = getattr(spec, "intensity_window", None)
    if window is None:
        raise ValueError("--eps-hu needs a model with an HU intensity window, and this model has none; give --eps on the [0, 1] scale instead")
    if eps_hu <= 0:
        raise ValueError(f"--eps-hu must be a positive number of HU, got {eps_hu:g}")
    takers = [r for r in requests if "eps" in registry.split_method(r.method)[0].param_names]
    if not takers:
        raise ValueError("--eps-hu sets the budget of voxel attacks (" + ", ".join(s.name for s in registry.takers("eps"))
                         + "), and none was chosen with --method")
    eps = eps_hu / (window[1] - window[0])
    if eps > 1:
        raise ValueError(f"--eps-hu {eps_hu:g} is wider than the model's whole window {window[0]:g}..{window[1]:g} HU; choose a smaller budget")
    for request in takers:
        request.params["eps"] = eps
    return requests


def run_options(args: argparse.Namespace):
    from .job.label_map import parse_label_map
    from .job.pipeline import RunOptions

    label_map = parse_label_map(args.label_map) if getattr(args, "label_map", None) else None
    return RunOptions(args.roi, args.overlap, args.sw_batch_size, args.amp, args.seed, args.include_background, label_map)


def load_options(args: argparse.Namespace):
    """LoadOptions from --arch, --spec, --fold, --configuration, --no-tta, --trust-model-code."""
    from .models import LoadOptions

    spec = _spec_argument(args.spec) if args.spec else None
    if spec is not None and args.arch is not None and spec.arch != args.arch:
        raise ValueError(f"--arch {args.arch} contradicts --spec, whose arch is {spec.arch}; give one of them")
    folds = tuple(args.fold) if args.fold else None
    return LoadOptions(spec, args.arch, folds, args.configuration, not args.no_tta, args.trust_model_code)


def _spec_argument(text: str):
    """A ModelSpec from JSON text or a .json file."""
    import json

    from .models import ModelSpec

    path = Path(text)
    if not text.lstrip().startswith("{"):
        if not path.is_file():
            raise FileNotFoundError(f"--spec {text}: not JSON text and no such file")
        text = path.read_text(encoding="utf-8")
    try:
        return ModelSpec.from_json(text)
    except ValueError as err:
        raise ValueError(f"--spec: {err}") from None


# --- progress -------------------------------------------------------------------------------------


class BarProgress:
    """One tqdm bar per stage (segment, vafa, pgd, ...); JSON lines instead when the caller set
    FREQADV_PROGRESS=json (see job/progress.py)."""

    def __init__(self) -> None:
        self.bars: dict[str, tqdm] = {}
        self.json = JsonProgress() if json_requested() else None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.json is not None:
            return self.json(stage, done, total)
        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=f"{stage:>8s}", unit="step", leave=True, file=sys.stderr)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()


# --- commands -------------------------------------------------------------------------------------


def cmd_segment(args: argparse.Namespace) -> int:
    from .job.inference import load_segmentation_model
    from .files.images import atomic_output_dir, check_output_target, read_image, write_image
    from .job.pipeline import run_segmentation

    check_output_target(args.output, args.overwrite, _inputs(args.input, args.model))
    image = read_image(args.input)
    loaded = load_segmentation_model(args.model, args.device, options=load_options(args))
    _warn_if_not_ct(args, image, loaded)
    *_, labels = run_segmentation(image, loaded, run_options(args))
    name = f"segmentation.{args.format}"
    with atomic_output_dir(args.output, args.overwrite, _inputs(args.input, args.model)) as tmp:
        write_image(labels, tmp / name)
    print(f"wrote {Path(args.output) / name}")
    return 0


def cmd_attack(args: argparse.Namespace) -> int:
    from .job.inference import load_segmentation_model
    from .files.images import check_output_target, read_image
    from .job.pipeline import run_job, write_outputs

    check_output_target(args.output, args.overwrite, _inputs(args.input, args.labels, args.model))
    image = read_image(args.input)
    labels = read_image(args.labels) if args.labels else None
    if args.eps_hu is not None and getattr(args, "eps", None) is not None:
        raise ValueError("give the voxel attacks' budget once: --eps (on the [0, 1] scale) or --eps-hu (in HU), not both")
    loaded = load_segmentation_model(args.model, args.device, options=load_options(args))
    _warn_if_not_ct(args, image, loaded)
    requests = apply_eps_hu(attack_requests(args, ["vafa"]), args.eps_hu, loaded.spec)
    job = run_job(image, loaded, requests, labels, run_options(args), BarProgress())
    out = write_outputs(job, args.output, overwrite=args.overwrite, suffix="." + args.format)
    _print_summary(job)
    print(f"report: {out / 'report.html'}")
    _write_scene_if_asked(args, out, args.input, args.labels)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation.evaluate import load_datalist
    from .job.inference import using_load_options
    from .files.images import check_output_target
    from .evaluation.distributed_eval import evaluate_datalist_distributed

    models = args.models or [args.model or "demo-unet"]
    cases = load_datalist(args.datalist, args.split)
    case_files = [path for case in cases for path in case.values()]
    check_output_target(args.output, args.overwrite, _inputs(args.datalist, *case_files, *models))
    # One process: plain evaluation; under torchrun: cases sharded over ranks, rank 0 writes.
    with using_load_options(load_options(args)):
        summary = evaluate_datalist_distributed(
            args.datalist, models, attack_requests(args, []), args.output, run_options(args), args.device,
            split=args.split, overwrite=args.overwrite, progress=BarProgress(),
        )
    if summary:
        print(summary)
    return 0


def demo_requests(steps: int) -> list:
    """The demo's attacks: VAFA as the paper's Algorithm 1, VAFA as the authors' code runs it, PGD at
    the paper's 4/255, and SA2 when the registry has it; each at ``steps`` steps."""
    from .attacks import registry
    from .job.pipeline import AttackRequest

    requests = [
        AttackRequest("vafa:paper", {"steps": steps}),
        # The issue-10 measurements use the code's preset on 32^3 blocks (the paper's Table 5 size).
        AttackRequest("vafa:public-code", {"steps": steps, "block_size": 32}),
        AttackRequest("pgd", {"eps": 4 / 255, "alpha": 0.01, "steps": steps}),
    ]
    if "sa2" in registry.names():
        requests.append(AttackRequest("sa2", {"steps": steps} if "steps" in registry.get("sa2").param_names else {}))
    return requests


def demo_curve(job, steps: int, progress=None) -> list:
    """A small robustness curve for VAFA (public code) and PGD, reusing the demo's own runs as one
    point of each line: the strengths of ``DEMO_CURVE``, where a study would use the registry's
    five or more and more steps."""
    from .evaluation.curve import CurveAttack, point_from_outcome, sweep

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
    return sorted(points, key=lambda p: (p.attack, p.value))


def cmd_demo(args: argparse.Namespace) -> int:
    from .job.inference import load_segmentation_model
    from .files.images import check_output_target, read_image
    from .job.pipeline import RunOptions, run_job, write_outputs
    from .samples.sample_data import sample_ct_path, sample_labels_path

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
    _print_summary(job)
    if curve:
        from .evaluation.curve import summary_sentence

        print(f"curve ({len(curve)} points, {args.steps} steps each): {summary_sentence(curve)}")
    print(f"report: {out / 'report.html'}")
    _write_scene_if_asked(args, out, sample_ct_path(), sample_labels_path())
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .models import list_models

    if getattr(args, "models_command", None) == "import":
        return cmd_models_import(args)
    for entry in list_models():
        where = "shipped" if "file" in entry else "download: " + entry.get("source", entry.get("url", ""))
        print(f"{entry['name']:<34s} {entry['arch']:<10s} {where}\n    {entry['description']}")
    return 0


def cmd_models_import(args: argparse.Namespace) -> int:
    """Read any supported model once and save it as .safetensors with its spec."""
    from .models import family_of, load_model, save_model, resolve_model

    out = Path(args.output)
    if out.suffix != ".safetensors":
        raise ValueError(f"models import writes .safetensors files; got -o {out.name!r}")
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    source = resolve_model(args.source)
    family = family_of(source).NAME
    model, spec = load_model(source, options=load_options(args))
    save_model(out, model, spec)
    print(f"wrote {out} ({family} model: {spec.arch}, {len(spec.label_names)} labels)")
    return 0


def _inputs(*paths) -> list[str]:
    """The run's input paths that are files or folders here (a registry model name is not)."""
    return [str(p) for p in paths if p is not None and Path(p).exists()]


def _warn_if_not_ct(args: argparse.Namespace, image, loaded) -> None:
    """A CT model on an image that does not look like a CT in HU: say so, then go on."""
    from .job.modality import ct_warning

    message = ct_warning(image, loaded.spec)
    if message:
        print(f"freqadv {args.command}: warning: {message}", file=sys.stderr)


def _write_scene_if_asked(args: argparse.Namespace, out: Path, image, labels) -> None:
    """``--scene``: a Slicer scene (.mrb) beside the results, made with the MRML bridge."""
    if not args.scene:
        return
    try:
        from .mrml.results import write_scene
    except ImportError as err:
        raise ValueError(f"--scene needs slicer-core (pip install 'freqadvsegment[slicer]'): {err}") from err
    print(f"scene: {write_scene(out, image, labels)}")


def _print_summary(job) -> None:
    """One line per condition: Dice, then the size of the change that bought it; warnings last."""
    ref = "ground truth" if job.ground_truth is not None else "clean prediction"
    if job.clean_metrics is not None:
        print(f"clean      mean Dice vs {ref}: {job.clean_metrics.mean_dice:.3f}")
    for o in job.outcomes:
        m = o.metrics
        print(f"{o.request.label:<10s} mean Dice vs {ref}: {m.vs_reference.mean_dice:.3f}  "
              f"(vs clean prediction {m.vs_clean_prediction.mean_dice:.3f}, "
              f"{100 * m.flip_rate:.2f}% labels flipped, {o.seconds:.1f} s)")
        print(f"{'':<10s} budget: {_budget_text(m)}")
    for o in job.outcomes:
        if o.metrics.visible:
            print(f"warning: {o.request.label}: {o.metrics.visible}")


def _budget_text(metrics) -> str:
    b, st = metrics.budget, metrics.strength
    strength = f"{st.text}; " if st else ""
    return (f"{strength}inside the body: max {b.linf_hu:.1f} HU, RMS {b.rms_hu:.1f} HU, "
            f"PSNR {b.psnr_db:.1f} dB, SSIM {b.ssim:.3f}")


COMMANDS = {"segment": cmd_segment, "attack": cmd_attack, "evaluate": cmd_evaluate, "demo": cmd_demo, "curve": cmd_curve, "models": cmd_models, "serve": cmd_serve, "train": cmd_train}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, --version, or a usage error (already printed, one line)
        return done.code if isinstance(done.code, int) else 2
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print(f"freqadv {args.command}: cancelled; no output was written", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            raise
        # One clear line, no traceback; nothing was written (outputs are atomic).
        code, message = describe_error(err)
        print(f"freqadv {args.command}: error: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
