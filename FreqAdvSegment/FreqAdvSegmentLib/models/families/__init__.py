"""Model families: how each kind of model source is detected, read and described.

A family is a module with NAME, DESCRIPTION, ``detect(path) -> bool`` and
``read(path, LoadOptions) -> Source``. ``read`` never runs code from the file (TorchScript only
behind trust_model_code); it returns a ModelSpec and weights that the one build step
(``factory.build_model``) turns into a network. Adding a family is one file and one entry in
FAMILY_MODULES; the first family whose detect() accepts a path reads it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from .common import LoadOptions, Source

FAMILY_MODULES = ("torchscript", "nnunet", "bundle", "auto3dseg", "monai_checkpoint")

__all__ = ["FAMILY_MODULES", "LoadOptions", "Source", "families", "family_of", "read_source"]


def families() -> list[ModuleType]:
    """The family modules, in detection order."""
    return [importlib.import_module(f"{__name__}.{name}") for name in FAMILY_MODULES]


def family_of(path: Path) -> ModuleType:
    """The family that reads path, or ValueError listing what is supported."""
    for family in families():
        if family.detect(path):
            return family
    kinds = "; ".join(f.DESCRIPTION for f in families())
    what = "folder" if path.is_dir() else f"file type {path.suffix!r}" if path.suffix else "file"
    raise ValueError(f"{path}: unsupported model {what}. FreqAdvSegment reads: {kinds}")


def read_source(path: Path, options: LoadOptions | None = None) -> Source:
    """Spec and weights (or a TorchScript module) from any supported model source."""
    return family_of(path).read(path, options or LoadOptions())
