"""Strict NIfTI reading: the checks ITK skips, done on the file's raw bytes before ITK reads it.

ITK's NIfTI reader zero-fills a file whose data is shorter than its header says (cut mid-data or
at the tail), reads a ``.nii.gz`` truncated mid-stream as if it were whole, and turns NaN/Inf
voxels into 0, so a damaged or poisoned volume would be segmented and attacked without a word.
:func:`check_nifti_data` streams the data once (decompressing ``.nii.gz`` to its end, so Python's
gzip checks the CRC-32 and the stored length) and refuses any of these with one clear line.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_CHUNK_VOXELS = 1 << 20  # voxels per read: bounded memory whatever the volume's size
# NIfTI datatype code -> numpy dtype code for the types whose voxels can be NaN/Inf.
_FLOAT_TYPES = {16: "f4", 64: "f8", 32: "c8", 1792: "c16"}


@dataclass(frozen=True)
class NiftiHeader:
    """What the header says about the data block (NIfTI-1 or NIfTI-2)."""

    dims: tuple[int, ...]  # dim[1..dim[0]]
    datatype: int
    bitpix: int
    vox_offset: int
    endian: str  # "<" or ">"
    header_size: int = 348
    pixdim: tuple[float, ...] = (1.0, 1.0, 1.0)  # pixdim[1..3]: voxel size along i, j, k
    sform_code: int = 0
    srow: tuple[tuple[float, ...], ...] = ()  # the sform's three rows (4 numbers each)

    @property
    def voxels(self) -> int:
        n = 1
        for d in self.dims:
            n *= max(d, 1)
        return n

    @property
    def data_bytes(self) -> int:
        return self.voxels * self.bitpix // 8


def parse_header(head: bytes, source: str) -> NiftiHeader:
    """Parse the first 540 (or 348) bytes of a NIfTI file; ValueError if it is not one."""
    for endian in ("<", ">"):
        if len(head) >= 4:
            size = struct.unpack(f"{endian}i", head[:4])[0]
            if size == 348 and len(head) >= 348:
                return _nifti1(head, endian)
            if size == 540 and len(head) >= 540:
                return _nifti2(head, endian)
    raise ValueError(f"'{source}' is not a NIfTI file (bad or short header); re-export the volume")


def _nifti1(head: bytes, e: str) -> NiftiHeader:
    dim = struct.unpack(f"{e}8h", head[40:56])
    datatype, bitpix = struct.unpack(f"{e}2h", head[70:74])
    pixdim = struct.unpack(f"{e}8f", head[76:108])
    vox_offset = struct.unpack(f"{e}f", head[108:112])[0]
    sform_code = struct.unpack(f"{e}h", head[254:256])[0]
    srow = tuple(struct.unpack(f"{e}4f", head[at:at + 16]) for at in (280, 296, 312))
    offset = int(vox_offset) if math.isfinite(vox_offset) else -1
    return NiftiHeader(tuple(dim[1 : max(min(dim[0], 7), 0) + 1]), datatype, bitpix, offset, e, 348,
                       pixdim[1:4], sform_code, srow)


def _nifti2(head: bytes, e: str) -> NiftiHeader:
    datatype, bitpix = struct.unpack(f"{e}2h", head[12:16])
    dim = struct.unpack(f"{e}8q", head[16:80])
    pixdim = struct.unpack(f"{e}8d", head[104:168])
    vox_offset = struct.unpack(f"{e}q", head[168:176])[0]
    sform_code = struct.unpack(f"{e}i", head[348:352])[0]
    srow = tuple(struct.unpack(f"{e}4d", head[at:at + 32]) for at in (400, 432, 464))
    return NiftiHeader(tuple(dim[1 : max(min(dim[0], 7), 0) + 1]), datatype, bitpix, int(vox_offset), e, 540,
                       pixdim[1:4], sform_code, srow)


# NIfTI datatype code -> the bits per voxel it implies (the format's table).
_DATATYPE_BITS = {1: 1, 2: 8, 4: 16, 8: 32, 16: 32, 32: 64, 64: 64, 128: 24, 256: 8, 512: 16, 768: 32,
                  1024: 64, 1280: 64, 1536: 128, 1792: 128, 2048: 256, 2304: 32}


def check_header_fields(header: NiftiHeader, source: str) -> None:
    """Refuse a header whose fields contradict each other or place data or voxels impossibly.

    ``bitpix`` 8 with ``datatype`` int16 made the length check expect half the data (ITK reads by
    datatype and zero-filled the rest); a ``vox_offset`` inside the header read shifted data; a
    voxel size of 0 or NaN became 1 mm; a sheared sform was dropped for the qform, moving voxels.
    """
    expected = _DATATYPE_BITS.get(header.datatype)
    if expected is not None and header.bitpix != expected:
        raise ValueError(f"'{source}' has a contradictory NIfTI header: datatype {header.datatype} has "
                         f"{expected} bits per voxel but bitpix says {header.bitpix}; re-export the volume")
    if header.vox_offset < header.header_size:
        raise ValueError(f"'{source}' has a NIfTI vox_offset of {header.vox_offset}, inside the "
                         f"{header.header_size}-byte header; the file is damaged, re-export it")
    sizes = header.pixdim[: min(len(header.dims), 3)]
    if not all(math.isfinite(v) and v != 0 for v in sizes):
        raise ValueError(f"'{source}' declares voxel sizes {tuple(sizes)} mm; each must be a finite number "
                         f"above 0, so the volume's geometry is unknown: fix the header (pixdim)")
    if header.sform_code > 0:
        _check_sform(header.srow, source)


def _check_sform(srow: tuple[tuple[float, ...], ...], source: str) -> None:
    matrix = np.array([row[:3] for row in srow], dtype=float)
    if not np.all(np.isfinite(np.array(srow, dtype=float))):
        raise ValueError(f"'{source}' has a NIfTI sform with non-finite numbers; fix or remove it (sform_code 0)")
    lengths = np.linalg.norm(matrix, axis=0)
    if np.any(lengths == 0):
        raise ValueError(f"'{source}' has a NIfTI sform with a zero voxel size; fix or remove it (sform_code 0)")
    cosines = (matrix.T @ matrix) / np.outer(lengths, lengths)
    if np.max(np.abs(cosines - np.eye(3))) > 1e-4:
        raise ValueError(f"'{source}' has a sheared NIfTI sform (its axes are not perpendicular); readers "
                         f"disagree on where such voxels are, so resample it to a plain grid first")


def check_nifti_header(path: Path, compressed: bool) -> None:
    """:func:`check_header_fields` on the file's header alone, before ITK reads (and warns about)
    it. A file that is not NIfTI at all is left to the reader, whose error says so."""
    try:
        with (gzip.open(path, "rb") if compressed else path.open("rb")) as f:
            header = parse_header(f.read(540), str(path))
    except (OSError, EOFError, zlib.error, ValueError):
        return
    check_header_fields(header, str(path))


def check_nifti_data(path: Path, compressed: bool) -> None:
    """Refuse a NIfTI file whose data block is short, whose gzip stream is damaged, or whose
    float voxels hold NaN/Inf. Reads the file once, in bounded chunks (~8 MB)."""
    try:
        with (gzip.open(path, "rb") if compressed else path.open("rb")) as f:
            header = parse_header(f.read(540), str(path))
            check_header_fields(header, str(path))
            f.seek(max(header.vox_offset, 348))  # a gzip file seeks forward by decompressing
            bad, got = _scan(f, header)
            if compressed:
                f.read()  # to the end: gzip verifies CRC-32 and length only at EOF
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise ValueError(
            f"'{path}' is a damaged or truncated gzip file ({err}); re-export or re-download it"
        ) from None
    if got < header.data_bytes:
        raise ValueError(
            f"'{path}' is truncated: its header declares {header.data_bytes:,} bytes of voxel data "
            f"but the file holds {max(got, 0):,}; re-export or re-download it"
        )
    if bad:
        raise ValueError(
            f"'{path}' has {bad} NaN or infinite voxels out of {header.voxels}; replace them (e.g. "
            f"with the background value) before running"
        )


def _scan(f, header: NiftiHeader) -> tuple[int, int]:
    """(non-finite voxel count, data bytes present) reading from vox_offset to the data's end."""
    dtype = _FLOAT_TYPES.get(header.datatype)
    item = max(header.bitpix // 8, 1)
    remaining, got, bad = header.data_bytes, 0, 0
    while remaining > 0:
        chunk = f.read(min(remaining, _CHUNK_VOXELS * item))
        if not chunk:
            break
        got += len(chunk)
        remaining -= len(chunk)
        if dtype is not None:
            usable = len(chunk) - len(chunk) % np.dtype(dtype).itemsize
            values = np.frombuffer(chunk[:usable], dtype=header.endian + dtype)
            bad += int(values.size - np.count_nonzero(np.isfinite(values)))
    return bad, got
