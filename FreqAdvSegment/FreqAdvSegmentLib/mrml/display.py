"""How results look: CT windows, the perturbation's diverging colour map, segmentation styling.

The perturbation (adversarial minus clean, in HU) is shown with a blue-white-red colour table
centred at zero: the window is symmetric (level 0, half-width = the 99.5th percentile of |delta|,
so a few outlier voxels do not wash out the rest), so the middle of the table is exactly
"unchanged", blue "darker" and red "brighter". Slicer treats a colour table's
alpha as on/off (0 = transparent, anything else = opaque), so the few central entries
(|delta| < 2 % of the window's half-width) are transparent: overlaid as the foreground layer on
the clean CT, unchanged voxels let the CT show through instead of washing it out in white.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PERTURBATION_COLORS_NAME = "FreqAdvSegment perturbation (blue-white-red)"
# Anchors of ColorBrewer's RdBu (as matplotlib's RdBu_r): negative -> blue, positive -> red.
_DIVERGING_ANCHORS = np.array([
    (5, 48, 97), (33, 102, 172), (67, 147, 195), (146, 197, 222), (209, 229, 240), (247, 247, 247),
    (253, 219, 199), (244, 165, 130), (214, 96, 77), (178, 24, 43), (103, 0, 31),
], dtype=float) / 255.0
_TABLE_SIZE = 256
TRANSPARENT_BELOW = 0.02  # |delta| / half-width below which the overlay is see-through
# Window/level used when a volume has no display yet: a soft-tissue CT window (HU).
CT_WINDOW, CT_LEVEL = 400.0, 40.0


def diverging_table() -> np.ndarray:
    """RGBA rows (0..1) of the perturbation colour table, t = -1 .. 1 along the window."""
    t = np.linspace(-1.0, 1.0, _TABLE_SIZE)
    anchors = np.linspace(-1.0, 1.0, len(_DIVERGING_ANCHORS))
    rgb = np.stack([np.interp(t, anchors, _DIVERGING_ANCHORS[:, c]) for c in range(3)], axis=1)
    alpha = (np.abs(t) >= TRANSPARENT_BELOW).astype(float)
    return np.concatenate([rgb, alpha[:, None]], axis=1)


def perturbation_color_node(scene: Any) -> Any:
    """The shared diverging colour table node (created once per scene)."""
    node = scene.GetFirstNodeByName(PERTURBATION_COLORS_NAME)
    if node is not None:
        return node
    node = scene.AddNewNodeByClass("vtkMRMLColorTableNode", PERTURBATION_COLORS_NAME)
    node.SetTypeToUser()
    node.SetNumberOfColors(_TABLE_SIZE)
    for index, (r, g, b, a) in enumerate(diverging_table()):
        node.SetColor(index, f"{index}", r, g, b, a)
    return node


def show_perturbation(volume: Any, limit_hu: float | None = None, legend: bool = True,
                      title: str = "perturbation (HU)") -> float:
    """Display ``volume`` (a perturbation in HU) with the diverging table, centred at zero.

    Args:
        limit_hu: half-width of the window; None uses the 99.5th percentile of the non-zero
            |values| (a few outlier voxels would otherwise wash every other colour to white).
        legend: add a colour legend to the volume's views.
        title: the legend's title (one per attack, so two legends never read the same).

    Returns:
        The half-width used (HU).
    """
    limit = limit_hu if limit_hu is not None else robust_limit(volume)
    limit = max(float(limit), 1e-3)  # a zero perturbation still needs a valid window
    display = _display(volume)
    display.SetAndObserveColorNodeID(perturbation_color_node(volume.GetScene()).GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevel(2.0 * limit, 0.0)
    display.SetInterpolate(False)  # show the blocks VAFA works in, not a blur of them
    if legend:
        _add_legend(display, title)
    return limit


def show_ct(volume: Any, like: Any = None) -> None:
    """Grey CT display: ``like``'s window/level if given, else a soft-tissue window."""
    display = _display(volume)
    display.AutoWindowLevelOff()
    source = like.GetDisplayNode() if like is not None else None
    if source is not None:
        display.SetWindowLevel(source.GetWindow(), source.GetLevel())
    else:
        display.SetWindowLevel(CT_WINDOW, CT_LEVEL)
    grey = volume.GetScene().GetNodeByID("vtkMRMLColorTableNodeGrey")
    if grey is not None:
        display.SetAndObserveColorNodeID(grey.GetID())


def style_segmentation(segmentation: Any, view_node_ids: list[str] | None = None) -> None:
    """Outline plus light fill in slices, closed surfaces in 3D; only in ``view_node_ids`` if
    given (so clean and adversarial results can sit side by side in different views)."""
    display = segmentation.GetDisplayNode()
    display.SetVisibility(True)
    display.SetVisibility2DFill(True)
    display.SetVisibility2DOutline(True)
    display.SetOpacity2DFill(0.35)
    display.SetVisibility3D(True)
    display.SetPreferredDisplayRepresentationName3D("Closed surface")
    display.RemoveAllViewNodeIDs()
    for view_id in view_node_ids or []:
        display.AddViewNodeID(view_id)


def _display(volume: Any) -> Any:
    if volume.GetDisplayNode() is None:
        volume.CreateDefaultDisplayNodes()
    return volume.GetDisplayNode()


def robust_limit(volume: Any, percentile: float = 99.5) -> float:
    """The ``percentile`` of |value| over the volume's non-zero voxels (0 if all are zero)."""
    from vtkmodules.util import numpy_support

    data = volume.GetImageData()
    if data is None or data.GetPointData().GetScalars() is None:
        raise ValueError(f"volume {volume.GetName()!r} has no voxels")
    magnitude = np.abs(numpy_support.vtk_to_numpy(data.GetPointData().GetScalars()))
    magnitude = magnitude[magnitude > 0]
    return float(np.percentile(magnitude, percentile)) if magnitude.size else 0.0


def _add_legend(display: Any, title: str) -> None:
    import slicer

    from .scene import register_module_node_classes

    register_module_node_classes(display.GetScene())  # the Colors module does this on the desktop
    legend = slicer.vtkSlicerColorLogic.AddDefaultColorLegendDisplayNode(display)
    if legend is not None:
        legend.SetTitleText(title)
        legend.SetLabelFormat("%.1f")


def legend_title(volume: Any) -> str | None:
    """The title of ``volume``'s colour legend, or None if it has none."""
    import slicer

    legend = slicer.vtkSlicerColorLogic.GetColorLegendDisplayNode(volume)
    return legend.GetTitleText() if legend is not None else None
