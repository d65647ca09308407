"""Downloads: files of the current job's output folder, and nothing else.

A download URL names the job by a random token and a file by its path inside that job's folder
(``/freqadv/download/<token>/fgsm/adversarial.nrrd``). :func:`resolve_download` turns the path
into a file only if it stays inside the folder after every ``..``, symlink and absolute-path
trick is resolved; anything else is "not found", so probing says nothing about the disk.
"""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

ARCHIVE_NAME = "freqadv-results.zip"
# Suffixes served as what they are; everything is sent as an attachment (never rendered in
# the viewer's origin), with this type for the browser's "save as" dialog.
_CONTENT_TYPES = {".json": "application/json", ".html": "text/html", ".png": "image/png",
                  ".zip": "application/zip", ".csv": "text/csv"}


class DownloadError(LookupError):
    """No such file in the job's folder (the reason is kept for logs, not sent to clients)."""


def resolve_download(folder: Path, relative: str) -> Path:
    """The file ``relative`` (a '/'-separated path) inside ``folder``; DownloadError otherwise."""
    if not relative or "\\" in relative or "\x00" in relative:
        raise DownloadError(f"invalid file name {relative!r}")
    parts = PurePosixPath(relative).parts
    if PurePosixPath(relative).is_absolute() or ".." in parts:
        raise DownloadError(f"path {relative!r} leaves the job folder")
    root = Path(folder).resolve(strict=True)
    target = root.joinpath(*parts).resolve()  # follows symlinks, so a link out is caught below
    if not target.is_relative_to(root) or not target.is_file():
        raise DownloadError(f"{relative!r} is not a file of this job")
    return target


def list_downloads(folder: Path) -> list[str]:
    """Every file of ``folder`` as a '/'-separated relative path, report files first."""
    root = Path(folder).resolve()
    files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    return sorted(files, key=lambda f: (not f.startswith("report."), f.count("/"), f))


def write_archive(folder: Path, destination: Path) -> Path:
    """A zip of every file :func:`list_downloads` lists (written once, outside ``folder``)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for relative in list_downloads(folder):
            archive.write(Path(folder) / relative, relative)
    partial.replace(destination)  # readers never see a half-written archive
    return destination


def content_type(path: Path) -> str:
    """The MIME type to send ``path`` with."""
    return _CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")


def attachment_name(relative: str) -> str:
    """A flat file name for the browser: 'fgsm/adversarial.nrrd' -> 'fgsm_adversarial.nrrd'."""
    return relative.replace("/", "_")
