"""Where it broke: the voxels whose predicted label the attack changed, as a red label map.

    image = label_changes(clean_labels, adversarial_labels)   # uint8: 1 where they differ
    node = change_node(scene, image, "fgsm label changes")    # red in any slice view's label layer

The label map is drawn as the label layer over the clean CT, so a reader sees at once where the
segmentation moved, however faint the perturbation that moved it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import SimpleITK as sitk

from ..mrml.volumes import volume_node_from_image

CHANGED = 1
CHANGE_COLOR = (1.0, 0.0, 0.0)  # pure red: no organ colour is red (the test counts red pixels)
COLORS_NAME = "FreqAdvSegment label changes (red)"


def label_changes(clean: sitk.Image, adversarial: sitk.Image) -> sitk.Image:
    """``CHANGED`` where the two label maps differ, 0 elsewhere, on ``clean``'s grid.

    Both are [k, j, i] label images of the same grid; ValueError otherwise."""
    a, b = sitk.GetArrayViewFromImage(clean), sitk.GetArrayViewFromImage(adversarial)
    if a.shape != b.shape:
        raise ValueError(f"the label maps have different grids ({a.shape} and {b.shape})")
    changed = sitk.GetImageFromArray((a != b).astype(np.uint8) * CHANGED)
    changed.CopyInformation(clean)
    return changed


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
