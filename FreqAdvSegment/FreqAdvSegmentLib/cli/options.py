"""The verbs' shared command-line vocabulary: argument types and option groups.

Argument types (``type=`` of ``add_argument``) turn one word into a value or refuse it with one
line: ``fraction``, ``positive_int``, ``overlap``, ``triple``. Option groups add the flags several
verbs share: ``add_run_options`` (model, device, sliding window), ``add_model_source_options``,
``add_attack_options`` (from the attack registry), ``add_budget_options``.

Only parsers are built here; what the parsed options mean to the engine is in ``settings``.
"""

from __future__ import annotations

import argparse

# The parser lists the registry's attacks, presets and parameters and the known model architectures,
# so building it needs these; both are read when the parser is built, so a plug-in attack registered
# after this import still gets its flags.
from ..attacks import registry
from ..attacks.options import add_param_flags, method_listing, preset_names, request_text
from ..finite import parse_number
from ..models.spec import KNOWN_ARCHS

INPUT_HELP = "CT volume in HU: .nii/.nii.gz/.nrrd/.mha or a DICOM series folder"


def fraction(text: str) -> float:
    """A number or a fraction such as ``4/255``."""
    try:
        return parse_number(text, "the value")
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a finite number or a fraction like 4/255 ({err})") from None


def positive_int(text: str) -> int:
    """A whole number >= 1 (``--sw-batch-size``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def overlap(text: str) -> float:
    """A sliding-window overlap in [0, 1)."""
    try:
        value = parse_number(text, "the overlap")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1) (0.25 is usual; 1 would never move the window), got {value:g}")
    return value


def triple(text: str) -> tuple[int, int, int]:
    """A 3D size in voxels: ``96`` (a cube), ``96,96,64`` or ``96x96x64``."""
    try:
        parts = [int(p) for p in text.replace("x", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 96 or 96,96,64, got {text!r}") from None
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected a size like 96 or 96,96,64, got {text!r}")
    return tuple(parts)  # type: ignore[return-value]


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Model, device, sliding window, precision, seed, metrics and label map; then the model source."""
    g = p.add_argument_group("model and device")
    g.add_argument("--model", default="demo-unet", help="registry name (see `freqadv models`), checkpoint file or MONAI bundle folder (default: demo-unet)")
    g.add_argument("--device", default="auto", help="auto (CUDA GPU when available), cpu, cuda, cuda:N or mps (Apple GPU) (default: auto)")
    g.add_argument("--roi", type=triple, default=None, help="sliding-window size, e.g. 96 or 96,96,96 (default: the model's own)")
    g.add_argument("--overlap", type=overlap, default=None, help="sliding-window overlap in [0, 1) (default: the model's own, else 0.25)")
    g.add_argument("--sw-batch-size", type=positive_int, default=None, help="windows per forward pass; lower it if memory runs out (default: the model's own, else 2)")
    g.add_argument("--amp", choices=["bf16", "fp16"], default=None, help="mixed precision (fp16 needs CUDA)")
    g.add_argument("--seed", type=int, default=0, help="seed for the attacks' randomness (default 0)")
    g.add_argument("--include-background", action="store_true", help="count background in mean Dice/HD95 (the paper's convention)")
    g.add_argument("--label-map", default=None, help="ground-truth values -> the model's, e.g. 6:1,2:3 or a JSON file; unlisted values become background")
    add_model_source_options(p)


def add_model_source_options(p: argparse.ArgumentParser) -> None:
    """How to read the model: for weights without a spec, nnU-Net folders, TorchScript."""
    g = p.add_argument_group("model source")
    g.add_argument("--arch", choices=[a for a in KNOWN_ARCHS if a not in ("nnunet", "torchscript")], default=None,
                   help="network of a plain state dict (default arguments; channels read off the weights)")
    g.add_argument("--spec", default=None, help="the model's full ModelSpec: JSON text or a .json file (overrides the file's own)")
    g.add_argument("--fold", action="append", type=int, default=None, help="nnU-Net: fold to use; repeat to ensemble several (default: all present)")
    g.add_argument("--configuration", default=None, help="nnU-Net: configuration (default: from the folder name, else 3d_fullres)")
    g.add_argument("--no-tta", action="store_true", help="nnU-Net: no mirroring test-time augmentation")
    g.add_argument("--trust-model-code", action="store_true", help="allow TorchScript models (they are code and run when loaded)")


def attack_help() -> str:
    """The attack group's text, from the registry: every method and preset, one line each."""
    return (
        "--method takes NAME[:PRESET][,KEY=VALUE...], e.g. vafa:public-code,q_max=30 or pgd,eps=8/255;\n"
        "repeat it for several attacks. A parameter flag (--q-max ...) applies to every chosen attack\n"
        "that takes it, a KEY=VALUE of one --method wins over it; --preset applies to every chosen\n"
        "attack that has that preset. Intensities are on the [0, 1] scale: a fraction like 4/255\n"
        "gives the paper's 0-255 units.\n\nmethods and presets:\n" + method_listing()
    )


def add_attack_options(p: argparse.ArgumentParser, default_methods: list[str] | None = None) -> None:
    """--method, --preset, --public-code and one flag per attack parameter (as registered now)."""
    g = p.add_argument_group("attacks", attack_help())
    g.add_argument("--method", action="append", type=request_text, default=None, metavar="REQUEST",
                   help=f"attack to run, one of {', '.join(registry.names())} (presets above); repeat for "
                        f"several (default: {' and '.join(default_methods or ['vafa'])})")
    g.add_argument("--preset", choices=preset_names(), default=None,
                   help="preset for every chosen attack that has it (e.g. public-code, table5, eps8)")
    g.add_argument("--public-code", action="store_true", help="the same as --preset public-code (VAFA as the authors' code runs it)")
    add_param_flags(p, g)


def add_budget_options(p: argparse.ArgumentParser) -> None:
    """--eps-hu: the voxel attacks' budget in HU (``settings.apply_eps_hu`` maps it to [0, 1])."""
    g = p.add_argument_group("budgets")
    g.add_argument("--eps-hu", type=fraction, default=None,
                   help="L-inf budget of the voxel attacks in HU (e.g. 10), mapped through the model's intensity window: "
                        "4/255 is 6.7 HU on a 425 HU window but 33 HU on a 2000 HU one; replaces --eps")

