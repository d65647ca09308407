"""Results folders that are safe to create and to replace, and that never touch what they did not create.

Rules (each checked by :func:`check_output_target` before any model work, and again at commit):

* A results folder is written as a hidden temporary sibling ``.NAME.freqadv-tmp-PID-HEX`` (holding
  a marker file naming the same ``HEX``) and renamed into place only when complete, so a crash, a
  full disk or Ctrl-C never leaves one that looks whole.
* Every folder FreqAdvSegment writes holds a stamp, ``.freqadv``: a random run id and the size and
  SHA-256 of every file it wrote. ``overwrite`` replaces only a folder whose every file and folder
  is listed there with the same size and hash: a folder of the user's own files (or one they added
  files to, edited, or forged a stamp for by name) is never deleted.
* Symbolic links are never followed: an output path that is a link is refused, and a results folder
  holding a link is never replaced (``lstat`` on every path; deletion uses no link).
* A folder that holds an input of the run (image, labels, datalist, model) is never replaced.
* The folder the temporary sibling goes in must be writable: a probe file is created and removed
  first, so a read-only or missing location fails at once, not after an hour of attacking.
* Temporary siblings left by killed runs (their process is gone) are removed, and reported. Only
  names this module makes are touched, matched exactly (never a glob built from the user's name),
  and only with the marker (temporaries) or a verified stamp (set-aside old results) inside.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

STAMP = ".freqadv"
TMP_MARKER = ".freqadv-tmp"  # inside a temporary folder: the HEX of its name, proof this module made it
_TOKEN = 12  # hex digits of the random part of temporary and set-aside names


def _sibling(final: Path, kind: str) -> Path:
    """``.NAME.freqadv-KIND-PID-HEX`` beside ``final``: a name no user picks by accident."""
    return final.with_name(f".{final.name}.freqadv-{kind}-{os.getpid()}-{secrets.token_hex(_TOKEN // 2)}")


def _sibling_pattern(final: Path) -> re.Pattern[str]:
    """Exactly the sibling names :func:`_sibling` makes for ``final`` (its name escaped, not globbed)."""
    return re.compile(rf"\.{re.escape(final.name)}\.freqadv-(tmp|old)-(\d+)-([0-9a-f]{{{_TOKEN}}})")


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
        overwrite: if ``final_dir`` is a non-empty folder that FreqAdvSegment wrote (its ``.freqadv``
            stamp lists every file in it, with matching sizes and hashes), replace it (only after success).
        inputs: paths the run reads; a ``final_dir`` holding any of them is never replaced.

    Yields:
        Path of the temporary folder to write into.

    Raises:
        FileExistsError: ``final_dir`` is a file or a link, or a non-empty folder that may not be replaced.
        ValueError: ``final_dir`` holds one of ``inputs``.
        PermissionError, OSError: the location is not writable.
    """
    final = Path(final_dir)
    inputs = list(inputs)
    check_output_target(final, overwrite, inputs)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(final, "tmp")
    tmp.mkdir()  # plain mkdir honours the umask, unlike tempfile.mkdtemp's 0700
    (tmp / TMP_MARKER).write_text(tmp.name.rsplit("-", 1)[1], encoding="ascii")
    try:
        yield tmp
        (tmp / TMP_MARKER).unlink()
        _write_stamp(tmp)
        _commit_dir(tmp, final, overwrite, inputs)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # ours: made above, and rmtree follows no link
        raise


def check_output_target(
    final_dir: str | os.PathLike, overwrite: bool = False, inputs: Iterable[str | os.PathLike] = ()
) -> None:
    """Refuse an output folder that cannot or may not be written, before any work is done.

    Also removes temporary folders that killed runs left beside ``final_dir`` (reported on stderr).
    Raises FileExistsError, ValueError or OSError with a one-line message saying what to do.
    """
    final = Path(final_dir)
    _refuse_link(final)
    _refuse_inputs_inside(final, inputs)
    mode = _lmode(final)
    if mode is not None and not stat.S_ISDIR(mode):
        raise FileExistsError(f"output path '{final}' is a file; choose a folder path")
    if mode is not None and any(final.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"output folder '{final}' already exists and is not empty; choose another folder or "
                f"pass --overwrite to replace results FreqAdvSegment wrote there"
            )
        verify_own_folder(final)
    probe_writable(final.parent)
    clean_stale_temporaries(final)


def _lmode(path: Path) -> int | None:
    """``st_mode`` of ``path`` itself (a link is not followed), or None if nothing is there."""
    try:
        return os.lstat(path).st_mode
    except FileNotFoundError:
        return None


def _refuse_link(final: Path) -> None:
    mode = _lmode(final)
    if mode is not None and stat.S_ISLNK(mode):
        raise FileExistsError(
            f"output path '{final}' is a symbolic link; FreqAdvSegment never writes or replaces "
            f"through a link: give the real folder path or a new one"
        )


def _refuse_inputs_inside(final: Path, inputs: Iterable[str | os.PathLike]) -> None:
    root = final.resolve()
    for item in inputs:
        path = Path(item).resolve()
        if path == root or root in path.parents:
            raise ValueError(
                f"output folder '{final}' holds an input of this run ('{item}'); choose an output "
                f"folder that does not contain the input, labels, datalist or model"
            )


def verify_own_folder(final: Path) -> None:
    """Raise FileExistsError unless FreqAdvSegment wrote every file and folder in ``final``.

    The stamp must list each file with the size and SHA-256 it was written with, and each
    sub-folder; a link, a file added or edited since, or a stamp without hashes (forged, or from
    an older version) keeps the folder. Nothing is followed through a link.
    """
    stamp = _read_stamp(final)
    if stamp is None:
        raise FileExistsError(
            f"output folder '{final}' was not written by FreqAdvSegment (no valid {STAMP} stamp), so "
            f"--overwrite will not delete it; choose another folder or empty it yourself"
        )
    files, dirs, links = _walk(final)
    if links:
        raise FileExistsError(
            f"output folder '{final}' holds a symbolic link or special file ({_shown(links)}), so "
            f"--overwrite will not delete it; remove it yourself or choose another folder"
        )
    listed = stamp["files"]
    foreign = sorted((set(files) - set(listed) - {STAMP}) | (set(dirs) - set(stamp["dirs"])))
    if foreign:
        raise FileExistsError(
            f"output folder '{final}' holds files FreqAdvSegment did not write ({_shown(foreign)}), so "
            f"--overwrite will not delete it; move them out or choose another folder"
        )
    changed = [name for name in files if name != STAMP and listed[name] != _fingerprint(final / name)]
    if changed:
        raise FileExistsError(
            f"output folder '{final}' holds files that differ from what FreqAdvSegment wrote there "
            f"({_shown(sorted(changed))}), so --overwrite will not delete it; move them out or choose another folder"
        )


def _read_stamp(final: Path) -> dict | None:
    """The stamp of ``final`` if it is a regular file of the current form (run id, hashes), else None."""
    path = final / STAMP
    mode = _lmode(path)
    if mode is None or not stat.S_ISREG(mode):
        return None
    try:
        stamp = json.loads(path.read_text(encoding="utf-8"))
        files = stamp["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if isinstance(files, list) and all(isinstance(f, str) for f in files):
        # Names only (an older version's stamp, or a forged one): never matches a fingerprint.
        return {**stamp, "files": dict.fromkeys(files), "dirs": []}
    if not isinstance(files, dict) or not isinstance(stamp.get("run_id"), str):
        return None
    if not isinstance(stamp.get("dirs"), list):
        return None
    return stamp


def _shown(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _walk(folder: Path) -> tuple[list[str], list[str], list[str]]:
    """(regular files, sub-folders, links and special files) under ``folder``, as relative POSIX
    paths, found with lstat only: no link is followed."""
    files, dirs, others = [], [], []
    pending = [folder]
    while pending:
        current = pending.pop()
        with os.scandir(current) as entries:
            for entry in entries:
                rel = Path(entry.path).relative_to(folder).as_posix()
                if entry.is_dir(follow_symlinks=False):
                    dirs.append(rel)
                    pending.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    files.append(rel)
                else:
                    others.append(rel)
    return sorted(files), sorted(dirs), sorted(others)


def _fingerprint(path: Path) -> dict[str, object]:
    """Size and SHA-256 of a regular file, read without following a link."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        size = 0
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return {"size": size, "sha256": digest.hexdigest()}


def _write_stamp(folder: Path) -> None:
    from .. import __version__

    files, dirs, links = _walk(folder)
    if links:  # FreqAdvSegment writes no links; one here would later block --overwrite
        raise OSError(errno.EINVAL, f"the run wrote a link or special file ({_shown(links)})", str(folder))
    stamp = {
        "tool": "FreqAdvSegment", "version": __version__, "run_id": secrets.token_hex(16),
        "files": {name: _fingerprint(folder / name) for name in files}, "dirs": dirs,
    }
    (folder / STAMP).write_text(json.dumps(stamp, indent=1), encoding="utf-8")


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
    """Remove the temporary and set-aside siblings of ``final`` whose process is gone; returns them.

    Only a real folder (not a link) whose name is exactly one :func:`_sibling` makes for ``final``
    is removed, and only if it proves it is ours: a temporary holds the marker naming its token, a
    set-aside old results folder a stamp that verifies. Anything else is the user's and stays.
    """
    parent = final.parent
    if not parent.is_dir():
        return []
    pattern = _sibling_pattern(final)
    removed = []
    for name in sorted(os.listdir(parent)):
        match = pattern.fullmatch(name)
        path = parent / name
        if match is None or not stat.S_ISDIR(_lmode(path) or 0) or _pid_alive(int(match[2])):
            continue
        if not (_holds_marker(path, match[3]) if match[1] == "tmp" else _verifies(path)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
        print(f"freqadv: removed '{path}', left by an earlier run that was killed", file=sys.stderr)
    return removed


def _holds_marker(folder: Path, token: str) -> bool:
    marker = folder / TMP_MARKER
    mode = _lmode(marker)
    try:
        return mode is not None and stat.S_ISREG(mode) and marker.read_text(encoding="ascii") == token
    except (OSError, UnicodeDecodeError):
        return False


def _verifies(folder: Path) -> bool:
    try:
        verify_own_folder(folder)
    except (FileExistsError, OSError):
        return False
    return True


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (this process counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's live process, or a number no process has: keep it
    return True


def _commit_dir(tmp: Path, final: Path, overwrite: bool, inputs: Iterable[str | os.PathLike]) -> None:
    """Move ``tmp`` to ``final``. An old ``final`` is first renamed aside to a name only this run
    knows, verified there (so nothing can swap it between the check and the delete), put back if it
    does not verify, and deleted only after ``tmp`` is in place."""
    _refuse_link(final)
    mode = _lmode(final)
    if mode is not None and not stat.S_ISDIR(mode):
        raise FileExistsError(f"output path '{final}' is a file; choose a folder path")
    old = None
    if mode is not None:
        if any(final.iterdir()):  # again: something may have appeared meanwhile
            if not overwrite:
                raise FileExistsError(f"output folder '{final}' appeared while this run worked; choose another folder")
            _refuse_inputs_inside(final, inputs)
        old = _sibling(final, "old")
        os.rename(final, old)
        if not stat.S_ISDIR(_lmode(old) or 0):
            os.rename(old, final)
            raise FileExistsError(f"output folder '{final}' changed while this run worked; choose another folder")
        if any(old.iterdir()):
            try:
                verify_own_folder(old)
            except FileExistsError:
                os.rename(old, final)
                verify_own_folder(final)  # raise with the folder's real name
                raise
    try:
        os.rename(tmp, final)
    except BaseException:
        if old is not None:
            os.rename(old, final)  # put the previous results back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)  # verified: only our files, no links
