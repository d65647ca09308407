"""Reading and writing volumes safely: one 3D scalar image in, atomic files and folders out.

Supported inputs: NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd) and a folder
holding one DICOM series. Everything is returned as a ``SimpleITK.Image`` with ITK's geometry
(LPS physical space, direction cosines as columns, spacing and size in (x, y, z) = (i, j, k)
order). Conversion to the engine's tensors is :mod:`FreqAdvSegmentLib.preprocess`'s job.

Outputs are written atomically (temporary sibling, then ``os.replace``) so that a crash, a full
disk or a Ctrl-C never leaves a half-written file or results folder that looks complete.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import SimpleITK as sitk

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


def read_image(path: str | os.PathLike, series_id: str | None = None) -> sitk.Image:
    """Read one 3D scalar volume from a file or a DICOM folder.

    Args:
        path: a .nii/.nii.gz/.nrrd/.nhdr/.mha/.mhd file, or a folder holding one DICOM series.
        series_id: for a folder with several DICOM series, the SeriesInstanceUID to read.

    Returns:
        A 3D ``SimpleITK.Image`` with one component per voxel and finite values; size, spacing,
        origin and direction are in ITK's (x, y, z) order and LPS physical space.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: unsupported or unreadable format, no or several DICOM series, an image that is
            not 3D, has several components per voxel, or holds NaN/Inf voxels.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input volume not found: '{path}' does not exist; check the path")
    if path.is_dir():
        image = _read_dicom_folder(path, series_id)
    else:
        image = _read_file(path)
    _check_scalar_3d(image, path)
    _check_finite(image, path)
    return image


def _read_file(path: Path) -> sitk.Image:
    """Read a single-volume file after checking its header, so a 4D or vector file fails fast."""
    suffix = _suffix(path, tuple(READ_FORMATS))
    if suffix is None:
        raise ValueError(
            f"cannot read '{path}': unsupported file type; use NIfTI (.nii, .nii.gz), NRRD "
            f"(.nrrd, .nhdr), MetaImage (.mha, .mhd) or a folder holding one DICOM series"
        )
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        _check_header(reader, path)
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


def _read_dicom_folder(folder: Path, series_id: str | None) -> sitk.Image:
    """Read the one DICOM series in ``folder`` (or ``series_id`` of several) as a 3D volume."""
    ids = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or ())
    if not ids:
        raise ValueError(
            f"no DICOM series found in folder '{folder}'; pass a folder holding the DICOM files "
            f"of one series, or a NIfTI/NRRD/MetaImage file"
        )
    chosen = _choose_series(folder, ids, series_id)
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), chosen)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        return reader.Execute()
    except RuntimeError as err:
        raise ValueError(
            f"cannot read DICOM series {chosen} in '{folder}' ({len(files)} files): "
            f"{_first_line(err)}"
        ) from err


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


def _check_scalar_3d(image: sitk.Image, source: Path) -> None:
    """Final check on the image itself (DICOM has no header pre-check; a 1-slice file is 2D)."""
    if image.GetDimension() != 3:
        raise ValueError(
            f"'{source}' gave a {image.GetDimension()}D image of size {image.GetSize()}; this tool "
            f"needs a 3D volume"
        )
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(
            f"'{source}' has {image.GetNumberOfComponentsPerPixel()} components per voxel; this "
            f"tool needs a scalar 3D volume"
        )
    if min(image.GetSize()) < 2:
        raise ValueError(
            f"'{source}' has size {image.GetSize()}: a single slice, not a 3D volume; a 3D "
            f"segmentation model needs at least 2 voxels along every axis"
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
        sitk.WriteImage(image, str(tmp), useCompression=True)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_output_dir(final_dir: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder that becomes ``final_dir`` only if the block succeeds.

    Usage::

        with atomic_output_dir("results/case01") as out:
            write_image(seg, out / "seg.nii.gz")

    Args:
        final_dir: the results folder to create. Missing parent folders are created.
        overwrite: if ``final_dir`` exists and is not empty, replace it (only after success).

    Yields:
        Path of the temporary folder to write into.

    Raises:
        FileExistsError: ``final_dir`` is a file, or a non-empty folder and ``overwrite`` is False.
    """
    final = Path(final_dir)
    _check_output_target(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{secrets.token_hex(6)}")
    tmp.mkdir()  # plain mkdir honours the umask, unlike tempfile.mkdtemp's 0700
    try:
        yield tmp
        _commit_dir(tmp, final, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_output_target(final: Path, overwrite: bool) -> None:
    """Refuse before any work is done rather than after an hour of attacking."""
    if final.exists() and not final.is_dir():
        raise FileExistsError(f"output path '{final}' is a file; choose a folder path")
    if final.is_dir() and any(final.iterdir()) and not overwrite:
        raise FileExistsError(
            f"output folder '{final}' already exists and is not empty; choose another folder or "
            f"pass overwrite=True to replace it"
        )


def _commit_dir(tmp: Path, final: Path, overwrite: bool) -> None:
    """Move ``tmp`` to ``final``; an old ``final`` is set aside first and deleted only after."""
    _check_output_target(final, overwrite)  # again: something may have appeared meanwhile
    old = None
    if final.is_dir():
        old = final.with_name(f".{final.name}.old-{secrets.token_hex(6)}")
        os.replace(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        if old is not None:
            os.replace(old, final)  # put the previous results back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
