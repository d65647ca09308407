"""The comparison layout and what each of its views shows.

Layout (registered under LAYOUT_ID on the scene's layout node):

    +---------------------+---------------------------+-------------------------------+
    | Red: clean CT       | adversarial CT            | clean CT + perturbation (HU)  |
    | + clean segmentation| + adversarial segmentation| (diverging, foreground)       |
    +---------------------+---------------------------+-------------------------------+
    | 3D: clean surfaces  | 3D: adversarial surfaces  | plot: Dice clean vs attacks   |
    +---------------------+---------------------------+-------------------------------+

All slice views are linked (same slice position and zoom as the user scrolls). Views are found by
their layout names, so the same code configures the desktop's views (created by its layout
manager) and :mod:`.render`'s offscreen ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import SimpleITK as sitk

LAYOUT_ID = 15601
CLEAN_SLICE, ADVERSARIAL_SLICE, PERTURBATION_SLICE = "Red", "FreqAdvAdversarial", "FreqAdvPerturbation"
CLEAN_3D, ADVERSARIAL_3D, PLOT_VIEW = "1", "FreqAdvAdversarial3D", "FreqAdvPlot"
SLICE_VIEWS = (CLEAN_SLICE, ADVERSARIAL_SLICE, PERTURBATION_SLICE)
THREED_VIEWS = (CLEAN_3D, ADVERSARIAL_3D)
# Views of Slicer's standard layouts that should keep showing the clean result.
_STANDARD_SLICES = ("Yellow", "Green")


def _slice_xml(name: str, label: str, color: str) -> str:
    return (f'<view class="vtkMRMLSliceNode" singletontag="{name}">'
            f'<property name="orientation" action="default">Axial</property>'
            f'<property name="viewlabel" action="default">{label}</property>'
            f'<property name="viewcolor" action="default">{color}</property></view>')


def _threed_xml(name: str, label: str) -> str:
    return (f'<view class="vtkMRMLViewNode" singletontag="{name}">'
            f'<property name="viewlabel" action="default">{label}</property></view>')


LAYOUT_XML = (
    '<layout type="vertical" split="true">'
    '<item splitSize="550"><layout type="horizontal">'
    f'<item>{_slice_xml(CLEAN_SLICE, "R", "#F34A33")}</item>'
    f'<item>{_slice_xml(ADVERSARIAL_SLICE, "A", "#E58B35")}</item>'
    f'<item>{_slice_xml(PERTURBATION_SLICE, "P", "#3B82C4")}</item>'
    '</layout></item>'
    '<item splitSize="450"><layout type="horizontal">'
    f'<item>{_threed_xml(CLEAN_3D, "1")}</item>'
    f'<item>{_threed_xml(ADVERSARIAL_3D, "2")}</item>'
    f'<item><view class="vtkMRMLPlotViewNode" singletontag="{PLOT_VIEW}">'
    '<property name="viewlabel" action="default">P</property></view></item>'
    '</layout></item>'
    '</layout>'
)


def slice_node_id(name: str) -> str:
    """MRML ID of the slice node of layout name ``name`` (Slicer's convention)."""
    return f"vtkMRMLSliceNode{name}"


def view_node_id(name: str) -> str:
    """MRML ID of the 3D view node of layout name ``name``."""
    return f"vtkMRMLViewNode{name}"


def register_layout(layout_node: Any, select: bool = False) -> int:
    """Add the comparison layout to a vtkMRMLLayoutNode (once); optionally switch to it."""
    if not layout_node.IsLayoutDescription(LAYOUT_ID):
        layout_node.AddLayoutDescription(LAYOUT_ID, LAYOUT_XML)
    if select:
        layout_node.SetViewArrangement(LAYOUT_ID)
    return LAYOUT_ID


def layout_node(scene: Any) -> Any:
    """The scene's layout node (the desktop has one; a headless scene gets one)."""
    node = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    if node is None:
        import slicer

        node = slicer.vtkMRMLLayoutNode()
        node.SetSingletonTag("vtkMRMLLayoutNode")
        node = scene.AddNode(node)
    return node


def create_view_nodes(scene: Any) -> None:
    """Create the layout's slice, composite, 3D and plot view nodes without any rendering (what
    the desktop's layout manager does when it shows the layout), so a saved scene opens with
    every view set up."""
    import slicer

    from .render import ensure_slice_presets

    ensure_slice_presets(scene)
    for name in SLICE_VIEWS:
        if scene.GetNodeByID(slice_node_id(name)) is None:
            logic = slicer.vtkMRMLSliceLogic()
            logic.SetMRMLScene(scene)
            node = logic.AddSliceNode(name)
            node.SetOrientation("Axial")  # the layout's "orientation" property, as the desktop applies it
            node.SetDefaultOrientation("Axial")
            logic.SetMRMLScene(None)
    for name in THREED_VIEWS:
        if scene.GetNodeByID(view_node_id(name)) is None:
            logic = slicer.vtkMRMLViewLogic()
            logic.SetMRMLScene(scene)
            logic.AddViewNode(name)
            logic.SetMRMLScene(None)
    if _plot_view(scene) is None:
        plot = slicer.vtkMRMLPlotViewNode()
        plot.SetSingletonTag(PLOT_VIEW)
        plot.SetLayoutName(PLOT_VIEW)
        scene.AddNode(plot)


def show_results(scene: Any, results: Any, attack: str | None = None, foreground_opacity: float = 0.5) -> None:
    """Put ``results`` (a ResultNodes) into the comparison views that exist in ``scene``.

    Clean CT and segmentation in Red (and Yellow/Green, for standard layouts) and the first 3D
    view; the adversarial ones in the second column; the perturbation over the clean CT in the
    third slice view; the Dice chart in the plot view. All slice views are linked and moved to
    where the attack changed the labels most."""
    nodes = results.attack_nodes(attack)
    clean_ct, adversarial_ct = results.input_volume, nodes.adversarial_volume
    layers = {
        CLEAN_SLICE: (clean_ct, None), ADVERSARIAL_SLICE: (adversarial_ct, None),
        PERTURBATION_SLICE: (clean_ct, nodes.perturbation_volume),
        **{name: (clean_ct, None) for name in _STANDARD_SLICES},
    }
    for composite in _composites(scene):
        background, foreground = layers.get(composite.GetLayoutName(), (None, None))
        if background is not None:
            _set_layers(composite, background, foreground, foreground_opacity)
        composite.SetLinkedControl(True)
    clean_views = [slice_node_id(n) for n in (CLEAN_SLICE, *_STANDARD_SLICES)] + [view_node_id(CLEAN_3D)]
    _show_only_in(results.clean_segmentation, clean_views)
    _show_only_in(nodes.adversarial_segmentation, [slice_node_id(ADVERSARIAL_SLICE), view_node_id(ADVERSARIAL_3D)])
    for other, other_nodes in results.attacks.items():
        if other_nodes is not nodes:
            other_nodes.adversarial_segmentation.GetDisplayNode().SetVisibility(False)
    if results.ground_truth is not None:
        results.ground_truth.GetDisplayNode().SetVisibility(False)  # shown on demand, not by default
    plot = _plot_view(scene)
    if plot is not None and results.dice_chart is not None:
        plot.SetPlotChartNodeID(results.dice_chart.GetID())
    if results.focus_ras is not None:
        jump_slices(scene, results.focus_ras)


def jump_slices(scene: Any, ras: tuple[float, float, float]) -> None:
    """Move every slice view to the RAS point (keeping each view's zoom and centre)."""
    import slicer

    slicer.vtkMRMLSliceNode.JumpAllSlices(scene, *ras)


def focus_point(clean: sitk.Image, adversarial: sitk.Image) -> tuple[float, float, float]:
    """RAS point to show first: on the axial slice where the attack flipped the most labels
    (else the most foreground), at the centre of that slice's foreground."""
    a = sitk.GetArrayViewFromImage(clean)  # [k, j, i]
    b = sitk.GetArrayViewFromImage(adversarial)
    changed = (a != b).sum(axis=(1, 2))
    weights = changed if changed.any() else (a > 0).sum(axis=(1, 2))
    k = int(np.argmax(weights)) if weights.any() else a.shape[0] // 2
    jj, ii = np.nonzero((a[k] > 0) | (b[k] > 0))
    j, i = (float(jj.mean()), float(ii.mean())) if len(ii) else (a.shape[1] / 2, a.shape[2] / 2)
    x, y, z = clean.TransformContinuousIndexToPhysicalPoint((i, j, float(k)))
    return (-x, -y, z)  # LPS -> RAS


def _composites(scene: Any) -> list[Any]:
    collection = scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    return [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]


def _plot_view(scene: Any) -> Any:
    collection = scene.GetNodesByClass("vtkMRMLPlotViewNode")
    for index in range(collection.GetNumberOfItems()):
        node = collection.GetItemAsObject(index)
        if node.GetLayoutName() == PLOT_VIEW:
            return node
    return None


def _set_layers(composite: Any, background: Any, foreground: Any, opacity: float) -> None:
    composite.SetBackgroundVolumeID(background.GetID())
    composite.SetForegroundVolumeID(foreground.GetID() if foreground is not None else None)
    composite.SetForegroundOpacity(opacity if foreground is not None else 0.0)
    composite.SetLabelVolumeID(None)


def _show_only_in(segmentation: Any, view_ids: list[str]) -> None:
    from .display import style_segmentation

    style_segmentation(segmentation, view_ids)
