"""What the parsed options mean to the engine: RunOptions, LoadOptions, AttackRequests, HU budgets.

The option groups that produce these flags are in ``options``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..attacks import registry
from ..attacks.options import chosen_preset, check_all_taken, check_preset_used, given_params, params_for, preset_for
from ..models import LoadOptions, ModelSpec


def attack_requests(args: argparse.Namespace, default: Sequence[str] = ("vafa",)) -> list:
    """One AttackRequest per --method (``default`` without any), each with the preset and the
    parameter flags it takes; per-request KEY=VALUE wins over the flags. Labels are unique."""
    from ..job.pipeline import AttackRequest, unique_labels  # SimpleITK, MONAI: loaded when a command runs, not for --help

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


def apply_eps_hu(requests: list, eps_hu: float | None, spec: Any) -> list:
    """Set eps of every voxel attack in ``requests`` from a budget in HU, through ``spec``'s window.

    Args:
        requests: the run's AttackRequests (changed in place, and returned).
        eps_hu: the budget in HU (None: nothing to do).
        spec: the model's ModelSpec; its ``intensity_window`` (a_min, a_max) in HU maps to [0, 1].
    """
    if eps_hu is None:
        return requests
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
    """RunOptions from the run option group (``options.add_run_options``)."""
    from ..job.label_map import parse_label_map  # SimpleITK, MONAI: loaded when a command runs, not for --help
    from ..job.pipeline import RunOptions

    label_map = parse_label_map(args.label_map) if getattr(args, "label_map", None) else None
    return RunOptions(args.roi, args.overlap, args.sw_batch_size, args.amp, args.seed, args.include_background, label_map)


def load_options(args: argparse.Namespace) -> LoadOptions:
    """LoadOptions from --arch, --spec, --fold, --configuration, --no-tta, --trust-model-code."""
    spec = spec_argument(args.spec) if args.spec else None
    if spec is not None and args.arch is not None and spec.arch != args.arch:
        raise ValueError(f"--arch {args.arch} contradicts --spec, whose arch is {spec.arch}; give one of them")
    folds = tuple(args.fold) if args.fold else None
    return LoadOptions(spec, args.arch, folds, args.configuration, not args.no_tta, args.trust_model_code)


def spec_argument(text: str) -> ModelSpec:
    """A ModelSpec from --spec: JSON text or a .json file."""
    path = Path(text)
    if not text.lstrip().startswith("{"):
        if not path.is_file():
            raise FileNotFoundError(f"--spec {text}: not JSON text and no such file")
        text = path.read_text(encoding="utf-8")
    try:
        return ModelSpec.from_json(text)
    except ValueError as err:
        raise ValueError(f"--spec: {err}") from None


def existing_paths(*paths: Any) -> list[str]:
    """The run's input paths that are files or folders here (a registry model name is not): what
    the output folder must never replace."""
    return [str(p) for p in paths if p is not None and Path(p).exists()]
