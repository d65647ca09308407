#!/usr/bin/env python
"""Prepare the project's real CT volumes from the TotalSegmentator 2.4.0 source archive.

The archive (Apache-2.0) ships real CT scans with TotalSegmentator's own segmentations in
``tests/reference_files/``. This script turns them into BTCV-labelled volumes:

* ``--patient A`` (default): the committed sample, written to
  ``FreqAdvSegment/FreqAdvSegmentLib/resources/sample/`` as ``patientA_ct.nii.gz`` (HU, int16)
  and ``patientA_labels.nii.gz`` (BTCV labels 0..13, uint8) on the source grid.
* ``--patient B``: the held-out evaluation patient (a DICOM series). Written to the cache only,
  never committed: ``CACHE/patientB/patientB_ct.nii.gz``, ``patientB_labels.nii.gz`` (labels
  resampled in physical space onto the CT grid) and a MONAI Decathlon-style ``datalist.json``.

CACHE is ``--cache``, else ``$FREQADV_CACHE``, else ``~/.cache/freqadvsegment``.

Caveat: the labels are TotalSegmentator's model output (silver standard), not manual annotation.
Attribution: Wasserthal et al., "TotalSegmentator: Robust Segmentation of 104 Anatomic
Structures in CT Images", Radiology: Artificial Intelligence 2023.

Usage::

    python scripts/prepare_sample_data.py              # patient A -> package resources
    python scripts/prepare_sample_data.py --patient B  # patient B -> cache
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_PARENT = REPO_ROOT / "FreqAdvSegment"

if str(PACKAGE_PARENT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(PACKAGE_PARENT))

from FreqAdvSegmentLib.organs import BTCV_LABELS  # noqa: E402
from FreqAdvSegmentLib.samples.sample_data import (  # noqa: E402
    HELDOUT_CT_NAME,
    HELDOUT_DIRNAME,
    HELDOUT_LABELS_NAME,
    SAMPLE_CT_NAME,
    SAMPLE_DIR,
    SAMPLE_LABELS_NAME,
    default_cache_dir,
)

TS_VERSION = "2.4.0"
TS_REQUIREMENT = f"totalsegmentator=={TS_VERSION}"
TS_SDIST_NAME = f"TotalSegmentator-{TS_VERSION}.tar.gz"
TS_SDIST_SHA256 = "1274bb64e483db7b144bcab6f59adea0704d7423303c1ee23b42a40e8be81eb6"
TS_SOURCE_DIRNAME = f"TotalSegmentator-{TS_VERSION}"
TS_CLASS_MAP_FILE = "totalsegmentator/map_to_binary.py"
TS_CLASS_MAP_TASK = "total"
REFERENCE_DIR = "tests/reference_files"

# BTCV organ (FreqAdvSegmentLib.organs.BTCV_LABELS) -> TotalSegmentator class (task `total`).
BTCV_TO_TOTALSEG: dict[str, str] = {
    "spleen": "spleen",
    "right kidney": "kidney_right",
    "left kidney": "kidney_left",
    "gallbladder": "gallbladder",
    "esophagus": "esophagus",
    "liver": "liver",
    "stomach": "stomach",
    "aorta": "aorta",
    "inferior vena cava": "inferior_vena_cava",
    "portal and splenic veins": "portal_vein_and_splenic_vein",
    "pancreas": "pancreas",
    "right adrenal gland": "adrenal_gland_right",
    "left adrenal gland": "adrenal_gland_left",
}

INT16_MIN, INT16_MAX = np.iinfo(np.int16).min, np.iinfo(np.int16).max


# --------------------------------------------------------------------------- cache / archive


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_sdist(cache: Path) -> Path:
    """Download the TotalSegmentator source archive into ``cache`` with pip (no install)."""
    archive = cache / TS_SDIST_NAME
    if archive.is_file():
        return archive
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "-d",
        str(cache),
        TS_REQUIREMENT,
    ]
    print("running:", " ".join(cmd))
    subprocess.run(cmd, check=True)
    if not archive.is_file():
        raise FileNotFoundError(f"pip download finished but {archive} is not there")
    return archive


def verify_sha256(archive: Path, expected: str = TS_SDIST_SHA256) -> None:
    """Raise (and delete ``archive``, so a rerun refetches) unless its SHA-256 is ``expected``."""
    actual = sha256_of(archive)
    if actual != expected:
        archive.unlink(missing_ok=True)
        raise RuntimeError(
            f"SHA-256 mismatch for {archive.name}: expected {expected}, got {actual}; "
            "the file was deleted, run again to download it afresh"
        )


def _safe_extract(tar: tarfile.TarFile, dest: Path) -> None:
    """Extract ``tar`` into ``dest`` refusing absolute paths, ``..`` and links out of ``dest``."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
        return
    root = dest.resolve()
    for member in tar.getmembers():
        target = (dest / member.name).resolve()
        if root != target and root not in target.parents:
            raise RuntimeError(f"refusing to extract {member.name!r}: outside {dest}")
        if member.issym() or member.islnk() or member.isdev():
            raise RuntimeError(f"refusing to extract link or device {member.name!r}")
    tar.extractall(dest)


def unpack_sdist(archive: Path, cache: Path) -> Path:
    """Unpack ``archive`` into ``cache`` atomically (temp folder, then rename)."""
    source = cache / TS_SOURCE_DIRNAME
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=cache))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            _safe_extract(tar, staging)
        unpacked = staging / TS_SOURCE_DIRNAME
        if not unpacked.is_dir():
            raise RuntimeError(f"{archive.name} has no top-level folder {TS_SOURCE_DIRNAME}")
        os.replace(unpacked, source)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return source


def is_unpacked(source: Path) -> bool:
    """Whether the unpacked archive already has what this script reads."""
    return (source / TS_CLASS_MAP_FILE).is_file() and (source / REFERENCE_DIR).is_dir()


def ensure_totalsegmentator_source(cache: Path) -> Path:
    """Return the unpacked TotalSegmentator source folder, downloading and unpacking if needed."""
    cache.mkdir(parents=True, exist_ok=True)
    source = cache / TS_SOURCE_DIRNAME
    if is_unpacked(source):
        print(f"using unpacked archive {source}")
        return source
    archive = download_sdist(cache)
    verify_sha256(archive)
    print(f"verified {archive.name} sha256 {TS_SDIST_SHA256}")
    if source.exists():  # a partial or damaged earlier unpack
        shutil.rmtree(source)
    return unpack_sdist(archive, cache)


# --------------------------------------------------------------------------- label mapping


def read_class_map(map_file: Path, task: str = TS_CLASS_MAP_TASK) -> dict[int, str]:
    """Read ``class_map[task]`` from ``map_to_binary.py`` via ``ast`` (never imported)."""
    tree = ast.parse(map_file.read_text(encoding="utf-8"), filename=str(map_file))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "class_map" for t in node.targets
        ):
            class_map = ast.literal_eval(node.value)
            break
    else:
        raise ValueError(f"no top-level `class_map = {{...}}` in {map_file}")
    if task not in class_map:
        raise KeyError(f"class map has no task {task!r} in {map_file}; tasks: {sorted(class_map)}")
    return {int(k): str(v) for k, v in class_map[task].items()}


def build_lookup(class_map: Mapping[int, str], max_label: int = 255) -> np.ndarray:
    """Lookup table: TotalSegmentator label id -> BTCV index (0 for everything not a BTCV organ)."""
    missing_btcv = [n for n in BTCV_LABELS[1:] if n not in BTCV_TO_TOTALSEG]
    if missing_btcv or len(BTCV_TO_TOTALSEG) != len(BTCV_LABELS) - 1:
        raise ValueError(
            f"BTCV_TO_TOTALSEG does not cover BTCV_LABELS exactly (missing {missing_btcv})"
        )
    ids_by_name = {name: idx for idx, name in class_map.items()}
    missing = [ts for ts in BTCV_TO_TOTALSEG.values() if ts not in ids_by_name]
    if missing:
        raise KeyError(
            f"TotalSegmentator class map `{TS_CLASS_MAP_TASK}` lacks {missing}; "
            "cannot map it to the BTCV organs"
        )
    lookup = np.zeros(max(max_label, max(class_map)) + 1, dtype=np.uint8)
    for btcv_index, btcv_name in enumerate(BTCV_LABELS):
        if btcv_index == 0:
            continue
        lookup[ids_by_name[BTCV_TO_TOTALSEG[btcv_name]]] = btcv_index
    return lookup


def describe_mapping(lookup: np.ndarray, class_map: Mapping[int, str]) -> list[str]:
    """Lines ``BTCV index name <- TotalSegmentator id name`` for logging and the README."""
    lines = []
    for ts_id in np.flatnonzero(lookup):
        btcv = int(lookup[ts_id])
        lines.append(
            f"{btcv:2d} {BTCV_LABELS[btcv]:<26} <- {int(ts_id):3d} {class_map[int(ts_id)]}"
        )
    return sorted(lines)


def map_labels(seg: sitk.Image, lookup: np.ndarray, class_map: Mapping[int, str]) -> sitk.Image:
    """Map a TotalSegmentator label image to BTCV labels (uint8), keeping its geometry."""
    arr = sitk.GetArrayViewFromImage(seg)
    if arr.min() < 0:
        raise ValueError("segmentation has negative label values")
    unknown = sorted(set(np.unique(arr).tolist()) - set(class_map) - {0})
    if unknown:
        raise ValueError(
            f"segmentation has labels not in class map `{TS_CLASS_MAP_TASK}`: {unknown}"
        )
    out = sitk.GetImageFromArray(lookup[arr.astype(np.int64)])
    out.CopyInformation(seg)
    return out


# --------------------------------------------------------------------------- image helpers


def read_dicom_series(folder: Path) -> sitk.Image:
    """Read the single DICOM series in ``folder`` (rescale slope/intercept applied -> HU)."""
    reader = sitk.ImageSeriesReader()
    series_ids = reader.GetGDCMSeriesIDs(str(folder))
    if len(series_ids) != 1:
        raise ValueError(f"expected one DICOM series in {folder}, found {len(series_ids)}")
    files = reader.GetGDCMSeriesFileNames(str(folder), series_ids[0])
    reader.SetFileNames(files)
    image = reader.Execute()
    print(f"read DICOM series: {len(files)} slices from {folder}")
    return image


def to_int16_hu(ct: sitk.Image) -> sitk.Image:
    """Cast a CT to int16, refusing non-integer HU or values out of the int16 range."""
    arr = sitk.GetArrayViewFromImage(ct)
    lo, hi = float(arr.min()), float(arr.max())
    if lo < INT16_MIN or hi > INT16_MAX:
        raise ValueError(f"CT range {lo}..{hi} does not fit int16")
    if np.issubdtype(arr.dtype, np.floating) and not np.array_equal(arr, np.round(arr)):
        raise ValueError("CT has non-integer values; refusing a lossy cast to int16")
    return sitk.Cast(ct, sitk.sitkInt16)


def geometry(image: sitk.Image) -> tuple[tuple, ...]:
    """Size, spacing, origin and direction of ``image``."""
    return image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def check_same_geometry(a: sitk.Image, b: sitk.Image, what: str) -> None:
    """Raise unless ``a`` and ``b`` have exactly the same grid."""
    ga, gb = geometry(a), geometry(b)
    if ga != gb:
        names = ("size", "spacing", "origin", "direction")
        diffs = [f"{n}: {x} != {y}" for n, x, y in zip(names, ga, gb, strict=True) if x != y]
        raise ValueError(f"{what}: geometry differs: " + "; ".join(diffs))


def physical_coverage(moving: sitk.Image, fixed: sitk.Image) -> float:
    """Fraction of the 8 corners of ``fixed`` that fall inside ``moving``'s grid (0..1)."""
    size = fixed.GetSize()
    inside = 0
    for x in (0, size[0] - 1):
        for y in (0, size[1] - 1):
            for z in (0, size[2] - 1):
                point = fixed.TransformIndexToPhysicalPoint((x, y, z))
                idx = moving.TransformPhysicalPointToContinuousIndex(point)
                inside += all(
                    -0.5 <= i <= s - 0.5 for i, s in zip(idx, moving.GetSize(), strict=True)
                )
    return inside / 8.0


def resample_labels_onto(labels: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """Resample a label image onto ``reference``'s grid in physical space (nearest neighbour)."""
    coverage = physical_coverage(labels, reference)
    if coverage < 1.0:
        print(
            f"warning: label grid covers only {coverage:.0%} of the CT grid's corners; outside -> 0"
        )
    return sitk.Resample(
        labels, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, labels.GetPixelID()
    )


def organ_counts(labels: sitk.Image) -> dict[str, int]:
    """Voxel count per BTCV organ (background excluded)."""
    counts = np.bincount(sitk.GetArrayViewFromImage(labels).ravel(), minlength=len(BTCV_LABELS))
    if len(counts) > len(BTCV_LABELS):
        raise ValueError(f"labels exceed {len(BTCV_LABELS) - 1}")
    return {name: int(counts[i]) for i, name in enumerate(BTCV_LABELS) if i > 0}


def organ_mean_hu(ct: sitk.Image, labels: sitk.Image) -> dict[str, float]:
    """Mean HU inside each present organ."""
    hu = sitk.GetArrayViewFromImage(ct).astype(np.float64)
    lab = sitk.GetArrayViewFromImage(labels)
    return {
        name: float(hu[lab == i].mean())
        for i, name in enumerate(BTCV_LABELS)
        if i > 0 and np.any(lab == i)
    }


def report_and_check_anatomy(ct: sitk.Image, labels: sitk.Image, patient: str) -> dict[str, int]:
    """Print organ voxel counts and mean HU; raise if the liver is missing or not soft tissue."""
    counts = organ_counts(labels)
    mean_hu = organ_mean_hu(ct, labels)
    voxel_ml = float(np.prod(ct.GetSpacing())) / 1000.0
    print(f"patient {patient}: organ voxel counts (grid {ct.GetSize()}, spacing {ct.GetSpacing()})")
    for index, name in enumerate(BTCV_LABELS[1:], start=1):
        hu = f"{mean_hu[name]:7.1f} HU" if name in mean_hu else "      - HU"
        volume = counts[name] * voxel_ml
        print(f"  {index:2d} {name:<26} {counts[name]:8d} voxels {volume:8.1f} ml  mean {hu}")
    present = sum(1 for c in counts.values() if c > 0)
    print(f"  {present}/{len(BTCV_LABELS) - 1} organs present")
    if counts["liver"] == 0:
        raise ValueError(f"patient {patient}: no liver voxels after mapping; labels look wrong")
    if not -50.0 <= mean_hu["liver"] <= 250.0:
        raise ValueError(
            f"patient {patient}: mean HU in the liver is {mean_hu['liver']:.0f}, not soft tissue; "
            "labels are probably misaligned with the CT"
        )
    return counts


# --------------------------------------------------------------------------- atomic writes


def _atomic_target(path: Path, writer: Callable[[Path], None]) -> None:
    """Run ``writer`` on a temp file in ``path``'s folder (same suffix), then ``os.replace`` it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name.split('.')[0]}-", suffix=suffix, dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_image_atomic(image: sitk.Image, path: Path) -> None:
    """Write ``image`` (gzip-compressed NIfTI) atomically."""
    _atomic_target(path, lambda tmp: sitk.WriteImage(image, str(tmp), useCompression=True))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


def write_json_atomic(data: object, path: Path) -> None:
    """Write ``data`` as indented JSON atomically."""
    _atomic_target(
        path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    )
    print(f"wrote {path}")


# --------------------------------------------------------------------------- patients


def prepare_patient_a(
    source: Path, out_dir: Path, lookup: np.ndarray, class_map: Mapping[int, str]
) -> None:
    """Committed sample: example_ct + example_seg_fast_force_split, on the source grid."""
    ref = source / REFERENCE_DIR
    ct = sitk.ReadImage(str(ref / "example_ct.nii.gz"))
    seg = sitk.ReadImage(str(ref / "example_seg_fast_force_split.nii.gz"))
    check_same_geometry(ct, seg, "patient A source CT vs segmentation")
    ct16 = to_int16_hu(ct)
    labels = map_labels(seg, lookup, class_map)
    check_same_geometry(ct16, labels, "patient A CT vs BTCV labels")
    report_and_check_anatomy(ct16, labels, "A")
    write_image_atomic(ct16, out_dir / SAMPLE_CT_NAME)
    write_image_atomic(labels, out_dir / SAMPLE_LABELS_NAME)
    written_ct = sitk.ReadImage(str(out_dir / SAMPLE_CT_NAME))
    written_labels = sitk.ReadImage(str(out_dir / SAMPLE_LABELS_NAME))
    check_same_geometry(written_ct, written_labels, "patient A written CT vs labels")


def prepare_patient_b(
    source: Path, out_dir: Path, lookup: np.ndarray, class_map: Mapping[int, str]
) -> None:
    """Held-out patient: DICOM CT + example_seg_dicom resampled in physical space onto its grid."""
    ref = source / REFERENCE_DIR
    ct16 = to_int16_hu(read_dicom_series(ref / "example_ct_dicom"))
    seg = sitk.ReadImage(str(ref / "example_seg_dicom.nii.gz"))
    print(
        f"segmentation direction {seg.GetDirection()} vs CT direction {ct16.GetDirection()}: "
        "resampling in physical space"
    )
    labels = resample_labels_onto(map_labels(seg, lookup, class_map), ct16)
    check_same_geometry(ct16, labels, "patient B CT vs resampled BTCV labels")
    report_and_check_anatomy(ct16, labels, "B")
    ct_path, labels_path = out_dir / HELDOUT_CT_NAME, out_dir / HELDOUT_LABELS_NAME
    write_image_atomic(ct16, ct_path)
    write_image_atomic(labels, labels_path)
    datalist = {
        "validation": [{"image": str(ct_path.resolve()), "label": str(labels_path.resolve())}]
    }
    write_json_atomic(datalist, out_dir / "datalist.json")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--patient",
        choices=("A", "B"),
        default="A",
        help="A: committed sample into package resources (default); B: held-out, into the cache",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="cache folder (default: $FREQADV_CACHE or ~/.cache/freqadvsegment)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    cache = (args.cache or default_cache_dir()).expanduser().resolve()
    source = ensure_totalsegmentator_source(cache)
    class_map = read_class_map(source / TS_CLASS_MAP_FILE)
    lookup = build_lookup(class_map)
    print(f"label mapping (BTCV <- TotalSegmentator `{TS_CLASS_MAP_TASK}`):")
    for line in describe_mapping(lookup, class_map):
        print("  " + line)
    if args.patient == "A":
        if REPO_ROOT not in SAMPLE_DIR.parents:
            raise RuntimeError(
                f"FreqAdvSegmentLib was imported from outside this checkout ({SAMPLE_DIR})"
            )
        prepare_patient_a(source, SAMPLE_DIR, lookup, class_map)
    else:
        prepare_patient_b(source, cache / HELDOUT_DIRNAME, lookup, class_map)
    return 0


if __name__ == "__main__":
    sys.exit(main())
