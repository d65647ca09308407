"""SHA-256 of what a run reads (a file, or every file of a folder such as a DICOM series or a
bundle), so a saved partial result can be bound to the exact inputs it was measured on."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def content_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, or of a folder's files (relative names and bytes, in name
    order; links are not followed). Raises OSError if ``path`` cannot be read."""
    path = Path(path)
    if not path.is_dir():
        return _file_sha256(path).hexdigest()
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):  # os.walk follows no link to a folder by default
        dirs.sort()
        for name in sorted(files):
            file = Path(root, name)
            if file.is_symlink() or not file.is_file():
                continue
            digest.update(file.relative_to(path).as_posix().encode("utf-8", "surrogateescape") + b"\0")
            digest.update(_file_sha256(file).digest())
    return digest.hexdigest()


def _file_sha256(path: Path) -> "hashlib._Hash":
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest
