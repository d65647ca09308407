"""The ``freqadv`` command line: the command table, the top-level parser and ``main``.

One module per verb, each with ``add_parser(subparsers)`` (adds its sub-command parser and
returns it) and ``run(args)`` (does the work, returns the exit code). ``COMMANDS`` below names
them in the order ``freqadv --help`` lists them, so a new verb is one file here plus one line in
``COMMANDS``. Shared flags and argument types are in ``options``, what they mean to the engine in
``settings``, terminal output in ``console``. Errors become one line and an exit code through
``errors.describe_error``; ``--debug`` shows the traceback instead.

The engine never imports this package: it is the outermost layer.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module
from types import ModuleType

from ..errors import describe_error
from .settings import apply_eps_hu, attack_requests

__all__ = ["COMMANDS", "DESCRIPTION", "apply_eps_hu", "attack_requests", "build_parser", "main", "verb"]

COMMANDS: dict[str, str] = {  # freqadv VERB -> its module: ".name" in this package, or any importable module
    "segment": ".segment",
    "attack": ".attack",
    "evaluate": ".evaluate",
    "curve": ".curve",
    "fourier": ".fourier",
    "demo": ".demo",
    "models": ".models",
    "train": ".train",
    "serve": ".serve",
}

DESCRIPTION = """The ``freqadv`` command line.

    freqadv demo                                   # the shipped CT, model, VAFA + PGD, a report
    freqadv segment CT.nii.gz -o out/
    freqadv attack CT.nii.gz --method vafa --method pgd --labels GT.nii.gz -o out/
    freqadv evaluate datalist.json --model demo-unet --method vafa --method pgd -o results/
    freqadv curve CT.nii.gz --method vafa:public-code --method pgd --labels GT.nii.gz -o curve/
    freqadv fourier CT.nii.gz --labels GT.nii.gz -o fourier/   # Dice drop per frequency band
    freqadv models                                 # models the registry knows
    freqadv models import NNUNET_FOLDER -o model.safetensors   # any model family -> safe format
    freqadv train datalist.json -o run/ --regime vafa-fr --init demo-unet   # VAFT
    freqadv serve                                  # the web viewer on http://127.0.0.1:8080

Run ``freqadv COMMAND --help`` for each command's options.
"""


def verb(name: str) -> ModuleType:
    """The module of ``freqadv NAME`` (imported on first use)."""
    return import_module(COMMANDS[name], __name__)


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors as one line (and exit 2), like every other error here."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The whole ``freqadv`` parser, every verb of ``COMMANDS`` in its order (built afresh, so
    attacks registered since the last call get their flags)."""
    parser = _Parser(prog="freqadv", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        verb(name).add_parser(sub)
    _add_debug_options(parser, sub)
    return parser


def _add_debug_options(parser: argparse.ArgumentParser, sub: argparse._SubParsersAction) -> None:
    """``--debug`` before or after the command: errors then show their full traceback."""
    text = "show the full traceback of an error instead of one line"
    parser.add_argument("--debug", action="store_true", help=text)
    for command in sub.choices.values():  # SUPPRESS: a command's default must not undo the top-level flag
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=text)


def _version() -> str:
    from .. import __version__

    return f"freqadv {__version__}"


def main(argv: list[str] | None = None) -> int:
    """Run ``freqadv ARGV``; the exit code (0 done, 2 bad input or resources, 1 a bug, 130 Ctrl-C)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, --version, or a usage error (already printed, one line)
        return done.code if isinstance(done.code, int) else 2
    try:
        return verb(args.command).run(args)
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
