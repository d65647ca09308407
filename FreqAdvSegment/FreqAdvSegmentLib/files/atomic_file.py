"""A single file written whole or not at all (folders of results: :mod:`.output_dir`).

The content goes to a hidden temporary file beside the destination (same file system, so the
rename is atomic) and replaces it only when complete: a crash, a full disk or Ctrl-C leaves the
old file, or none, never half of a new one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def replace_file(path: str | os.PathLike, write: Callable[[Path], None], durable: bool = False) -> Path:
    """Write ``path`` through ``write(tmp)``, then rename ``tmp`` over it.

    Args:
        path: the destination; its folder must exist.
        write: writes the whole content to the path it is given (a ``.tmp`` file, so a writer that
            picks its format from the name must be told the format).
        durable: fsync the file and then its folder, so that the new file survives a power cut
            (training checkpoints).

    The file gets the permissions an ordinary ``open()`` gives (0666 less the umask), not the
    private 0600 of ``mkstemp``: models and results are meant to be read by others. On any
    failure the temporary file is removed and an existing ``path`` is left as it was.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
        if durable:
            _fsync(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def replace_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """:func:`replace_file` with ``text`` as the content."""
    return replace_file(path, lambda tmp: tmp.write_text(text, encoding=encoding))


def _umask() -> int:
    # The only way to read the umask is to set it; set it straight back.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(target: Path) -> None:
    """fsync a file or a folder; a no-op where the platform cannot open or sync it (folders on Windows)."""
    try:
        fd = os.open(target, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
