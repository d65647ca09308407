"""Where the labels changed: the one implementation, written by the engine and read by the viewers.

The engine compares the clean and the attacked label maps once, on the input's grid, and writes
two label maps per attack (``<attack>/labels_lost`` and ``<attack>/labels_gained``, see
:func:`label_change_maps`) plus the per-organ voxel counts in report.json (``label_changes``).
The Slicer bridge (``mrml/changes.py``) and the web viewer (``web/changes.py``) read those two
files and derive what they show from them here, so the three never disagree:

    lost, gained = label_change_maps(clean_labels, adversarial_labels)   # engine, written out
    changed_mask(lost, gained)               # 1 where any label changed (web: red overlay)
    organ_lost_image(lost, gained, n)        # organ lost, n = background lost (Slicer segments)

A voxel changed exactly where ``lost`` or ``gained`` is non-zero: the two differ there, so at
most one of them is background (0).

Only NumPy and SimpleITK: the Slicer GUI process and the web server import this without torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..evaluation.results import LabelChange
from ..files.images import read_image


def label_change_maps(clean: sitk.Image, attacked: sitk.Image) -> tuple[sitk.Image, sitk.Image]:
    """(lost, gained) label maps on ``clean``'s grid, uint8.

    ``lost`` holds the clean label of every changed voxel (the organ lost there), ``gained`` the
    attacked label (the organ gained); 0 where nothing changed. Both use the model's label values,
    so Slicer and the web viewer colour them like any segmentation."""
    a, b = _pair(clean, attacked)
    changed = a != b
    return tuple(_image(np.where(changed, values, 0).astype(np.uint8), clean) for values in (a, b))  # type: ignore[return-value]


def label_changes(clean: sitk.Image, attacked: sitk.Image, label_names: Sequence[str]) -> dict[str, LabelChange]:
    """Voxels each organ lost and gained under attack, on the input grid (organs with changes only)."""
    a, b = _pair(clean, attacked)
    changed = a != b
    n = len(label_names)
    lost = np.bincount(a[changed].ravel(), minlength=n)
    gained = np.bincount(b[changed].ravel(), minlength=n)
    return {label_names[i]: LabelChange(int(lost[i]), int(gained[i])) for i in range(n) if lost[i] or gained[i]}


def written_change_maps(folder: str | Path, files: Mapping[str, str], attack: str) -> tuple[sitk.Image, sitk.Image]:
    """The (lost, gained) maps the engine wrote for ``attack`` into an output folder.

    ``files`` is report.json's ``files``. A folder written before these maps existed (it has
    only ``clean_labels`` and ``<attack>/adversarial_labels``) gets them computed here, by
    :func:`label_change_maps`, exactly as the engine would have written them."""
    folder = Path(folder)
    lost, gained = files.get(f"{attack}/labels_lost"), files.get(f"{attack}/labels_gained")
    if lost and gained and (folder / lost).is_file() and (folder / gained).is_file():
        return read_image(folder / lost), read_image(folder / gained)
    return label_change_maps(read_image(folder / files["clean_labels"]),
                             read_image(folder / files[f"{attack}/adversarial_labels"]))


def changed_mask(lost: sitk.Image, gained: sitk.Image) -> sitk.Image:
    """uint8 [k, j, i]: 1 where the label changed (from the engine's two maps), 0 elsewhere."""
    a, b = _pair(lost, gained)
    return _image(((a != 0) | (b != 0)).astype(np.uint8), lost)


def organ_lost_image(lost: sitk.Image, gained: sitk.Image, n_labels: int) -> sitk.Image:
    """uint8 [k, j, i] of the changes by the organ lost: value v in 1..n-1 = organ v lost there,
    value ``n_labels`` = background lost (an organ appeared), 0 = unchanged."""
    a, b = _pair(lost, gained)
    out = a.astype(np.uint8)
    out[(a == 0) & (b != 0)] = n_labels
    return _image(out, lost)


def _pair(first: sitk.Image, second: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    a, b = sitk.GetArrayViewFromImage(first), sitk.GetArrayViewFromImage(second)
    if a.shape != b.shape:
        raise ValueError(f"the two label maps differ in size: {a.shape[::-1]} vs {b.shape[::-1]}; "
                         "compare label maps on the same grid")
    return a, b


def _image(array: np.ndarray, like: sitk.Image) -> sitk.Image:
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(like)
    return out
