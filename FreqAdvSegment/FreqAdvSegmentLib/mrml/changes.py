"""Where it broke: the voxels whose label an attack changed, as a segmentation named by organ.

For every organ of the clean prediction, segment "<organ> lost" holds the voxels the clean
prediction gave that organ and the attacked prediction did not; "background lost" holds the
voxels the clean prediction left as background and the attack turned into some organ. Segments
keep their organ's colour, so the 3D view shows which organ was eaten where.

Nothing is compared here: the engine wrote where the labels changed (``<attack>/labels_lost``
and ``labels_gained``, see ``job/label_changes.py``) and this reads those two maps:

    lost, gained = written_change_maps(folder, report["files"], "vafa")
    changed = label_change_image(lost, gained)                            # uint8, on the same grid
    node = label_change_segmentation(scene, lost, gained, "vafa: where it broke", label_names, reference_volume=ct)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..job.label_changes import organ_lost_image
from ..organs import BTCV_LABELS

BACKGROUND_LOST = "background lost"


def label_change_image(lost: sitk.Image, gained: sitk.Image, n_labels: int = len(BTCV_LABELS)) -> sitk.Image:
    """Label map [k, j, i] of the changes, from the engine's lost/gained maps: value v in 1..n-1 =
    organ v lost, value n = background lost (now an organ), 0 = unchanged. Same grid as ``lost``."""
    return organ_lost_image(lost, gained, n_labels)


def change_names(label_names: Sequence[str]) -> tuple[str, ...]:
    """Segment names per value of :func:`label_change_image` (index = value)."""
    return ("background", *(f"{name} lost" for name in label_names[1:]), BACKGROUND_LOST)


def label_change_segmentation(scene: Any, lost: sitk.Image, gained: sitk.Image, name: str,
                              label_names: Sequence[str] = BTCV_LABELS, reference_volume: Any = None,
                              node: Any = None, closed_surfaces: bool = True) -> Any:
    """A segmentation node of :func:`label_change_image`: one segment per organ that lost
    voxels, named "<organ> lost" and coloured as the organ (the IDs are the organ names, so
    a terminology-aware reader sees which structure it was)."""
    from .segmentations import segmentation_from_labels

    changes = label_change_image(lost, gained, len(label_names))
    names = (*label_names, BACKGROUND_LOST)
    node = segmentation_from_labels(scene, changes, name, names, reference_volume, node, closed_surfaces)
    segmentation = node.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        organ = segmentation.GetNthSegmentID(index)
        if organ != BACKGROUND_LOST:
            segment.SetName(f"{organ} lost")
    return node


def change_counts(changes: sitk.Image, label_names: Sequence[str] = BTCV_LABELS) -> dict[str, int]:
    """Segment name -> voxels, for the voxels :func:`label_change_image` marked (largest first)."""
    values, counts = np.unique(sitk.GetArrayViewFromImage(changes), return_counts=True)
    names = change_names(label_names)
    found = {names[int(v)]: int(c) for v, c in zip(values, counts) if v > 0}
    return dict(sorted(found.items(), key=lambda item: -item[1]))
