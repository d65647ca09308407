"""Results folders that are safe to create and to replace.

Rules (each checked by :func:`check_output_target` before any model work, and again at commit):

* A results folder is written as a hidden temporary sibling ``.NAME.tmp-PID-HEX`` and renamed into
  place only when complete, so a crash, a full disk or Ctrl-C never leaves one that looks whole.
* Every folder FreqAdvSegment writes holds a stamp, ``.freqadv``, listing the files it wrote.
  ``overwrite`` replaces only such a folder, and only if it holds nothing else: a folder of the
  user's own files (or one they added files to) is never deleted.
* A folder that holds an input of the run (image, labels, datalist, model) is never replaced.
* The folder the temporary sibling goes in must be writable: a probe file is created and removed
  first, so a read-only or missing location fails at once, not after an hour of attacking.
* Temporary siblings left by killed runs (their process is gone) are removed, and reported.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

STAMP = ".freqadv"


@contextlib.contextmanager
def atomic_output_dir(
    final_dir: str | os.PathLike, overwrite: bool = False, inputs: Iterable[str | os.PathLike] = ()
) -> Iterator[Path]:
    """Yield a temporary sibling folder that becomes ``final_dir`` only if the block succeeds.

    Usage::

        with atomic_output_dir("results/case01") as out:
            write_image(seg, out / "seg.nii.gz")

    Args:
        final_dir: the results folder to create. Missing parent folders are created.
        overwrite: if ``final_dir`` is a non-empty folder that FreqAdvSegment wrote (it has the
            ``.freqadv`` stamp and nothing else), replace it (only after success).
        inputs: paths the run reads; a ``final_dir`` holding any of them is never replaced.

    Yields:
        Path of the temporary folder to write into.

    Raises:
        FileExistsError: ``final_dir`` is a file, or a non-empty folder that may not be replaced.
        ValueError: ``final_dir`` holds one of ``inputs``.
        PermissionError, OSError: the location is not writable.
    """
    final = Path(final_dir)
    check_output_target(final, overwrite, inputs)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{secrets.token_hex(6)}")
    tmp.mkdir()  # plain mkdir honours the umask, unlike tempfile.mkdtemp's 0700
    try:
        yield tmp
        _write_stamp(tmp)
        _commit_dir(tmp, final, overwrite, inputs)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_output_target(
    final_dir: str | os.PathLike, overwrite: bool = False, inputs: Iterable[str | os.PathLike] = ()
) -> None:
    """Refuse an output folder that cannot or may not be written, before any work is done.

    Also removes temporary folders that killed runs left beside ``final_dir`` (reported on stderr).
    Raises FileExistsError, ValueError or OSError with a one-line message saying what to do.
    """
    final = Path(final_dir)
    _refuse_inputs_inside(final, inputs)
    if final.exists() and not final.is_dir():
        raise FileExistsError(f"output path '{final}' is a file; choose a folder path")
    if final.is_dir() and any(final.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"output folder '{final}' already exists and is not empty; choose another folder or "
                f"pass --overwrite to replace results FreqAdvSegment wrote there"
            )
        _refuse_foreign(final)
    probe_writable(final.parent)
    clean_stale_temporaries(final)


def _refuse_inputs_inside(final: Path, inputs: Iterable[str | os.PathLike]) -> None:
    root = final.resolve()
    for item in inputs:
        path = Path(item).resolve()
        if path == root or root in path.parents:
            raise ValueError(
                f"output folder '{final}' holds an input of this run ('{item}'); choose an output "
                f"folder that does not contain the input, labels, datalist or model"
            )


def _refuse_foreign(final: Path) -> None:
    """Replace only a folder whose every file FreqAdvSegment wrote (listed in its stamp)."""
    stamp = final / STAMP
    try:
        written = set(json.loads(stamp.read_text(encoding="utf-8"))["files"])
    except (OSError, ValueError, KeyError, TypeError):
        raise FileExistsError(
            f"output folder '{final}' was not written by FreqAdvSegment (no valid {STAMP} stamp), so "
            f"--overwrite will not delete it; choose another folder or empty it yourself"
        ) from None
    foreign = sorted(set(_files(final)) - written - {STAMP})
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise FileExistsError(
            f"output folder '{final}' holds files FreqAdvSegment did not write ({shown}), so "
            f"--overwrite will not delete it; move them out or choose another folder"
        )


def _files(folder: Path) -> list[str]:
    """Every file and link under ``folder``, as relative POSIX paths."""
    return [p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir() or p.is_symlink()]


def _write_stamp(folder: Path) -> None:
    from .. import __version__

    files = sorted(_files(folder))
    text = json.dumps({"tool": "FreqAdvSegment", "version": __version__, "files": files}, indent=1)
    (folder / STAMP).write_text(text, encoding="utf-8")


def probe_writable(folder: Path) -> None:
    """Create and remove a probe file in ``folder`` (or its nearest existing ancestor)."""
    target = Path(folder)
    while not target.exists() and target != target.parent:
        target = target.parent
    if not target.is_dir():
        raise FileExistsError(f"cannot create the output folder: '{target}' is a file, not a folder")
    probe = target / f".freqadv-probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(target)) from None


def describe_os_error(err: OSError) -> str:
    """One clause for an OS error, with what to do about the common ones."""
    hints = {
        errno.EROFS: "the file system is read-only; choose an output folder on a writable disk",
        errno.ENOSPC: "the disk is full; free some space or choose an output folder on another disk",
        errno.EDQUOT: "the disk quota is exceeded; free some space or choose another output folder",
        errno.EACCES: "permission denied; choose an output folder you can write to",
        errno.EPERM: "operation not permitted; choose an output folder you can write to",
    }
    return hints.get(err.errno or 0, err.strerror or str(err))


def clean_stale_temporaries(final: Path) -> list[Path]:
    """Remove ``.NAME.tmp-PID-*`` / ``.NAME.old-*`` siblings whose process is gone; returns them."""
    parent = final.parent
    if not parent.is_dir():
        return []
    removed = []
    for path in list(parent.glob(f".{final.name}.tmp-*")) + list(parent.glob(f".{final.name}.old-*")):
        if path.is_dir() and not _owner_alive(path.name):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
            print(f"freqadv: removed '{path}', left by an earlier run that was killed", file=sys.stderr)
    return removed


def _owner_alive(name: str) -> bool:
    """Whether the process named in ``.NAME.tmp-PID-HEX`` still runs. Names without a PID were
    written by older versions, whose runs did not survive an upgrade: treated as gone."""
    marker = ".tmp-" if ".tmp-" in name else ".old-"
    tail = name.rsplit(marker, 1)[-1]
    pid_text = tail.split("-", 1)[0] if "-" in tail else ""
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def _commit_dir(tmp: Path, final: Path, overwrite: bool, inputs: Iterable[str | os.PathLike]) -> None:
    """Move ``tmp`` to ``final``; an old ``final`` is set aside first and deleted only after."""
    if final.is_dir() and any(final.iterdir()):  # again: something may have appeared meanwhile
        if not overwrite:
            raise FileExistsError(f"output folder '{final}' appeared while this run worked; choose another folder")
        _refuse_inputs_inside(final, inputs)
        _refuse_foreign(final)
    elif final.exists() and not final.is_dir():
        raise FileExistsError(f"output path '{final}' is a file; choose a folder path")
    old = None
    if final.is_dir():
        old = final.with_name(f".{final.name}.old-{os.getpid()}-{secrets.token_hex(6)}")
        os.replace(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        if old is not None:
            os.replace(old, final)  # put the previous results back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
