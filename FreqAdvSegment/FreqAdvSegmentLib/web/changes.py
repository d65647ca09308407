"""Where it broke: the voxels whose predicted label the attack changed, as a red label map.

    image = label_changes(folder, report["files"], "fgsm")    # uint8: 1 where a label changed
    node = change_node(scene, image, "fgsm label changes")    # red in any slice view's label layer

Nothing is compared here: the image comes from the maps the engine wrote (``fgsm/labels_lost``
and ``labels_gained``, see ``job/label_changes.py``), the same ones the Slicer module shows.

The label map is drawn as the label layer over the clean CT, so a reader sees at once where the
segmentation moved, however faint the perturbation that moved it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..job.label_changes import changed_mask, written_change_maps
from ..mrml.volumes import volume_node_from_image

CHANGED = 1
CHANGE_COLOR = (1.0, 0.0, 0.0)  # pure red: no organ colour is red (the test counts red pixels)
COLORS_NAME = "FreqAdvSegment label changes (red)"


def label_changes(folder: str | Path, files: Mapping[str, str], attack: str) -> sitk.Image:
    """uint8 [k, j, i]: ``CHANGED`` where ``attack`` changed a label, 0 elsewhere, on the input's
    grid; from the output folder's maps (``files``: report.json's)."""
    return changed_mask(*written_change_maps(folder, files, attack))


def changed_voxels(image: sitk.Image) -> int:
    """How many voxels ``image`` (from :func:`label_changes`) marks."""
    return int(np.count_nonzero(sitk.GetArrayViewFromImage(image)))


def change_node(scene: Any, image: sitk.Image, name: str) -> Any:
    """A label map volume node of ``image``, coloured red (0 stays transparent)."""
    node = volume_node_from_image(scene, image, name, labelmap=True)
    node.GetDisplayNode().SetAndObserveColorNodeID(_color_node(scene).GetID())
    return node


def _color_node(scene: Any) -> Any:
    node = scene.GetFirstNodeByName(COLORS_NAME)
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLColorTableNode", COLORS_NAME)
        node.SetTypeToUser()
        node.SetNumberOfColors(2)
        node.SetColor(0, "unchanged", 0.0, 0.0, 0.0, 0.0)
        node.SetColor(CHANGED, "label changed", *CHANGE_COLOR, 1.0)
    return node
