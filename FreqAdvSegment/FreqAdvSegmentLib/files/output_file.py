"""A single output file (a model, an export) that may be written: never through a link, never over
an input of the run, never over an existing file unless the user said so.

Folders of results: :mod:`.output_dir`. The write itself: :mod:`.atomic_file`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path


def check_output_file(
    path: str | os.PathLike,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike | None] = (),
    flag: str = "-o",
) -> Path:
    """Refuse ``path`` as an output file, with one line naming ``flag``, unless it is safe to write.

    Args:
        path: the file to be written (atomically, by a rename over it).
        overwrite: an existing regular file may be replaced.
        inputs: files the run reads (None entries are skipped); ``path`` is never one of them,
            whatever ``overwrite`` says, since the run would replace what it started from.
        flag: the option that named ``path``, for the message.

    Raises:
        FileExistsError: ``path`` is a link, a folder or other non-file, exists without
            ``overwrite``, or is one of ``inputs``.
    """
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and stat.S_ISLNK(mode):
        raise FileExistsError(
            f"{flag} '{path}' is a symbolic link; FreqAdvSegment never writes through a link: give the real path or a new one"
        )
    if mode is not None and not stat.S_ISREG(mode):
        raise FileExistsError(f"{flag} '{path}' exists and is not a regular file; choose a new file name")
    for item in inputs:
        if item is not None and _same_file(path, Path(item)):
            raise FileExistsError(
                f"{flag} '{path}' is an input of this run ('{item}'); write to another file so the input is kept"
            )
    if mode is not None and not overwrite:
        raise FileExistsError(f"{flag} '{path}' already exists; choose a new file name or pass --overwrite to replace it")
    return path


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()
