"""The comparison layout (clean | attack A | attack B) and what each of its views shows.

The views are Slicer's standard ones, so a saved scene opens right in any Slicer, with or
without this extension:

    +------------------------+--------------------------+--------------------------+
    | Red: clean CT          | Green: attack A's CT     | Yellow: attack B's CT    |
    |   + clean segmentation |   + its segmentation     |   + its segmentation     |
    +------------------------+--------------------------+--------------------------+
    | Red+: clean CT         | Green+: clean CT + A's   | Yellow+: same for B      |
    |   + ground truth       |   perturbation (HU) and  |                          |
    |                        |   where it broke         |                          |
    +------------------------+--------------------------+--------------------------+
    | 3D 1: clean surfaces   | 3D 2: where A broke      | 3D 3: where B broke      |  plot: Dice
    +------------------------+--------------------------+--------------------------+

On the desktop the whole grid is the layout LAYOUT_ID (registered from LAYOUT_XML); a saved
scene is set to Slicer's built-in "three over three" layout (the two slice rows), which every
Slicer knows, and keeps the full layout's XML in the layout node's LAYOUT_ATTRIBUTE, from which
the extension (or one line in the Python console) restores it. Every slice view is linked to
the others (one view group, linked control), every 3D view's camera to the others, and each
view carries its own name and colour, so nothing depends on the layout that created it.

Views are found by their layout names, so the same code configures the desktop's views
(created by its layout manager) and :mod:`.render`'s offscreen ones.

The desktop made Green (coronal) and Yellow (sagittal) before any module ran, and Red+/Green+/
Yellow+ (axial/coronal/sagittal) once the 3x3 layout was shown; Slicer's layout logic applies a
layout's ``action="default"`` properties only to the view nodes it creates. So the layout sets
orientation with ``action="relayout"`` (applied whenever the layout is shown) and
:func:`show_results` sets it on every comparison slice view again before fitting.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import SimpleITK as sitk

LAYOUT_ID = 15601
SAVED_LAYOUT_ID = 21  # vtkMRMLLayoutNode.SlicerLayoutThreeOverThreeView: built into every Slicer
LAYOUT_ATTRIBUTE = "FreqAdvSegment.LayoutDescription"
LAYOUT_ID_ATTRIBUTE = "FreqAdvSegment.LayoutID"
CLEAN_SLICE, TRUTH_SLICE = "Red", "Red+"
A_SLICE, A_PERTURBATION_SLICE, A_3D = "Green", "Green+", "2"  # attack A
B_SLICE, B_PERTURBATION_SLICE, B_3D = "Yellow", "Yellow+", "3"  # attack B
CLEAN_3D = "1"
PLOT_VIEW = "PlotView1"
# Per column: (CT slice view, perturbation slice view, 3D view).
COLUMNS = ((CLEAN_SLICE, TRUTH_SLICE, CLEAN_3D), (A_SLICE, A_PERTURBATION_SLICE, A_3D), (B_SLICE, B_PERTURBATION_SLICE, B_3D))
# Attack A's views under names a client can use where Slicer's cannot be: trame-slicer (the web
# viewer) makes JavaScript identifiers of view names, which "Green+" and "2" are not. A scene
# whose views carry these names gets attack A in them (see _columns).
ADVERSARIAL_SLICE, PERTURBATION_SLICE, ADVERSARIAL_3D = "FreqAdvAdversarial", "FreqAdvPerturbation", "FreqAdvAdversarial3D"
SAFE_NAMES = {A_SLICE: ADVERSARIAL_SLICE, A_PERTURBATION_SLICE: PERTURBATION_SLICE, A_3D: ADVERSARIAL_3D}
SLICE_VIEWS = tuple(name for column in COLUMNS for name in column[:2])
THREED_VIEWS = tuple(column[2] for column in COLUMNS)
# Slicer's own colours for its views (the slice controllers' bars), so users see familiar ones.
VIEW_COLORS = {"Red": "#F34A33", "Red+": "#F9A99F", "Green": "#6EB04B", "Green+": "#C6E0B8",
               "Yellow": "#EDD54C", "Yellow+": "#F6E9A2", "1": "#7483E9", "2": "#7483E9", "3": "#7483E9"}
ORIENTATION = "Axial"  # every comparison slice view: side by side, the same plane
MAX_COMPARED = len(COLUMNS) - 1  # attacks side by side; others are shown with show_results(attack=...)


def _slice_xml(name: str) -> str:
    return (f'<view class="vtkMRMLSliceNode" singletontag="{name}">'
            f'<property name="orientation" action="relayout">{ORIENTATION}</property>'
            f'<property name="viewlabel" action="default">{name}</property>'
            f'<property name="viewcolor" action="default">{VIEW_COLORS[name]}</property>'
            '<property name="viewgroup" action="default">0</property></view>')


def _threed_xml(name: str) -> str:
    return (f'<view class="vtkMRMLViewNode" singletontag="{name}">'
            f'<property name="viewlabel" action="default">{name}</property>'
            '<property name="viewgroup" action="default">0</property></view>')


def _row(views: list[str]) -> str:
    return '<layout type="horizontal">' + "".join(f"<item>{v}</item>" for v in views) + "</layout>"


_PLOT_XML = (f'<view class="vtkMRMLPlotViewNode" singletontag="{PLOT_VIEW}">'
             '<property name="viewlabel" action="default">Dice</property></view>')
LAYOUT_XML = (
    '<layout type="vertical" split="true">'
    f'<item splitSize="400">{_row([_slice_xml(c[0]) for c in COLUMNS])}</item>'
    f'<item splitSize="400">{_row([_slice_xml(c[1]) for c in COLUMNS])}</item>'
    f'<item splitSize="350">{_row([_threed_xml(c[2]) for c in COLUMNS] + [_PLOT_XML])}</item>'
    '</layout>'
)


def slice_node_id(name: str) -> str:
    """MRML ID of the slice node of layout name ``name`` (Slicer's convention)."""
    return f"vtkMRMLSliceNode{name}"


def view_node_id(name: str) -> str:
    """MRML ID of the 3D view node of layout name ``name``."""
    return f"vtkMRMLViewNode{name}"


def register_layout(layout_node: Any, select: bool = False) -> int:
    """Add the comparison layout to a vtkMRMLLayoutNode (once; an older description of the
    same ID is replaced); optionally switch to it."""
    if not layout_node.IsLayoutDescription(LAYOUT_ID):
        layout_node.AddLayoutDescription(LAYOUT_ID, LAYOUT_XML)
    elif layout_node.GetLayoutDescription(LAYOUT_ID) != LAYOUT_XML:
        layout_node.SetLayoutDescription(LAYOUT_ID, LAYOUT_XML)
    if select:
        layout_node.SetViewArrangement(LAYOUT_ID)
    return LAYOUT_ID


def register_desktop_layout(layout_manager: Any) -> bool:
    """Register the comparison layout with the desktop's layout manager; False (nothing done)
    when there is none (Slicer started with --no-main-window, as its generic tests do)."""
    if layout_manager is None:
        return False
    register_layout(layout_manager.layoutLogic().GetLayoutNode())
    return True


def store_layout_for_saving(layout_node: Any) -> None:
    """Before saving a scene: Slicer's layout node does not write layout descriptions, so keep
    the comparison layout's XML as an attribute (what :func:`restore_saved_layout` reads) and
    set the arrangement to a built-in layout with the same views, which any Slicer shows."""
    layout_node.SetAttribute(LAYOUT_ATTRIBUTE, LAYOUT_XML)
    layout_node.SetAttribute(LAYOUT_ID_ATTRIBUTE, str(LAYOUT_ID))
    if not layout_node.IsLayoutDescription(SAVED_LAYOUT_ID):  # a headless scene knows no built-in layouts
        layout_node.AddLayoutDescription(SAVED_LAYOUT_ID, builtin_layout_description(SAVED_LAYOUT_ID))
    layout_node.SetViewArrangement(SAVED_LAYOUT_ID)


def builtin_layout_description(layout_id: int) -> str:
    """The XML of one of Slicer's built-in layouts, from a layout logic on a throwaway scene."""
    import slicer

    from .render import ensure_slice_presets

    scene = slicer.vtkMRMLScene()
    ensure_slice_presets(scene)  # the logic makes the default layout's slice views: they need them
    logic = slicer.vtkMRMLLayoutLogic()
    logic.SetMRMLScene(scene)
    try:
        return logic.GetLayoutNode().GetLayoutDescription(layout_id)
    finally:
        logic.SetMRMLScene(None)


def restore_saved_layout(layout_node: Any) -> bool:
    """After loading a scene written by :func:`store_layout_for_saving`: register its stored
    layout and switch to it. False (nothing done) for other scenes."""
    xml, layout_id = layout_node.GetAttribute(LAYOUT_ATTRIBUTE), layout_node.GetAttribute(LAYOUT_ID_ATTRIBUTE)
    if not xml or not layout_id:
        return False
    if layout_node.IsLayoutDescription(int(layout_id)):
        layout_node.SetLayoutDescription(int(layout_id), xml)
    else:
        layout_node.AddLayoutDescription(int(layout_id), xml)
    layout_node.SetViewArrangement(int(layout_id))
    return True


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
    """Create the layout's slice, composite, 3D, camera and plot view nodes without any rendering
    (what the desktop's layout manager does when it shows the layout), so a saved scene opens
    with every view set up."""
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
    label_views(scene)


def _columns(scene: Any) -> list[tuple[str, str, str]]:
    """COLUMNS as this scene names its views: attack A's safe names where the scene has those
    views and not Slicer's."""
    present = {c.GetLayoutName() for c in _composites(scene)}
    collection = scene.GetNodesByClass("vtkMRMLViewNode")
    present |= {collection.GetItemAsObject(i).GetLayoutName() for i in range(collection.GetNumberOfItems())}
    rename = {std: safe for std, safe in SAFE_NAMES.items() if safe in present and std not in present}
    return [tuple(rename.get(name, name) for name in column) for column in COLUMNS]


def label_views(scene: Any, attack_labels: tuple[str, ...] = ("attack A", "attack B")) -> None:
    """Name and colour every view by what it shows ("clean", "vafa", "vafa HU", ...; never a
    bare R/A/P that reads as a direction), one view group, linked control for slices and 3D."""
    names = ("clean", *attack_labels[:MAX_COMPARED], *(("-",) * MAX_COMPARED))
    for column, (standard, actual) in enumerate(zip(COLUMNS, _columns(scene))):
        title = names[column]
        labels = (title, "truth" if column == 0 else f"{title} HU")
        for std, name, label in zip(standard[:2], actual[:2], labels):
            node = scene.GetNodeByID(slice_node_id(name))
            if node is not None:
                _name_view(node, label, VIEW_COLORS[std])
        node = scene.GetNodeByID(view_node_id(actual[2]))
        if node is not None:
            _name_view(node, f"{title} 3D", VIEW_COLORS[standard[2]])


def _name_view(node: Any, label: str, color: str) -> None:
    node.SetLayoutLabel(label)
    node.SetLayoutColor(*(int(color[i:i + 2], 16) / 255.0 for i in (1, 3, 5)))
    node.SetViewGroup(0)
    if node.IsA("vtkMRMLViewNode"):  # slice views link through their composite nodes
        node.SetLinkedControl(True)


def show_results(scene: Any, results: Any, attack: str | None = None, foreground_opacity: float = 0.5,
                 attacks: list[str] | None = None) -> None:
    """Put ``results`` (a ResultNodes) into the comparison views that exist in ``scene``.

    Clean CT and segmentation in the first column (ground truth below it); the first two
    attacks (or ``attacks``, or the one ``attack``) in the next columns: adversarial CT and
    segmentation, then the perturbation over the clean CT with where-it-broke outlines, then
    the 3D view of where it broke; the Dice chart in the plot view. Slice views are linked and
    moved to where the attack changed the labels most; fields of view and 3D cameras fit the
    CT."""
    shown = attacks or ([attack] if attack else list(results.attacks)[:MAX_COMPARED])
    compared = [results.attack_nodes(a) for a in shown][:MAX_COMPARED]
    clean_ct = results.input_volume
    columns = _columns(scene)
    layers = {name: (clean_ct, None) for column in columns for name in column[:2]}
    for (ct_view, perturbation_view, _), nodes in zip(columns[1:], compared):
        layers[ct_view] = (nodes.adversarial_volume, None)
        layers[perturbation_view] = (clean_ct, nodes.perturbation_volume)
    for composite in _composites(scene):
        background, foreground = layers.get(composite.GetLayoutName(), (None, None))
        if background is not None:
            _set_layers(composite, background, foreground, foreground_opacity)
        composite.SetLinkedControl(True)
    label_views(scene, tuple(n.method for n in compared))
    _show_only_in(results.clean_segmentation, [slice_node_id(CLEAN_SLICE), view_node_id(CLEAN_3D)])
    for nodes in results.attacks.values():
        for segmentation in (nodes.adversarial_segmentation, nodes.changes_segmentation):
            if segmentation is not None:
                _show_only_in(segmentation, [])
                segmentation.GetDisplayNode().SetVisibility(False)
    for (ct_view, perturbation_view, threed_view), nodes in zip(columns[1:], compared):
        _show_only_in(nodes.adversarial_segmentation, [slice_node_id(ct_view)])
        if nodes.changes_segmentation is not None:
            _show_only_in(nodes.changes_segmentation, [slice_node_id(perturbation_view), view_node_id(threed_view)])
            nodes.changes_segmentation.GetDisplayNode().SetVisibility2DFill(False)
        else:
            nodes.adversarial_segmentation.GetDisplayNode().AddViewNodeID(view_node_id(threed_view))
    if results.ground_truth is not None and results.ground_truth.GetDisplayNode() is not None:
        _show_only_in(results.ground_truth, [slice_node_id(TRUTH_SLICE)])
    plot = _plot_view(scene)
    if plot is not None and results.dice_chart is not None:
        plot.SetPlotChartNodeID(results.dice_chart.GetID())
    orient_views(scene)
    fit_views(scene, clean_ct)
    if results.focus_ras is not None:
        jump_slices(scene, results.focus_ras)


def orient_views(scene: Any, orientation: str = ORIENTATION) -> None:
    """Every comparison slice view that exists set to ``orientation`` (the desktop's Green and
    Yellow are coronal and sagittal until told otherwise, see the module docstring)."""
    for name in (n for column in _columns(scene) for n in column[:2]):
        node = scene.GetNodeByID(slice_node_id(name))
        if node is not None and node.GetOrientation() != orientation:
            node.SetOrientation(orientation)


def fit_views(scene: Any, volume: Any) -> None:
    """Every slice view's field of view and every 3D view's camera fitted to ``volume``'s
    bounds (a whole 366 mm body, not Slicer's default 250 mm; 3D surfaces not cut off)."""
    bounds = [0.0] * 6
    volume.GetRASBounds(bounds)
    lo, hi = np.array(bounds[0::2]), np.array(bounds[1::2])
    if not np.all(np.isfinite(lo)) or np.any(hi < lo):
        return
    columns = _columns(scene)
    for name in (n for column in columns for n in column[:2]):
        node = scene.GetNodeByID(slice_node_id(name))
        if node is not None:
            fit_slice(node, lo, hi)
    for name in (column[2] for column in columns):
        if scene.GetNodeByID(view_node_id(name)) is not None:
            fit_camera(camera_node(scene, name), lo, hi)


def fit_slice(node: Any, lo: np.ndarray, hi: np.ndarray, margin: float = 1.05) -> None:
    """A slice node of any orientation centred on the box [lo, hi] (RAS, mm) showing all of it:
    the box's corners projected on the slice's own x and y axes give the extents to show."""
    matrix = node.GetSliceToRAS()
    axes = np.array([[matrix.GetElement(row, column) for row in range(3)] for column in range(2)])  # [2, 3]
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])  # [8, 3]
    projected = corners @ axes.T  # [8, 2]: each corner in slice x, y (mm)
    width, height = (projected.max(axis=0) - projected.min(axis=0)) * margin
    columns, rows, _ = node.GetDimensions()
    aspect = rows / columns if columns else 1.0
    fov_x = max(width, height / aspect)
    node.SetFieldOfView(fov_x, fov_x * aspect, node.GetFieldOfView()[2])
    node.SetXYZOrigin(0.0, 0.0, 0.0)
    centre = (lo + hi) / 2
    node.JumpSliceByCentering(*centre)


def camera_node(scene: Any, view_name: str) -> Any:
    """The camera of 3D view ``view_name`` (created if the scene has none: saved scenes need
    one per view, else the desktop makes a default one looking at a 250 mm box)."""
    collection = scene.GetNodesByClass("vtkMRMLCameraNode")
    for index in range(collection.GetNumberOfItems()):
        camera = collection.GetItemAsObject(index)
        if camera.GetLayoutName() == view_name:
            return camera
    camera = scene.AddNewNodeByClass("vtkMRMLCameraNode", f"Camera {view_name}")
    camera.SetLayoutName(view_name)
    return camera


def fit_camera(camera: Any, lo: np.ndarray, hi: np.ndarray) -> None:
    """Look at the box [lo, hi] from the front (anterior, head up), far enough back that its
    bounding sphere fits the camera's view angle."""
    centre = (lo + hi) / 2
    radius = float(np.linalg.norm(hi - lo)) / 2
    angle = camera.GetViewAngle() or 30.0
    distance = radius / math.sin(math.radians(angle) / 2)
    camera.SetFocalPoint(*centre)
    camera.SetPosition(centre[0], centre[1] + distance, centre[2])
    camera.SetViewUp(0.0, 0.0, 1.0)
    camera.GetCamera().SetClippingRange(max(distance - 2 * radius, 1.0), distance + 2 * radius)


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
