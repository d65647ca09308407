"""``freqadv models``: the models the registry knows; ``freqadv models import``: any model -> .safetensors."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..files.output_file import check_output_file
from ..models import family_of, list_models, load_model, resolve_model, save_model
from .options import add_model_source_options
from .settings import load_options


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``models`` (and its ``import`` verb) to ``freqadv``'s sub-command parsers."""
    p = subparsers.add_parser("models", help="list the models the registry knows; `models import` converts a model", formatter_class=argparse.RawDescriptionHelpFormatter,
                              description="With no argument: the registry's models. `models import SRC -o OUT.safetensors`: read any supported model (nnU-Net folder, MONAI bundle, Auto3DSeg model.pt, state dict) once and save it with its spec in the safe format.")
    verbs = p.add_subparsers(dest="models_command", metavar="VERB")
    q = verbs.add_parser("import", help="convert SRC into a .safetensors file with its spec")
    q.add_argument("source", help="model file or folder (any supported family)")
    q.add_argument("-o", "--output", required=True, help="the .safetensors file to write (atomically)")
    q.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    add_model_source_options(q)
    return p


def run(args: argparse.Namespace) -> int:
    """List the registry's models, or run ``models import``."""
    if getattr(args, "models_command", None) == "import":
        return run_import(args)
    for entry in list_models():
        where = "shipped" if "file" in entry else "download: " + entry.get("source", entry.get("url", ""))
        print(f"{entry['name']:<34s} {entry['arch']:<10s} {where}\n    {entry['description']}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    """Read any supported model once and save it as .safetensors with its spec."""
    out = Path(args.output)
    if out.suffix != ".safetensors":
        raise ValueError(f"models import writes .safetensors files; got -o {out.name!r}")
    source = resolve_model(args.source)
    check_output_file(out, args.overwrite, [source])  # no link followed, never over its own source
    family = family_of(source).NAME
    model, spec = load_model(source, options=load_options(args))
    save_model(out, model, spec)
    print(f"wrote {out} ({family} model: {spec.arch}, {len(spec.label_names)} labels)")
    return 0
