"""Paths to the real CT volumes the project uses.

* Patient A, shipped with the package (``resources/sample/``): a real abdominal CT with BTCV
  organ labels, the sample volume and the training volume of the demo models.
* Patient B, held out: prepared into the cache by ``python scripts/prepare_sample_data.py
  --patient B`` and never shipped. Evaluation only: never train or tune on it.

Both come from the TotalSegmentator 2.4.0 source archive (Apache-2.0; Wasserthal et al.,
Radiology: Artificial Intelligence 2023). Their labels are TotalSegmentator's own model output
(silver standard), not manual annotation: say so wherever a Dice figure rests on them.
"""

from __future__ import annotations

import os
from pathlib import Path

SAMPLE_DIR: Path = Path(__file__).resolve().parent.parent / "resources" / "sample"
SAMPLE_CT_NAME = "patientA_ct.nii.gz"
# SHA-256 of the shipped sample CT, for Slicer's Sample Data registration (hashing 2 MB at every
# Slicer start was measurable); Testing/samples/test_sample_data.py checks it against the file.
SAMPLE_CT_SHA256 = "7811475c3e61c4310c51b56998b365ef5d561919388ecb89839f3cf119389e8c"
SAMPLE_LABELS_NAME = "patientA_labels.nii.gz"
HELDOUT_DIRNAME = "patientB"
HELDOUT_CT_NAME = "patientB_ct.nii.gz"
HELDOUT_LABELS_NAME = "patientB_labels.nii.gz"
PREPARE_HELDOUT_COMMAND = "python scripts/prepare_sample_data.py --patient B"


def default_cache_dir() -> Path:
    """The data cache: ``$FREQADV_CACHE`` if set, else ``~/.cache/freqadvsegment``."""
    env = os.environ.get("FREQADV_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "freqadvsegment"


def _shipped_file(name: str) -> Path:
    """Path of a file in the shipped sample folder; FileNotFoundError if it is missing."""
    path = SAMPLE_DIR / name
    if not path.is_file():
        raise FileNotFoundError(
            f"shipped sample file {path} is missing: the package was installed without its "
            "resources; reinstall it, or regenerate the sample with "
            "`python scripts/prepare_sample_data.py --patient A` from a source checkout"
        )
    return path


def sample_ct_path() -> Path:
    """Path of the shipped sample CT (patient A, HU as int16, 3 mm isotropic NIfTI)."""
    return _shipped_file(SAMPLE_CT_NAME)


def sample_labels_path() -> Path:
    """Path of the shipped sample labels (patient A, BTCV 0..13, uint8, the CT's grid)."""
    return _shipped_file(SAMPLE_LABELS_NAME)


def heldout_patient_paths(cache: Path | None = None) -> tuple[Path, Path]:
    """``(ct, labels)`` of the held-out patient B in ``cache`` (default: :func:`default_cache_dir`).

    Raises FileNotFoundError, naming the command that prepares them, if either is missing.
    """
    folder = Path(cache).expanduser() if cache is not None else default_cache_dir()
    folder = folder / HELDOUT_DIRNAME
    ct, labels = folder / HELDOUT_CT_NAME, folder / HELDOUT_LABELS_NAME
    missing = [str(p) for p in (ct, labels) if not p.is_file()]
    if missing:
        cache_hint = "" if cache is None else f" --cache {Path(cache).expanduser()}"
        raise FileNotFoundError(
            f"held-out patient B is not prepared (missing: {', '.join(missing)}); "
            f"run `{PREPARE_HELDOUT_COMMAND}{cache_hint}` from the project checkout"
        )
    return ct, labels
