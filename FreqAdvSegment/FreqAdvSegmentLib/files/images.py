"""Reading and writing volumes safely: one 3D scalar image in, atomic files and folders out.

Supported inputs: NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd) and a folder
holding one DICOM series. Everything is returned as a ``SimpleITK.Image`` with ITK's geometry
(LPS physical space, direction cosines as columns, spacing and size in (x, y, z) = (i, j, k)
order). Conversion to the engine's tensors is :mod:`FreqAdvSegmentLib.job.preprocess`'s job.

Outputs are written atomically (temporary sibling, then ``os.replace``) so that a crash, a full
disk or a Ctrl-C never leaves a half-written file or results folder that looks complete.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .nifti_check import check_nifti_data, check_nifti_header
from .output_dir import atomic_output_dir, check_output_target  # noqa: F401 (public here too)

# Caps on what one volume may be, checked from its header before ITK allocates anything: a
# 71-byte header can declare 16 GB. 2^30 voxels is a 1024^3 grid, 8x a large abdominal CT.
MAX_VOXELS = 1 << 30
MAX_BYTES = 4 << 30
_PIXEL_BYTES = {
    sitk.sitkUInt8: 1, sitk.sitkInt8: 1, sitk.sitkUInt16: 2, sitk.sitkInt16: 2, sitk.sitkUInt32: 4,
    sitk.sitkInt32: 4, sitk.sitkUInt64: 8, sitk.sitkInt64: 8, sitk.sitkFloat32: 4, sitk.sitkFloat64: 8,
}

# Suffix -> format name, longest suffixes first so ".nii.gz" wins over ".gz".
READ_FORMATS: dict[str, str] = {
    ".nii.gz": "NIfTI",
    ".nii": "NIfTI",
    ".nrrd": "NRRD",
    ".nhdr": "NRRD (detached header)",
    ".mha": "MetaImage",
    ".mhd": "MetaImage (detached header)",
}
# Only single-file formats: a detached header (.nhdr, .mhd) names its data file, so renaming a
# temporary header into place would leave it pointing at a temporary data file.
WRITE_FORMATS: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".mha")


def _suffix(path: Path, known: tuple[str, ...]) -> str | None:
    """The known (possibly double, e.g. '.nii.gz') suffix of ``path``, case-insensitive."""
    name = path.name.lower()
    for suffix in sorted(known, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    return None


def read_image(
    path: str | os.PathLike,
    series_id: str | None = None,
    max_voxels: int = MAX_VOXELS,
    max_bytes: int = MAX_BYTES,
) -> sitk.Image:
    """Read one 3D scalar volume from a file or a DICOM folder.

    Args:
        path: a .nii/.nii.gz/.nrrd/.nhdr/.mha/.mhd file, or a folder holding one DICOM series.
        series_id: for a folder with several DICOM series, the SeriesInstanceUID to read.
        max_voxels, max_bytes: refuse (from the header, before reading) a larger volume.

    Returns:
        A 3D ``SimpleITK.Image`` with one component per voxel and finite values; size, spacing,
        origin and direction are in ITK's (x, y, z) order and LPS physical space.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: unsupported or unreadable format, no or several DICOM series, an image that is
            not 3D, has several components per voxel, holds NaN/Inf voxels, is larger than the
            caps, or (NIfTI) whose data is shorter than its header says or whose gzip is damaged.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input volume not found: '{path}' does not exist; check the path")
    caps = (max_voxels, max_bytes)
    if path.is_dir():
        image = _read_dicom_folder(path, series_id, caps)
    else:
        image = _read_file(path, caps)
    check_scalar_3d(image, f"'{path}'", min_size=2)  # DICOM has no header pre-check; a 1-slice file is 2D
    check_geometry(image, path)
    _check_finite(image, path)
    return image


def check_geometry(image: sitk.Image, source: str | os.PathLike) -> None:
    """Spacing finite and above 0, origin finite, direction a rotation (orthonormal): otherwise
    resampling and writing back would move voxels (a sheared NRRD came back with a rotated
    direction, a voxel 55 mm from where it was). ValueError naming what is wrong."""
    spacing = np.array(image.GetSpacing(), dtype=float)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ValueError(f"'{source}' has voxel spacing {tuple(spacing)} mm; each must be a finite number above 0: fix the header")
    if not np.all(np.isfinite(image.GetOrigin())):
        raise ValueError(f"'{source}' has a non-finite origin {image.GetOrigin()}; fix the header")
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    if not np.all(np.isfinite(direction)) or np.max(np.abs(direction.T @ direction - np.eye(3))) > 1e-3:
        raise ValueError(f"'{source}' has a sheared or non-orthonormal direction (its axes are not perpendicular "
                         f"unit vectors); resample it to a plain grid first")


def _read_file(path: Path, caps: tuple[int, int]) -> sitk.Image:
    """Read a single-volume file after checking its header, so a 4D, vector or huge file fails
    fast, and (NIfTI) its raw data, which ITK would zero-fill if short and read NaN as 0."""
    suffix = _suffix(path, tuple(READ_FORMATS))
    if suffix is None:
        raise ValueError(
            f"cannot read '{path}': unsupported file type; use NIfTI (.nii, .nii.gz), NRRD "
            f"(.nrrd, .nhdr), MetaImage (.mha, .mhd) or a folder holding one DICOM series"
        )
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    if path.stat().st_size == 0:
        raise ValueError(f"'{path}' is an empty file (0 bytes); re-export or re-download it")
    if READ_FORMATS[suffix] == "NIfTI":  # contradictory fields, before ITK reads (and warns about) them
        check_nifti_header(path, compressed=suffix == ".nii.gz")
    try:
        reader.ReadImageInformation()
        _check_header(reader, path)
        _check_caps(reader.GetSize(), _PIXEL_BYTES.get(reader.GetPixelID(), 8), path, caps)
        if READ_FORMATS[suffix] == "NIfTI":
            check_nifti_data(path, compressed=suffix == ".nii.gz")
        return reader.Execute()
    except RuntimeError as err:  # ITK reports every I/O failure as RuntimeError
        raise ValueError(
            f"cannot read '{path}' as {READ_FORMATS[suffix]}: the file is damaged or not in that "
            f"format (ITK said: {_first_line(err)})"
        ) from err


def _check_header(reader: sitk.ImageFileReader, path: Path) -> None:
    """Reject non-3D and multi-component images from the header alone (no voxel data read)."""
    dim = reader.GetDimension()
    if dim != 3:
        raise ValueError(
            f"'{path}' is a {dim}D image of size {reader.GetSize()}; this tool needs a 3D volume "
            f"(one scalar value per voxel). Extract a single 3D volume first"
        )
    ncomp = reader.GetNumberOfComponents()
    if ncomp != 1:
        raise ValueError(
            f"'{path}' has {ncomp} components per voxel (a vector or colour image); this tool "
            f"needs a scalar 3D volume. Extract one component first"
        )


def _check_caps(size: tuple[int, ...], pixel_bytes: int, path: Path, caps: tuple[int, int]) -> None:
    """Voxels and bytes (voxels x bytes per voxel) within the caps, from the header alone."""
    max_voxels, max_bytes = caps
    voxels = 1
    for n in size:
        voxels *= int(n)
    grid = "x".join(str(int(n)) for n in size)
    if voxels > max_voxels or voxels * pixel_bytes > max_bytes:
        raise ValueError(
            f"'{path}' declares a {grid} grid = {voxels:,} voxels of {pixel_bytes} byte(s) "
            f"({voxels * pixel_bytes / 2**30:.1f} GiB); the limit is {max_voxels:,} voxels and "
            f"{max_bytes / 2**30:.0f} GiB: crop or downsample the volume first"
        )


@contextlib.contextmanager
def _itk_warnings_off() -> Iterator[None]:
    """ITK prints warnings (e.g. "No Series were found") straight to the C stderr; the error this
    module raises says it better, in one line."""
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def _read_dicom_folder(folder: Path, series_id: str | None, caps: tuple[int, int]) -> sitk.Image:
    """Read the one DICOM series in ``folder`` (or ``series_id`` of several) as a 3D volume."""
    with _itk_warnings_off():
        return _read_dicom_series(folder, series_id, caps)


def _read_dicom_series(folder: Path, series_id: str | None, caps: tuple[int, int]) -> sitk.Image:
    ids = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or ())
    if not ids:
        raise ValueError(
            f"no DICOM series found in folder '{folder}'; pass a folder holding the DICOM files "
            f"of one series, or a NIfTI/NRRD/MetaImage file"
        )
    chosen = _choose_series(folder, ids, series_id)
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), chosen)
    _check_dicom_caps(files, folder, caps)
    check_dicom_slices(files, folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        return reader.Execute()
    except RuntimeError as err:
        raise ValueError(
            f"cannot read DICOM series {chosen} in '{folder}' ({len(files)} files): "
            f"{_first_line(err)}"
        ) from err


def _check_dicom_caps(files: tuple[str, ...], folder: Path, caps: tuple[int, int]) -> None:
    """Size of the series from its first slice's header times the number of slices."""
    first = sitk.ImageFileReader()
    first.SetFileName(files[0])
    try:
        first.ReadImageInformation()
    except RuntimeError as err:
        raise ValueError(f"cannot read DICOM file '{files[0]}': {_first_line(err)}") from err
    width, height = first.GetSize()[:2]
    _check_caps((width, height, len(files)), _PIXEL_BYTES.get(first.GetPixelID(), 8), folder, caps)


def check_dicom_slices(files: Sequence[str], folder: Path, tolerance_mm: float = 0.05) -> None:
    """Refuse a series the reader would stack wrongly, naming the slices: two slices at one
    position, gaps that are not all equal (ITK only warns and stores one uniform spacing, putting
    slices up to the gap off), or slices not stacked along the normal of their plane (gantry tilt,
    which ITK reads as an unsheared box of the wrong extent).

    Args:
        files: the series' files in the reader's order (GDCM sorts them along the normal).
        folder: for the message.
        tolerance_mm: allowed deviation of a gap from the others, and of a slice from the stack line.
    """
    if len(files) < 2:
        return
    positions, normal = _slice_positions(files)
    if positions is None:
        return  # no ImagePositionPatient / ImageOrientationPatient: nothing to check against
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    along, positions = along[order], positions[order]
    names = [Path(files[i]).name for i in order]
    gaps = np.diff(along)
    for k, gap in enumerate(gaps):
        if gap < tolerance_mm:
            raise ValueError(f"DICOM series in '{folder}' has two slices at one position ({names[k]} and "
                             f"{names[k + 1]}, {along[k]:.2f} mm); remove the duplicate")
    typical = float(np.median(gaps))
    uneven = [k for k, gap in enumerate(gaps) if abs(gap - typical) > max(tolerance_mm, 0.01 * typical)]
    if uneven:
        k = uneven[0]
        raise ValueError(f"DICOM series in '{folder}' has uneven slice spacing: {gaps[k]:.2f} mm between "
                         f"{names[k]} and {names[k + 1]} where the others are {typical:.2f} mm (a missing slice?); "
                         f"a volume needs one spacing, so resample or complete the series first")
    drift = positions - positions[0] - np.outer(along - along[0], normal)
    sideways = np.linalg.norm(drift, axis=1)
    if sideways.max() > max(tolerance_mm, 1e-3 * (along[-1] - along[0])):
        k = int(np.argmax(sideways))
        raise ValueError(f"DICOM series in '{folder}' is tilted: slice {names[k]} lies {sideways[k]:.2f} mm off "
                         f"the line through the first slice along its normal (gantry tilt); resample it first")


def _slice_positions(files: Sequence[str]) -> tuple[np.ndarray | None, np.ndarray]:
    """(ImagePositionPatient of each file [N, 3], the plane's normal) or (None, ...) if a tag is missing."""
    positions = []
    normal = np.zeros(3)
    reader = sitk.ImageFileReader()
    for k, name in enumerate(files):
        reader.SetFileName(str(name))
        try:
            reader.ReadImageInformation()
            position = [float(v) for v in reader.GetMetaData("0020|0032").split("\\")]
            if k == 0:
                cosines = [float(v) for v in reader.GetMetaData("0020|0037").split("\\")]
                normal = np.cross(cosines[:3], cosines[3:6])
        except (RuntimeError, ValueError):
            return None, normal
        if len(position) != 3 or not np.all(np.isfinite(position)):
            return None, normal
        positions.append(position)
    length = np.linalg.norm(normal)
    if not np.isfinite(length) or length < 1e-6:
        return None, normal
    return np.array(positions, dtype=float), normal / length


def _choose_series(folder: Path, ids: list[str], series_id: str | None) -> str:
    """Pick the series to read; several series without a choice is an error listing them."""
    if series_id is not None:
        if series_id not in ids:
            raise ValueError(
                f"DICOM series '{series_id}' is not in '{folder}'; it holds: {', '.join(ids)}"
            )
        return series_id
    if len(ids) > 1:
        listing = "; ".join(
            f"{sid} ({len(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid))} files)"
            for sid in ids
        )
        raise ValueError(
            f"folder '{folder}' holds {len(ids)} DICOM series: {listing}. Put one series per "
            f"folder, or pass series_id= one of these"
        )
    return ids[0]


def check_scalar_3d(image: sitk.Image, what: str, min_size: int = 1) -> None:
    """The one check that an image is a volume this tool can use (reading, preprocessing and the
    Slicer bridge all call it): TypeError unless a SimpleITK image; ValueError naming ``what``
    unless it is 3D with one value per voxel and at least ``min_size`` voxels along every axis."""
    if not isinstance(image, sitk.Image):
        raise TypeError(f"{what} must be a SimpleITK.Image, got {type(image).__name__}")
    if image.GetDimension() != 3:
        raise ValueError(
            f"{what} is a {image.GetDimension()}D image of size {image.GetSize()}; this tool "
            f"needs a 3D volume (a 3D scalar image, one value per voxel)"
        )
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(
            f"{what} has {image.GetNumberOfComponentsPerPixel()} components per voxel; this "
            f"tool needs a 3D scalar volume (one value per voxel): extract one component first"
        )
    if min(image.GetSize()) < min_size:
        raise ValueError(
            f"{what} has size {image.GetSize()}: a single slice, not a 3D volume; a 3D "
            f"segmentation model needs at least {min_size} voxels along every axis"
        )


def _check_finite(image: sitk.Image, source: Path) -> None:
    """NaN/Inf would silently poison windowing, resampling and gradients downstream."""
    view = sitk.GetArrayViewFromImage(image)
    if not np.issubdtype(view.dtype, np.floating):
        return  # integer voxels are always finite
    bad = int(view.size - np.count_nonzero(np.isfinite(view)))
    if bad:
        raise ValueError(
            f"'{source}' has {bad} NaN or infinite voxels out of {view.size}; replace them (e.g. "
            f"with the background value) before running"
        )


def _first_line(err: Exception) -> str:
    """ITK messages are long multi-line dumps; the useful part is the last non-empty line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def write_image(image: sitk.Image, path: str | os.PathLike) -> None:
    """Write ``image`` to ``path`` atomically, with compression.

    The volume is written to a hidden temporary file in the same folder (same file system, so
    ``os.replace`` is atomic) and renamed over ``path`` only when complete; on any failure the
    temporary file is removed and an existing ``path`` is left untouched.

    Args:
        image: any ``SimpleITK.Image``.
        path: destination ending in .nii.gz, .nii, .nrrd or .mha (single-file formats).

    Raises:
        TypeError: ``image`` is not a ``SimpleITK.Image``.
        ValueError: unsupported extension.
        FileNotFoundError: the destination folder does not exist.
    """
    if not isinstance(image, sitk.Image):
        raise TypeError(f"write_image needs a SimpleITK.Image, got {type(image).__name__}")
    path = Path(path)
    suffix = _suffix(path, WRITE_FORMATS)
    if suffix is None:
        raise ValueError(
            f"cannot write '{path}': use one of {', '.join(WRITE_FORMATS)} (single-file formats "
            f"that can be written atomically)"
        )
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write '{path}': folder '{path.parent}' does not exist")
    # The temporary name keeps the real suffix because ITK picks the writer from the extension.
    tmp = path.with_name(f".{path.name[: -len(suffix)]}.tmp-{secrets.token_hex(6)}{suffix}")
    try:
        with _c_stderr_captured() as said:
            if suffix == ".nii.gz":
                _write_nifti_gz(image, tmp, path.name)
            else:
                sitk.WriteImage(image, str(tmp), useCompression=True)
        _check_written(tmp, suffix, path, said)
        os.replace(tmp, path)
    except RuntimeError as err:  # ITK's way of saying the write failed (full disk, I/O error)
        tmp.unlink(missing_ok=True)
        raise OSError(
            errno.EIO, f"could not write '{path.name}' ({_first_line(err)}); check the free disk space"
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# gzip level of .nii.gz outputs: chosen for speed. A 66 Mvox float32 perturbation takes ITK's own
# gzip 85 s and ISA-L at level 2 8 s (2-core CPU under load), in a file twice as large (74 MB,
# against 38 MB); the stdlib fallback at level 1 takes 38 s. The decompressed bytes are ITK's own.
_GZIP_LEVEL_ISAL = 2
_GZIP_LEVEL_ZLIB = 1
_GZIP_CHUNK = 1 << 24


def _write_nifti_gz(image: sitk.Image, path: Path, name: str) -> None:
    """``image`` as a gzipped NIfTI at ``path``: ITK writes the plain .nii (header and data exactly as
    it would inside its own .nii.gz), then a fast gzip compresses it; the plain file is removed.
    ``name`` is the final file's name, for the error a full disk gives."""
    raw = path.with_name(path.name[: -len(".gz")])  # hidden temporary .nii beside it
    try:
        sitk.WriteImage(image, str(raw), useCompression=False)
        opener, level = _gzip_opener()
        try:
            with open(raw, "rb") as src, opener(path, "wb", compresslevel=level) as dst:
                while chunk := src.read(_GZIP_CHUNK):
                    dst.write(chunk)
        except OSError as err:
            reason = os.strerror(err.errno) if err.errno else str(err)
            raise OSError(err.errno, f"could not write '{name}' ({reason}); check the free disk space") from None
    finally:
        raw.unlink(missing_ok=True)


def _gzip_opener():
    """(open function, level): ISA-L's igzip when installed (several times faster), else gzip."""
    try:
        from isal import igzip

        return igzip.open, _GZIP_LEVEL_ISAL
    except ImportError:
        import gzip

        return gzip.open, _GZIP_LEVEL_ZLIB


def _check_written(tmp: Path, suffix: str, path: Path, said: list[str]) -> None:
    """ITK's NIfTI writer reports a short write (full disk) only on the C stderr, and returns as
    if it had succeeded: read the file back and refuse it if it is not whole."""
    if suffix not in (".nii", ".nii.gz"):
        return
    try:
        check_nifti_data(tmp, compressed=suffix == ".nii.gz")
    except ValueError:
        reason = said[-1] if said else "the file came out short"
        raise OSError(
            errno.ENOSPC if "wrote only" in reason else errno.EIO,
            f"could not write '{path.name}' completely ({reason}); check the free disk space",
        ) from None


@contextlib.contextmanager
def _c_stderr_captured() -> Iterator[list[str]]:
    """Collect what C code (ITK, niftilib) prints on file descriptor 2 while the block runs, so it
    can go into one error line instead of onto the user's terminal."""
    said: list[str] = []
    try:
        sink = tempfile.TemporaryFile()
    except OSError:  # no room even for that: let C write where it will
        yield said
        return
    with sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", errors="replace")
            said.extend(line.strip() for line in text.splitlines() if line.strip())
