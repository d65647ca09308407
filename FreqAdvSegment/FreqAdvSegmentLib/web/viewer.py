"""The scene behind the page: the input, the results, and what each view shows.

The page's views are trame-slicer views named like the MRML bridge's comparison layout (see
:mod:`FreqAdvSegmentLib.mrml.views`): slice views "Red" (clean), "FreqAdvAdversarial" and
"FreqAdvPerturbation", 3D view "FreqAdvAdversarial3D". So the bridge's ``show_results``
configures them exactly as it configures Slicer's desktop views, linked slices and the
perturbation's diverging colour map included; this module only loads the input, fits the views
and removes old nodes.

One exception: the clean 3D view is "FreqAdvClean3D", not Slicer's "1". trame-slicer builds
JavaScript names from view names ("1_active_view_cursor"), and one that starts with a digit
breaks the page; so the clean segmentation is also shown in that view here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import SimpleITK as sitk

from ..labels import BTCV_LABELS
from ..mrml import views as bridge_views
from ..mrml.display import show_ct
from ..mrml.segmentations import segmentation_from_labels
from ..mrml.volumes import volume_node_from_image

CLEAN_3D = "FreqAdvClean3D"
SLICE_VIEWS = bridge_views.SLICE_VIEWS
THREED_VIEWS = (CLEAN_3D, bridge_views.ADVERSARIAL_3D)
VIEW_TITLES = {
    bridge_views.CLEAN_SLICE: "clean CT + clean segmentation",
    bridge_views.ADVERSARIAL_SLICE: "adversarial CT + its segmentation",
    bridge_views.PERTURBATION_SLICE: "perturbation (HU): blue darker, red brighter",
    CLEAN_3D: "clean segmentation (3D)",
    bridge_views.ADVERSARIAL_3D: "adversarial segmentation (3D)",
}


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
        self._baseline: set[str] = set()  # the app's own nodes
        self._with_input: set[str] = set()  # ... plus the input's

    def mark_baseline(self) -> None:
        """Remember the nodes that belong to the app (views, colour tables, layout): clearing
        removes everything else. Call once the views exist."""
        self._baseline = set(_node_ids(self.scene))
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
        self._with_input = set(_node_ids(self.scene))
        self._show_input_everywhere()
        return self.input

    def show_results(self, results: Any) -> None:
        """Put ``results`` (the bridge's ResultNodes) into the views, fitted, at the slice where
        the attack changed the labels most."""
        self.remove_results()
        self.results = results
        bridge_views.show_results(self.scene, results)
        results.clean_segmentation.GetDisplayNode().AddViewNodeID(bridge_views.view_node_id(CLEAN_3D))
        self._fit_views()
        if results.focus_ras is not None:
            bridge_views.jump_slices(self.scene, results.focus_ras)

    def remove_results(self) -> None:
        """Remove the last results' nodes; the input stays on show."""
        if self.results is None:
            return
        self.results = None
        # Every node added since the input (display, storage, legend, chart series nodes too),
        # rather than a list of result nodes that would miss the ones they bring along.
        _remove_nodes_except(self.scene, self._with_input)
        self._show_input_everywhere()

    def clear(self) -> None:
        """Remove every node the app did not start with (inputs, results, their tables)."""
        self.results, self.input = None, None
        _remove_nodes_except(self.scene, self._baseline)
        self._with_input = set(self._baseline)

    # --- views ---------------------------------------------------------------------------------

    def _show_input_everywhere(self) -> None:
        volume_id = self.input.volume.GetID() if self.input else None
        for view in self.view_manager.get_slice_views():
            view.set_background_volume_id(volume_id)
            view.set_foreground_volume_id(None)
        self._fit_views()

    def _fit_views(self) -> None:
        for view in self.view_manager.get_slice_views():
            view.fit_view_to_content()
        for view in self.view_manager.get_threed_views():
            view.fit_view_to_content()
        for view in self.view_manager.get_views():
            view.schedule_render()


def comparison_layout() -> Any:
    """Two rows: clean | adversarial | perturbation slices, then clean | adversarial 3D."""
    from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

    def axial(name: str, color: str) -> Any:
        # The label is the view's singleton tag, its MRML name: the bridge finds views by it.
        return ViewLayoutDefinition.slice_view("Axial", label=name, color=color)

    def threed(name: str) -> Any:
        return ViewLayoutDefinition.threed_view(name=name, label=name)

    slices = [axial(bridge_views.CLEAN_SLICE, "#F34A33"), axial(bridge_views.ADVERSARIAL_SLICE, "#E58B35"),
              axial(bridge_views.PERTURBATION_SLICE, "#3B82C4")]
    threeds = [threed(CLEAN_3D), threed(bridge_views.ADVERSARIAL_3D)]
    return Layout(LayoutDirection.Vertical, [Layout(LayoutDirection.Horizontal, slices),
                                             Layout(LayoutDirection.Horizontal, threeds)], flex_sizes=["3", "2"])


def _linked_offset_setter(view: Any, logic: Any) -> Any:
    def set_slice_value(value: float) -> None:
        with view.trigger_modified_once():
            logic.StartSliceOffsetInteraction()
            logic.SetSliceOffset(value)
            logic.EndSliceOffsetInteraction()

    return set_slice_value


def _node_ids(scene: Any) -> list[str]:
    return [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]


def _remove_nodes_except(scene: Any, keep: set[str]) -> None:
    for node_id in [i for i in _node_ids(scene) if i not in keep]:
        node = scene.GetNodeByID(node_id)
        # Gone already (removing a node can take its display nodes along), or a singleton: those
        # are the views' own (cameras, slice nodes), even when created after the baseline.
        if node is not None and not node.GetSingletonTag():
            scene.RemoveNode(node)
