"""Strict NIfTI reading: the checks ITK skips, done on the file's raw bytes before ITK reads it.

ITK's NIfTI reader zero-fills a file whose data is shorter than its header says (cut mid-data or
at the tail), reads a ``.nii.gz`` truncated mid-stream as if it were whole, and turns NaN/Inf
voxels into 0, so a damaged or poisoned volume would be segmented and attacked without a word.
:func:`check_nifti_data` streams the data once (decompressing ``.nii.gz`` to its end, so Python's
gzip checks the CRC-32 and the stored length) and refuses any of these with one clear line.
"""

from __future__ import annotations

import gzip
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
    vox_offset = struct.unpack(f"{e}f", head[108:112])[0]
    return NiftiHeader(tuple(dim[1 : max(min(dim[0], 7), 0) + 1]), datatype, bitpix, int(vox_offset), e)


def _nifti2(head: bytes, e: str) -> NiftiHeader:
    datatype, bitpix = struct.unpack(f"{e}2h", head[12:16])
    dim = struct.unpack(f"{e}8q", head[16:80])
    vox_offset = struct.unpack(f"{e}q", head[168:176])[0]
    return NiftiHeader(tuple(dim[1 : max(min(dim[0], 7), 0) + 1]), datatype, bitpix, int(vox_offset), e)


def check_nifti_data(path: Path, compressed: bool) -> None:
    """Refuse a NIfTI file whose data block is short, whose gzip stream is damaged, or whose
    float voxels hold NaN/Inf. Reads the file once, in bounded chunks (~8 MB)."""
    try:
        with (gzip.open(path, "rb") if compressed else path.open("rb")) as f:
            header = parse_header(f.read(540), str(path))
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
