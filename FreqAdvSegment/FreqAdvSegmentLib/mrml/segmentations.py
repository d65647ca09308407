"""Label maps <-> segmentation nodes: named, coloured, with terminology and 3D closed surfaces.

    seg = segmentation_from_labels(scene, labels_image, "clean segmentation", reference_volume=ct)
    seg.GetSegmentation().GetSegment("liver")          # segment IDs are the organ names
    labels = labels_from_segmentation(seg, ct, BTCV_LABELS)   # back to label values 0..13

All segments share one labelmap layer (Slicer's shared labelmap): label value v is segment
``label_names[v]``. Label values absent from the map get no segment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk
import vtk

from ..organs import BTCV_LABELS
from .scene import ensure_segmentation_converters
from .terminology import ORGAN_CODES, color_table_node, label_colors, terminology_entry
from .volumes import image_from_volume_node, volume_node_from_image

CLOSED_SURFACE = "Closed surface"


def segmentation_from_labels(
    scene: Any,
    labels: sitk.Image,
    name: str,
    label_names: Sequence[str] = BTCV_LABELS,
    reference_volume: Any = None,
    node: Any = None,
    closed_surfaces: bool = True,
) -> Any:
    """A segmentation node with one segment per label value present in ``labels``.

    Args:
        scene: the scene to add to.
        labels: integer label map (value = index into ``label_names``, 0 = background).
        name: name of a new node (``node`` given: its name is kept).
        label_names: name of each label value (segment IDs and names).
        reference_volume: volume whose grid the segmentation refers to (and whose parent
            transform it follows); None keeps the label map's own grid.
        node: an existing segmentation node to refill (its segments are replaced).
        closed_surfaces: also build 3D closed surfaces (what the 3D view shows).
    """
    ensure_segmentation_converters()
    present = _present_labels(labels, label_names)
    node = _empty_segmentation(scene, name, node)
    _import_labels(scene, labels, node, [label_names[v] if v in present else "" for v in range(1, len(label_names))])
    _describe_segments(node, label_names)
    node.SetLabelmapConversionColorTableNodeID(color_table_node(scene, label_names).GetID())
    if reference_volume is not None:
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
        node.SetAndObserveTransformNodeID(reference_volume.GetTransformNodeID())
    if closed_surfaces:
        node.CreateClosedSurfaceRepresentation()
        node.GetDisplayNode().SetPreferredDisplayRepresentationName3D(CLOSED_SURFACE)
    return node


def labels_from_segmentation(segmentation: Any, reference_volume: Any, label_names: Sequence[str] = BTCV_LABELS) -> sitk.Image:
    """The label map of ``segmentation`` on ``reference_volume``'s grid, each segment written with
    the label value its terminology (or, failing that, its name) has in ``label_names``.

    Raises ValueError naming any segment that matches no label (say which to rename)."""
    ensure_segmentation_converters()
    mapping = segment_label_values(segmentation, label_names)
    ids = vtk.vtkStringArray()
    for segment_id in mapping:
        ids.InsertNextValue(segment_id)
    scene = segmentation.GetScene()
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__freqadv_export")
    try:
        import slicer

        logic = slicer.vtkSlicerSegmentationsModuleLogic
        if not logic.ExportSegmentsToLabelmapNode(segmentation, ids, labelmap, reference_volume, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY):
            raise ValueError(f"could not export segmentation {segmentation.GetName()!r} to a label map")
        exported = image_from_volume_node(labelmap)
    finally:
        _remove_with_display(scene, labelmap)
    # Export numbered the segments 1..N in the order given; renumber to the model's values.
    lookup = np.zeros(len(mapping) + 1, dtype=np.uint8)
    lookup[1:] = list(mapping.values())
    out = sitk.GetImageFromArray(lookup[sitk.GetArrayViewFromImage(exported)])
    out.CopyInformation(exported)
    return out


def segment_label_values(segmentation: Any, label_names: Sequence[str]) -> dict[str, int]:
    """Segment ID -> label value, matched by terminology codes, else by name (case, spaces and
    underscores ignored). Raises ValueError listing segments that match nothing."""
    by_name = {_norm(n): v for v, n in enumerate(label_names) if v > 0}
    by_code = {_codes_of(terminology_entry(n)): v for v, n in enumerate(label_names) if v > 0 and n.lower() in ORGAN_CODES}
    seg = segmentation.GetSegmentation()
    mapping, unknown = {}, []
    for index in range(seg.GetNumberOfSegments()):
        segment_id, segment = seg.GetNthSegmentID(index), seg.GetNthSegment(index)
        value = by_code.get(_codes_of(segment.GetTerminology())) or by_name.get(_norm(segment.GetName()))
        if value is None:
            unknown.append(segment.GetName())
        else:
            mapping[segment_id] = value
    if unknown:
        raise ValueError(
            f"segment(s) {unknown} of {segmentation.GetName()!r} match none of the model's labels "
            f"({', '.join(label_names[1:])}); rename them to one of these or remove them"
        )
    return mapping


# --- helpers -------------------------------------------------------------------------------------


def _present_labels(labels: sitk.Image, label_names: Sequence[str]) -> set[int]:
    values = {int(v) for v in np.unique(sitk.GetArrayViewFromImage(labels))}
    bad = sorted(v for v in values if not 0 <= v < len(label_names))
    if bad:
        raise ValueError(
            f"label map has value(s) {bad} outside 0..{len(label_names) - 1} ({', '.join(label_names)})"
        )
    return values - {0}


def _empty_segmentation(scene: Any, name: str, node: Any) -> Any:
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    else:
        node.GetSegmentation().RemoveAllSegments()
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node


def _import_labels(scene: Any, labels: sitk.Image, node: Any, segment_ids: list[str]) -> None:
    import slicer

    ids = vtk.vtkStringArray()
    for segment_id in segment_ids:
        ids.InsertNextValue(segment_id)
    labelmap = volume_node_from_image(scene, sitk.Cast(labels, sitk.sitkUInt8), "__freqadv_import", labelmap=True)
    try:
        # Value v+1 becomes segment ids[v]; empty IDs (labels absent from the map) are skipped.
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, node, ids):
            raise ValueError(f"could not import the label map into segmentation {node.GetName()!r}")
    finally:
        _remove_with_display(scene, labelmap)


def _describe_segments(node: Any, label_names: Sequence[str]) -> None:
    colors = dict(zip(label_names, label_colors(label_names)))
    seg = node.GetSegmentation()
    for index in range(seg.GetNumberOfSegments()):
        segment = seg.GetNthSegment(index)
        name = seg.GetNthSegmentID(index)
        segment.SetName(name)
        segment.SetColor(*colors[name])
        entry = terminology_entry(name)
        if entry:
            segment.SetTerminology(entry)


def _remove_with_display(scene: Any, node: Any) -> None:
    for index in range(node.GetNumberOfDisplayNodes()):
        display = node.GetNthDisplayNode(index)
        if display is not None:
            scene.RemoveNode(display)
    scene.RemoveNode(node)


def _codes_of(entry: str | None) -> tuple[str, str] | None:
    """(type code, type modifier code) of a TerminologyEntry string, whatever its context."""
    if not entry:
        return None
    parts = entry.split("~")
    if len(parts) < 4:
        return None
    value = lambda part: "^".join(part.split("^")[:2])  # noqa: E731  scheme^value, not meaning
    return (value(parts[2]), value(parts[3]))


def _norm(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").split())
