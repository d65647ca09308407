"""The scene behind the page: the input, the results, and what each view shows.

The page's views are trame-slicer views named like the MRML bridge's comparison layout (see
:mod:`FreqAdvSegmentLib.mrml.views`): slice views "Red" (clean), "FreqAdvAdversarial" and
"FreqAdvPerturbation", 3D view "FreqAdvAdversarial3D". So the bridge's ``show_results``
configures them exactly as it configures Slicer's desktop views, linked slices and the
perturbation's diverging colour map included. This module adds what the page needs beyond
that: the "where it broke" view (:mod:`.changes`: red where the labels changed), one attack of
several at a time, the ground truth on demand, a CT window, orientation markers and rulers,
linked 3D cameras; and it loads the input, fits the views and removes old nodes.

Until results exist only the clean slice view shows the CT: the others stay empty (the page
says "no attack result yet") rather than showing the clean CT under an adversarial title.

One exception: the clean 3D view is "FreqAdvClean3D", not Slicer's "1". trame-slicer builds
JavaScript names from view names ("1_active_view_cursor"), and one that starts with a digit
breaks the page; so the clean segmentation is also shown in that view here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import SimpleITK as sitk

from ..organs import BTCV_LABELS
from ..mrml import views as bridge_views
from ..mrml.display import show_ct
from ..mrml.segmentations import segmentation_from_labels
from ..mrml.volumes import volume_node_from_image
from .changes import change_node, changed_voxels, label_changes

CLEAN_3D = "FreqAdvClean3D"
CHANGES_SLICE = "FreqAdvChanges"
SLICE_VIEWS = (*bridge_views.SLICE_VIEWS, CHANGES_SLICE)
THREED_VIEWS = (CLEAN_3D, bridge_views.ADVERSARIAL_3D)
VIEW_TITLES = {
    bridge_views.CLEAN_SLICE: "clean CT + clean segmentation",
    bridge_views.ADVERSARIAL_SLICE: "adversarial CT + its segmentation",
    CHANGES_SLICE: "where it broke: red = label changed",
    bridge_views.PERTURBATION_SLICE: "perturbation (HU): blue darker, red brighter",
    CLEAN_3D: "clean segmentation (3D)",
    bridge_views.ADVERSARIAL_3D: "adversarial segmentation (3D)",
}
# Views that show a result: empty until one exists.
RESULT_VIEWS = (bridge_views.ADVERSARIAL_SLICE, CHANGES_SLICE, bridge_views.PERTURBATION_SLICE)
PERTURBATION_OPACITY = 0.85  # the table's centre is transparent, so the CT shows where nothing changed
CT_PRESETS = {"abdomen": (400.0, 40.0), "liver": (150.0, 60.0), "bone": (1800.0, 400.0), "lung": (1500.0, -600.0)}


@dataclass
class LoadedInput:
    """The volume on show and its optional ground truth."""

    volume: Any
    ground_truth: Any
    name: str
    size: tuple[int, ...]


class SceneViewer:
    """Loads inputs and results into ``scene`` and fits the views of ``view_manager``."""

    def __init__(self, scene: Any, view_manager: Any) -> None:
        self.scene = scene
        self.view_manager = view_manager
        self.input: LoadedInput | None = None
        self.results: Any = None
        self.attack: str | None = None  # the attack on show
        self.segmentation: Any = None  # a segment-only run's segmentation on show
        self.changes: dict[str, Any] = {}  # attack -> its label-change node
        self.changed: dict[str, int] = {}  # attack -> voxels whose label changed
        self.window = CT_PRESETS["abdomen"]
        self._baseline: set[str] = set()  # the app's own nodes
        self._with_input: set[str] = set()  # ... plus the input's
        self._camera_sync = False

    def mark_baseline(self) -> None:
        """Remember the nodes that belong to the app (views, colour tables, layout): clearing
        removes everything else. Call once the views exist."""
        self._baseline = set(node_ids(self.scene))
        self._with_input = set(self._baseline)

    def link_slice_sliders(self, app_logic: Any) -> None:
        """Make each slice view's slider move its linked views too. trame-slicer's slider sets the
        slice offset directly, and Slicer's slice linking broadcasts only interactions (as the
        mouse wheel makes), so the slider is routed through one."""
        for view in self.view_manager.get_slice_views():
            view.set_slice_value = _linked_offset_setter(view, app_logic.GetSliceLogic(view.get_view_node()))

    def load_input(self, image: sitk.Image, name: str, labels: sitk.Image | None = None,
                   label_names: Sequence[str] = BTCV_LABELS) -> LoadedInput:
        """Replace whatever is shown by ``image`` (and ``labels`` as ground truth, kept hidden:
        the engine measures against it)."""
        self.clear()
        volume = volume_node_from_image(self.scene, image, name)
        show_ct(volume)
        ground_truth = None
        if labels is not None:
            ground_truth = segmentation_from_labels(self.scene, labels, f"{name} ground truth", tuple(label_names),
                                                    volume, closed_surfaces=False)
            ground_truth.GetDisplayNode().SetVisibility(False)
        self.input = LoadedInput(volume, ground_truth, name, tuple(image.GetSize()))
        self._with_input = set(node_ids(self.scene))
        self._show_input_everywhere()
        return self.input

    def set_ground_truth(self, labels: sitk.Image, label_names: Sequence[str] = BTCV_LABELS) -> None:
        """Make ``labels`` the input's ground truth (hidden until asked for); the previous results
        go, as they were measured against another reference."""
        if self.input is None:
            raise ValueError("load a volume first")
        self.remove_results()
        if self.input.ground_truth is not None:
            self.scene.RemoveNode(self.input.ground_truth)
        truth = segmentation_from_labels(self.scene, labels, f"{self.input.name} ground truth", tuple(label_names),
                                         self.input.volume, closed_surfaces=False)
        truth.GetDisplayNode().SetVisibility(False)
        self.input.ground_truth = truth
        self._with_input = set(node_ids(self.scene))

    def show_segmentation(self, segmentation: Any, new_nodes: set[str] | None = None) -> None:
        """Show a segment-only run's segmentation node in the clean views (no attack views)."""
        from ..mrml.display import style_segmentation

        keep = self._with_input | (new_nodes if new_nodes is not None else set(node_ids(self.scene)))
        _remove_nodes_except(self.scene, keep)
        self.results, self.attack, self.changes, self.changed = None, None, {}, {}
        self._show_input_everywhere()
        self.segmentation = segmentation
        style_segmentation(segmentation, [bridge_views.slice_node_id(bridge_views.CLEAN_SLICE),
                                          bridge_views.view_node_id(CLEAN_3D)])
        self._fit_views()

    def show_results(self, results: Any, new_nodes: set[str] | None = None) -> None:
        """Put ``results`` (the bridge's ResultNodes) into the views, fitted, at the slice where
        the attack changed the labels most. ``new_nodes``: ids of the nodes that loading them
        added (kept while the previous results' nodes are removed); None = every node."""
        if self.results is not None or self.segmentation is not None:
            keep = self._with_input | (new_nodes if new_nodes is not None else set(node_ids(self.scene)))
            _remove_nodes_except(self.scene, keep)
        self.results, self.changes, self.changed, self.segmentation = results, {}, {}, None
        for label in results.attacks:
            self._add_changes(label)
        self.show_attack(None)
        self._fit_views()
        if results.focus_ras is not None:
            bridge_views.jump_slices(self.scene, results.focus_ras)

    def show_attack(self, label: str | None) -> None:
        """Show attack ``label`` of the results (None: the first) in the result views."""
        results = self.results
        if results is None:
            return
        nodes = results.attack_nodes(label)
        self.attack = nodes.method
        bridge_views.show_results(self.scene, results, self.attack, foreground_opacity=PERTURBATION_OPACITY)
        results.clean_segmentation.GetDisplayNode().AddViewNodeID(bridge_views.view_node_id(CLEAN_3D))
        # The "where it broke" view: the clean CT under this attack's red label-change map.
        views = self._slice_views()
        views[CHANGES_SLICE].set_background_volume_id(results.input_volume.GetID())
        views[CHANGES_SLICE].set_foreground_volume_id(None)
        composite = self.scene.GetNodeByID(f"vtkMRMLSliceCompositeNode{CHANGES_SLICE}")
        if composite is not None:
            composite.SetLabelVolumeID(self.changes[self.attack].GetID())
            composite.SetLabelOpacity(1.0)
        self.set_window(*self.window)
        for view in self.view_manager.get_views():
            view.schedule_render()

    def set_ground_truth_visible(self, visible: bool) -> None:
        """Outline the ground truth (if the input has one) in the clean slice view."""
        truth = self.input.ground_truth if self.input else None
        if truth is None:
            return
        display = truth.GetDisplayNode()
        display.RemoveAllViewNodeIDs()
        display.AddViewNodeID(bridge_views.slice_node_id(bridge_views.CLEAN_SLICE))
        display.SetVisibility2DFill(False)
        display.SetVisibility2DOutline(True)
        display.SetSliceIntersectionThickness(2)
        display.SetVisibility(bool(visible))
        self._slice_views()[bridge_views.CLEAN_SLICE].schedule_render()

    def set_window(self, window: float, level: float) -> None:
        """The grey window (HU) of the clean and every adversarial CT: the same for all, so a
        difference on screen is a difference in the volumes."""
        self.window = (float(window), float(level))
        volumes = [self.input.volume] if self.input else []
        if self.results is not None:
            volumes += [a.adversarial_volume for a in self.results.attacks.values()]
        for volume in volumes:
            display = volume.GetDisplayNode()
            if display is not None:
                display.AutoWindowLevelOff()
                display.SetWindowLevel(*self.window)
        for view in self.view_manager.get_slice_views():
            view.schedule_render()

    def remove_results(self) -> None:
        """Remove the last results' nodes; the input stays on show."""
        if self.results is None and self.segmentation is None:
            return
        self.results, self.attack, self.changes, self.changed, self.segmentation = None, None, {}, {}, None
        # Every node added since the input (display, storage, legend, chart series nodes too),
        # rather than a list of result nodes that would miss the ones they bring along.
        _remove_nodes_except(self.scene, self._with_input)
        self._show_input_everywhere()

    def segment_labels(self) -> list[dict[str, Any]]:
        """The segments of the clean segmentation on show: name and colour (CSS), in label order."""
        node = self.results.clean_segmentation if self.results is not None else self.segmentation
        if node is None:
            return []
        segmentation = node.GetSegmentation()
        items = []
        for index in range(segmentation.GetNumberOfSegments()):
            segment = segmentation.GetNthSegment(index)
            r, g, b = segment.GetColor()
            items.append({"name": segment.GetName(), "color": f"rgb({r * 255:.0f}, {g * 255:.0f}, {b * 255:.0f})"})
        return items

    # --- views ---------------------------------------------------------------------------------

    def decorate_views(self) -> None:
        """Orientation axes (R/A/S) and a scale bar in every view; 3D cameras linked."""
        import slicer

        node_class = slicer.vtkMRMLAbstractViewNode
        for view in self.view_manager.get_views():
            view.set_orientation_marker(node_class.OrientationMarkerTypeAxes, node_class.OrientationMarkerSizeSmall)
            view.set_ruler(node_class.RulerTypeThin, node_class.RulerColorWhite)
        self.link_cameras()

    def link_cameras(self) -> None:
        """Turning or zooming one 3D view turns the other the same way (the slices are linked by
        Slicer's own linked control; the cameras are copied here)."""
        views = list(self.view_manager.get_threed_views())
        for view in views:
            others = [v for v in views if v is not view]
            camera = view.renderer().GetActiveCamera()
            camera.AddObserver("ModifiedEvent", lambda caller, _event, o=others: self._copy_camera(caller, o))

    def _copy_camera(self, camera: Any, others: list[Any]) -> None:
        if self._camera_sync:
            return
        self._camera_sync = True  # the copies' own Modified events must not copy back
        try:
            for view in others:
                target = view.renderer().GetActiveCamera()
                target.SetPosition(camera.GetPosition())
                target.SetFocalPoint(camera.GetFocalPoint())
                target.SetViewUp(camera.GetViewUp())
                target.SetParallelScale(camera.GetParallelScale())
                target.SetViewAngle(camera.GetViewAngle())
                view.renderer().ResetCameraClippingRange()
                view.schedule_render()
        finally:
            self._camera_sync = False

    def _add_changes(self, label: str) -> None:
        files, folder = self.results.report["files"], self.results.folder
        changes = label_changes(folder, files, label)
        node = change_node(self.scene, changes, f"{label} label changes")
        node.SetAndObserveTransformNodeID(self.results.input_volume.GetTransformNodeID())
        self.changes[label], self.changed[label] = node, changed_voxels(changes)

    def _slice_views(self) -> dict[str, Any]:
        return {v.get_singleton_tag(): v for v in self.view_manager.get_slice_views()}

    def clear(self) -> None:
        """Remove every node the app did not start with (inputs, results, their tables)."""
        self.results, self.input, self.segmentation = None, None, None
        _remove_nodes_except(self.scene, self._baseline)
        self._with_input = set(self._baseline)

    # --- views ---------------------------------------------------------------------------------

    def _show_input_everywhere(self) -> None:
        volume_id = self.input.volume.GetID() if self.input else None
        for name, view in self._slice_views().items():
            # A result view stays empty until there is a result (no clean CT under its title).
            view.set_background_volume_id(None if name in RESULT_VIEWS else volume_id)
            view.set_foreground_volume_id(None)
            composite = self.scene.GetNodeByID(f"vtkMRMLSliceCompositeNode{name}")
            if composite is not None:
                composite.SetLabelVolumeID(None)
        self._fit_views()

    def _fit_views(self) -> None:
        for view in self.view_manager.get_slice_views():
            view.fit_view_to_content()
        for view in self.view_manager.get_threed_views():
            view.fit_view_to_content()
        for view in self.view_manager.get_views():
            view.schedule_render()


def comparison_layout() -> Any:
    """Two rows: clean | adversarial | where it broke (slices), then perturbation (slice) |
    clean 3D | adversarial 3D."""
    from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

    def axial(name: str, color: str) -> Any:
        # The label is the view's singleton tag, its MRML name: the bridge finds views by it.
        return ViewLayoutDefinition.slice_view("Axial", label=name, color=color)

    def threed(name: str) -> Any:
        return ViewLayoutDefinition.threed_view(name=name, label=name)

    top = [axial(bridge_views.CLEAN_SLICE, "#F34A33"), axial(bridge_views.ADVERSARIAL_SLICE, "#E58B35"),
           axial(CHANGES_SLICE, "#D62728")]
    bottom = [axial(bridge_views.PERTURBATION_SLICE, "#3B82C4"), threed(CLEAN_3D), threed(bridge_views.ADVERSARIAL_3D)]
    return Layout(LayoutDirection.Vertical, [Layout(LayoutDirection.Horizontal, top),
                                             Layout(LayoutDirection.Horizontal, bottom)], flex_sizes=["1", "1"])


def _linked_offset_setter(view: Any, logic: Any) -> Any:
    def set_slice_value(value: float) -> None:
        with view.trigger_modified_once():
            logic.StartSliceOffsetInteraction()
            logic.SetSliceOffset(value)
            logic.EndSliceOffsetInteraction()

    return set_slice_value


def node_ids(scene: Any) -> list[str]:
    return [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]


def _remove_nodes_except(scene: Any, keep: set[str]) -> None:
    for node_id in [i for i in node_ids(scene) if i not in keep]:
        node = scene.GetNodeByID(node_id)
        # Gone already (removing a node can take its display nodes along), or a singleton: those
        # are the views' own (cameras, slice nodes), even when created after the baseline.
        if node is not None and not node.GetSingletonTag():
            scene.RemoveNode(node)
