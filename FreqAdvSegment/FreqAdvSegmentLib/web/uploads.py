"""Uploaded volumes: checked for size and type before anything parses them.

A browser sends the raw file (``POST /freqadv/upload?name=ct.nii.gz``, see :mod:`.routes`). In
order, and each before the next costs anything:

1. the name must end in .nii, .nii.gz or .nrrd (415 otherwise);
2. the declared length must be present and within the limit (411 / 413);
3. the body is streamed to disk and cut off at the limit, whatever the header claimed (413);
4. the file's own header must match its name (NIfTI magic, "NRRD000x", gzip) and declare a 3D
   grid of at most ``max_voxels`` voxels and ``max_image_bytes`` bytes once decoded (voxels x
   bytes per voxel; 415 / 413): a few hundred KB of gzip can declare gigabytes, and SimpleITK
   would allocate them all before failing.

Only then does :func:`FreqAdvSegmentLib.files.images.read_image` parse it. A DICOM series comes as one
.zip, checked and unpacked by :mod:`.dicom_zip` instead of step 4. Stored files get random names in
the session's upload folder; the client only ever holds an opaque id, never a path.
"""

from __future__ import annotations

import gzip
import re
import secrets
import shutil
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from .dicom_zip import unpack_dicom_zip
from .upload_error import UploadError  # here too: callers catch uploads.UploadError

SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".zip")  # .zip: one DICOM series
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
DEFAULT_MAX_VOXELS = 512 * 512 * 1024  # a large abdominal CT at full resolution
DEFAULT_MAX_IMAGE_BYTES = DEFAULT_MAX_VOXELS * 2  # that CT as int16, as scanners store it
_NIFTI_HEADER = 348
_NRRD_HEADER_LIMIT = 64 * 1024  # NRRD headers are a few hundred bytes; a huge one is not a volume


@dataclass(frozen=True)
class Limits:
    """What one upload may be: bytes on the wire, voxels once read."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_voxels: int = DEFAULT_MAX_VOXELS
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES


@dataclass(frozen=True)
class StoredUpload:
    """A checked file on disk: where it is, what the user called it, its declared grid."""

    path: Path
    name: str
    size: tuple[int, ...]


def volume_suffix(name: str) -> str:
    """The allowed suffix of ``name`` (case-insensitive); UploadError(415) for any other type."""
    lower = name.lower()
    for suffix in SUFFIXES:  # ".nii.gz" is checked before ".nii"
        if lower.endswith(suffix):
            return suffix
    raise UploadError(f"{name!r} is not a NIfTI (.nii, .nii.gz) or NRRD (.nrrd) volume, nor a .zip of one "
                      "DICOM series", 415)


def check_length(content_length: int | None, limits: Limits) -> None:
    """Refuse a body of unknown or too large size before reading a byte of it."""
    if content_length is None:
        raise UploadError("the upload must declare its size (Content-Length)", 411)
    if content_length <= 0:
        raise UploadError("the uploaded file is empty", 400)
    if content_length > limits.max_bytes:
        raise UploadError(f"the file is {_mb(content_length)}; uploads are limited to {_mb(limits.max_bytes)}", 413)


async def write_limited(chunks: AsyncIterator[bytes], destination: Path, limits: Limits) -> int:
    """Write ``chunks`` to ``destination``, stopping (and deleting it) past ``max_bytes``, so a
    client that sends more than it declared cannot fill the disk. Returns the bytes written."""
    written = 0
    try:
        with destination.open("wb") as out:
            async for chunk in chunks:
                written += len(chunk)
                if written > limits.max_bytes:
                    raise UploadError(f"the upload exceeded the limit of {_mb(limits.max_bytes)}", 413)
                out.write(chunk)
    except BaseException:
        destination.unlink(missing_ok=True)
        raise
    if written == 0:
        destination.unlink(missing_ok=True)
        raise UploadError("the uploaded file is empty", 400)
    return written


def check_header(path: Path, suffix: str, limits: Limits) -> tuple[int, ...]:
    """The grid size the file's header declares, after checking its magic, voxel count and
    decoded size in bytes (voxels x bytes per voxel)."""
    if suffix == ".nrrd":
        size, voxel_bytes = _nrrd_size(path)
    else:
        size, voxel_bytes = _nifti_size(path, compressed=suffix == ".nii.gz")
    voxels = 1
    for n in size:
        voxels *= n
    if voxels > limits.max_voxels:
        raise UploadError(f"the volume declares {'x'.join(map(str, size))} = {voxels:,} voxels; "
                          f"the limit is {limits.max_voxels:,}", 413)
    if voxels * voxel_bytes > limits.max_image_bytes:
        raise UploadError(f"the volume declares {'x'.join(map(str, size))} voxels of {voxel_bytes} bytes = "
                          f"{_mb(voxels * voxel_bytes)} once decoded; the limit is {_mb(limits.max_image_bytes)}", 413)
    return size


class UploadStore:
    """Checked uploads of one session, in one folder, looked up by opaque ids."""

    def __init__(self, folder: Path, limits: Limits | None = None) -> None:
        self.folder = Path(folder)
        self.limits = limits or Limits()
        self._files: dict[str, StoredUpload] = {}

    async def receive(self, name: str, content_length: int | None, chunks: AsyncIterator[bytes]) -> str:
        """Check, store and header-check one upload; returns its id. Raises UploadError."""
        suffix = volume_suffix(name)
        check_length(content_length, self.limits)
        self.folder.mkdir(parents=True, exist_ok=True)
        upload_id = secrets.token_hex(12)
        path = self.folder / f"{upload_id}{suffix}"  # our name, never the client's
        await write_limited(chunks, path, self.limits)
        try:
            if suffix == ".zip":
                folder = self.folder / upload_id
                size = unpack_dicom_zip(path, folder, self.limits)
                path.unlink()
                path = folder  # a DICOM folder, which read_image reads as one series
            else:
                size = check_header(path, suffix, self.limits)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        self.discard_all()  # one input at a time: an older upload is no longer needed
        self._files[upload_id] = StoredUpload(path, _display_name(name), size)
        return upload_id

    def get(self, upload_id: str) -> StoredUpload:
        """The stored upload ``upload_id``; KeyError with a clear message if unknown."""
        if upload_id not in self._files:
            raise KeyError("that upload is not available any more; upload the file again")
        return self._files[upload_id]

    def discard_all(self) -> None:
        """Delete every stored upload."""
        for stored in self._files.values():
            if stored.path.is_dir():
                shutil.rmtree(stored.path, ignore_errors=True)
            else:
                stored.path.unlink(missing_ok=True)
        self._files.clear()


# --- headers -------------------------------------------------------------------------------------


def _nifti_size(path: Path, compressed: bool) -> tuple[tuple[int, ...], int]:
    head = _read_head(path, _NIFTI_HEADER, compressed)
    if len(head) < _NIFTI_HEADER:
        raise UploadError("the file is too short to be a NIfTI volume", 415)
    for endian in ("<", ">"):  # NIfTI-1 may be written in either byte order
        if struct.unpack(f"{endian}i", head[:4])[0] == _NIFTI_HEADER:
            break
    else:
        raise UploadError("the file is not a NIfTI-1 volume (bad header size)", 415)
    if head[344:347] not in (b"n+1", b"ni1"):
        raise UploadError("the file is not a NIfTI-1 volume (bad magic)", 415)
    dims = struct.unpack(f"{endian}8h", head[40:56])
    rank = dims[0]
    if not 3 <= rank <= 7 or any(d > 1 for d in dims[4:rank + 1]):
        raise UploadError(f"expected a 3D volume; the header declares {rank} dimensions {dims[1:rank + 1]}", 415)
    bitpix = struct.unpack(f"{endian}h", head[72:74])[0]
    if bitpix <= 0 or bitpix % 8:
        raise UploadError(f"the NIfTI header declares {bitpix} bits per voxel, which is not a whole number of bytes", 415)
    return _positive(dims[1:4]), bitpix // 8


def _nrrd_size(path: Path) -> tuple[tuple[int, ...], int]:
    fields = _nrrd_fields(_nrrd_header(path))
    if any(key.replace(" ", "") == "datafile" for key in fields):
        raise UploadError("detached NRRD headers (data file: ...) are not accepted; upload a single .nrrd file", 415)
    if fields.get("dimension") not in ("3", "4"):
        raise UploadError(f"expected a 3D volume; the header says dimension: {fields.get('dimension')}", 415)
    try:
        sizes = tuple(int(s) for s in fields["sizes"].split())
    except (KeyError, ValueError):
        raise UploadError("the NRRD header has no valid 'sizes:' line", 415) from None
    if len(sizes) == 4:
        # A 4D header is a 3D volume only with one component (SimpleITK reports vectors otherwise).
        if 1 not in sizes:
            raise UploadError(f"expected a 3D volume; the header declares sizes {sizes}", 415)
        sizes = tuple(s for i, s in enumerate(sizes) if i != sizes.index(1))
    return _positive(sizes), _nrrd_voxel_bytes(fields.get("type", ""))


# NRRD "type:" spellings (the format's table) -> bytes per voxel.
_NRRD_TYPE_BYTES = {
    **dict.fromkeys(("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t"), 1),
    **dict.fromkeys(("short", "short int", "signed short", "signed short int", "int16", "int16_t", "ushort",
                     "unsigned short", "unsigned short int", "uint16", "uint16_t"), 2),
    **dict.fromkeys(("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t",
                     "float"), 4),
    **dict.fromkeys(("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64",
                     "int64_t", "ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t",
                     "double"), 8),
}


def _nrrd_voxel_bytes(type_name: str) -> int:
    size = _NRRD_TYPE_BYTES.get(" ".join(type_name.lower().split()))
    if size is None:
        raise UploadError(f"the NRRD header has no known 'type:' (got {type_name!r})", 415)
    return size


def _nrrd_header(path: Path) -> bytes:
    """The NRRD header's bytes (magic line to the blank line), refused if a reader could split it
    into other lines than this check does.

    ITK's NRRD reader (teem) ends a line at ``\r`` as well as ``\n``: a line such as
    ``# note\rdata file: /etc/passwd`` is a comment here but a ``data file:`` field there, which
    would make the server read any of its files into the volume. So any ``\r`` is refused (teem
    writes ``\n`` only), and any mention of a data file, even inside a comment.
    """
    with path.open("rb") as f:
        head = f.read(_NRRD_HEADER_LIMIT + 2)
    if not re.match(rb"NRRD000\d\n", head):
        raise UploadError("the file is not a NRRD volume (no NRRD000x magic)", 415)
    end = head.find(b"\n\n")
    if end < 0:
        if len(head) > _NRRD_HEADER_LIMIT:
            raise UploadError("the NRRD header is implausibly long", 415)
        raise UploadError("the NRRD header does not end (no blank line): the file is truncated", 415)
    header = head[:end + 1]
    if b"\r" in header:
        raise UploadError("the NRRD header holds a carriage return (\\r); re-save the volume as a plain .nrrd", 415)
    if b"datafile" in re.sub(rb"\s+", b"", header.lower()):
        raise UploadError("detached NRRD headers (data file: ...) are not accepted; upload a single .nrrd file", 415)
    return header


def _nrrd_fields(header: bytes) -> dict[str, str]:
    """``field: value`` lines of a header from :func:`_nrrd_header` (magic line dropped)."""
    fields: dict[str, str] = {}
    for line in header.decode("latin-1").split("\n")[1:]:
        if not line or line.startswith("#") or ":=" in line:
            continue  # comments and key/value pairs carry no geometry
        key, _, value = line.partition(":")
        fields[key.strip().lower()] = value.strip()
    return fields


def _read_head(path: Path, count: int, compressed: bool) -> bytes:
    """The first ``count`` bytes, decompressed if needed (only that much is decompressed)."""
    with path.open("rb") as f:
        if not compressed:
            return f.read(count)
        if f.read(2) != b"\x1f\x8b":
            raise UploadError("the file is named .gz but is not gzip-compressed", 415)
    try:
        with gzip.open(path, "rb") as g:
            return g.read(count)
    except (OSError, EOFError) as err:
        raise UploadError(f"the gzip stream is damaged: {err}", 415) from None


def _positive(sizes: tuple[int, ...]) -> tuple[int, ...]:
    if len(sizes) != 3 or min(sizes) < 1:
        raise UploadError(f"the header declares an invalid grid size {sizes}", 415)
    return tuple(int(s) for s in sizes)


def _display_name(name: str) -> str:
    """The file's base name, for display only (never used as a path)."""
    return re.split(r"[\\/]", name)[-1][:120] or "upload"


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"
