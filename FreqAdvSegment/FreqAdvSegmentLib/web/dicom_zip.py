"""A DICOM series uploaded as one zip: checked member by member before anything is unpacked.

A browser cannot upload a folder as one file, so a DICOM series comes as a zip. Before a byte
is written outside the upload itself, in order:

1. it must be a zip (415) of at most ``MAX_MEMBERS`` files (413);
2. no member may be a link or have an absolute or ``..`` name (415): nothing lands outside the
   unpack folder (members are written under our own flat names anyway);
3. the sizes the archive declares must add up to at most ``uncompressed_limit`` and no member
   may expand more than ``MAX_RATIO`` times (413): a few KB must not become gigabytes;
4. while unpacking, bytes are counted again (a member may lie about its size);
5. the first slice's header (read without its pixels) times the number of slices must be at most
   ``max_voxels`` (413), the same limit a NIfTI or NRRD header is held to.

Only then does :func:`FreqAdvSegmentLib.files.images.read_image` read the folder as one series.
"""

from __future__ import annotations

import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from .upload_error import UploadError

MAX_MEMBERS = 4096  # slices; a whole-body thin-slice CT has about 2000
MAX_RATIO = 200  # DICOM compresses about 2-5 times; 200 is a bomb, not a CT
_CHUNK = 1 << 20
_SMALL = 64 << 10  # below this a member's ratio says nothing (a DICOM header alone is a few KiB)


def uncompressed_limit(limits: Any) -> int:
    """Bytes a series may unpack to: 4 bytes per allowed voxel plus 64 KB of header per slice."""
    return 4 * limits.max_voxels + MAX_MEMBERS * 64 * 1024


def unpack_dicom_zip(path: Path, destination: Path, limits: Any) -> tuple[int, int, int]:
    """Check the zip at ``path``, unpack it into ``destination`` (created) and return the grid
    its first slice and slice count declare. Raises UploadError; leaves no folder on failure."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = _checked_members(archive, limits)
            destination.mkdir(parents=True)
            try:
                _extract(archive, members, destination, uncompressed_limit(limits))
                return _series_grid(destination, limits)
            except BaseException:
                shutil.rmtree(destination, ignore_errors=True)
                raise
    except zipfile.BadZipFile:
        raise UploadError("the file is named .zip but is not a zip archive", 415) from None


def _checked_members(archive: zipfile.ZipFile, limits: Any) -> list[zipfile.ZipInfo]:
    members = [m for m in archive.infolist() if not m.is_dir()]
    if not members:
        raise UploadError("the zip holds no files; zip the folder of one DICOM series", 415)
    if len(members) > MAX_MEMBERS:
        raise UploadError(f"the zip holds {len(members)} files; at most {MAX_MEMBERS} slices are accepted", 413)
    total = packed = 0
    for member in members:
        name = PurePosixPath(member.filename.replace("\\", "/"))
        if name.is_absolute() or ".." in name.parts:
            raise UploadError(f"the zip member {member.filename!r} points outside the archive", 415)
        if stat.S_ISLNK(member.external_attr >> 16):
            raise UploadError(f"the zip member {member.filename!r} is a link; zip the files themselves", 415)
        # Every member above 64 KiB (the check once skipped members of exactly 1 MiB: 1,100 of them,
        # 1.2 MB uploaded, wrote 1.15 GB), and the archive as a whole below.
        if member.file_size > MAX_RATIO * max(member.compress_size, 1) and member.file_size > _SMALL:
            raise UploadError(f"the zip member {member.filename!r} expands {member.file_size:,} bytes from "
                              f"{member.compress_size:,}: not a DICOM slice", 413)
        total += member.file_size
        packed += member.compress_size
    if total > _SMALL and total > MAX_RATIO * max(packed, 1):
        raise UploadError(f"the zip expands {total:,} bytes from {packed:,}: not a DICOM series", 413)
    if total > uncompressed_limit(limits):
        raise UploadError(f"the zip unpacks to {total:,} bytes; the limit is {uncompressed_limit(limits):,}", 413)
    return members


def _extract(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], destination: Path, budget: int) -> None:
    """Members under flat names of our own (0000.dcm ...), counting the bytes really written."""
    written = 0
    for index, member in enumerate(members):
        with archive.open(member) as source, (destination / f"{index:05d}.dcm").open("wb") as target:
            while chunk := source.read(_CHUNK):
                written += len(chunk)
                if written > budget:
                    raise UploadError(f"the zip unpacks to more than {budget:,} bytes", 413)
                target.write(chunk)


def _series_grid(folder: Path, limits: Any) -> tuple[int, int, int]:
    """(columns, rows, slices) of the one series in ``folder``, from headers only."""
    import SimpleITK as sitk

    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise UploadError("the zip holds no DICOM series (no file with a DICOM header)", 415)
    if len(series) > 1:
        raise UploadError(f"the zip holds {len(series)} DICOM series; upload one series per zip", 415)
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0])
    reader = sitk.ImageFileReader()
    reader.SetFileName(files[0])
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise UploadError(f"the first DICOM slice cannot be read: {str(err).strip().splitlines()[-1]}", 415) from None
    columns, rows = reader.GetSize()[:2]
    slices = len(files) * (reader.GetSize()[2] if len(reader.GetSize()) > 2 else 1)
    voxels = columns * rows * slices
    if voxels > limits.max_voxels:
        raise UploadError(f"the series declares {columns}x{rows}x{slices} = {voxels:,} voxels; "
                          f"the limit is {limits.max_voxels:,}", 413)
    return columns, rows, slices
