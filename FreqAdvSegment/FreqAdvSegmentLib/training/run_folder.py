"""Which folder a training run may write to, and which files it may replace, checked before any work.

A new run needs a new or empty folder: a folder of the user's files would get its ``config.json``,
``summary.json`` and models replaced. ``--resume`` needs the folder of a run (its checkpoints).
Nothing the run reads (datalist, ``--init`` model, resumed checkpoint) may be one of the files the run
writes, and ``--export`` replaces an existing file only with ``--overwrite``, never an input.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path

from ..files.atomic_file import replace_text
from ..files.output_file import _same_file, check_output_file
from .checkpoint import list_checkpoints

# The files a run writes at the top of its folder (checkpoints/ and tensorboard/ are its own folders).
RUN_FILES = ("config.json", "summary.json", "train_log.csv", "val_log.csv",
             "model_best.safetensors", "model_final.safetensors")
RUN_STAMP = ".freqadv-train"  # written when a run folder is made: the folder is a run's, not the user's
_RUN_ENTRIES = {*RUN_FILES, RUN_STAMP, "checkpoints", "tensorboard"}


def write_run_stamp(out: Path) -> None:
    """Mark ``out`` as a training run's folder (once; an existing stamp is kept)."""
    stamp = Path(out) / RUN_STAMP
    if not stamp.exists():
        replace_text(stamp, json.dumps({"tool": "FreqAdvSegment", "kind": "training run",
                                        "run_id": secrets.token_hex(16)}) + "\n")


def _is_run_folder(out: Path) -> bool:
    """A folder made by a run: it holds the run stamp (a file, not a link) and nothing but what runs write."""
    try:
        stamp_mode = os.lstat(out / RUN_STAMP).st_mode
    except FileNotFoundError:
        return False
    # (".NAME.*.tmp": the temporary of an atomic write that a killed run left)
    temporaries = tuple(f".{name}." for name in RUN_FILES)
    return stat.S_ISREG(stamp_mode) and all(entry in _RUN_ENTRIES or entry.startswith(temporaries)
                                            for entry in os.listdir(out))


def check_run_folder(out: str | os.PathLike, resuming: bool, inputs: Iterable[str | os.PathLike | None] = ()) -> None:
    """Raise FileExistsError (one line, what to do) unless ``out`` may hold this run.

    Args:
        out: the run folder (``-o``).
        resuming: the run continues from a checkpoint (``--resume``).
        inputs: the files the run reads; none may be a file the run writes in ``out``.
    """
    out = Path(out)
    try:
        mode = os.lstat(out).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and stat.S_ISLNK(mode):
        raise FileExistsError(f"-o '{out}' is a symbolic link; give the real folder path or a new one")
    if mode is not None and not stat.S_ISDIR(mode):
        raise FileExistsError(f"-o '{out}' is a file; choose a folder path for the run")
    for item in inputs:
        if item is None:
            continue
        for name in RUN_FILES:
            if _same_file(out / name, Path(item)):
                raise FileExistsError(
                    f"'{item}' is read by this run but is the run folder's own {name}, which the run "
                    f"rewrites; move it out of '{out}' or choose another output folder"
                )
    if mode is None or not any(out.iterdir()):
        return
    if list_checkpoints(out / "checkpoints"):
        if resuming:
            return
        raise FileExistsError(
            f"{out} already holds a training run ({len(list_checkpoints(out / 'checkpoints'))} checkpoint(s) in "
            f"{out / 'checkpoints'}); pass --resume to continue it, or choose another output folder"
        )
    if not resuming and _is_run_folder(out):
        return  # an earlier run that stopped before its first checkpoint: its own files are replaced
    raise FileExistsError(
        f"output folder '{out}' is not empty and holds no training run of FreqAdvSegment; a run would replace "
        f"files there, so choose a new or empty folder" + (" (--resume continues only a run in its own folder)"
                                                         if resuming else "")
    )


def check_export(export: str | os.PathLike | None, out: str | os.PathLike, overwrite: bool,
                 inputs: Iterable[str | os.PathLike | None] = ()) -> None:
    """Refuse an ``--export`` path that is a link, an input, one of the run's own models, or an
    existing file without ``overwrite``."""
    if export is None:
        return
    own = [Path(out) / name for name in RUN_FILES if (Path(out) / name).exists()]
    for path in own:
        if Path(export).resolve() == path.resolve():
            raise FileExistsError(f"--export '{export}' is the run's own {path.name}; export to a file outside the run folder")
    check_output_file(export, overwrite, [p for p in inputs if p is not None and Path(p).exists()], flag="--export")
