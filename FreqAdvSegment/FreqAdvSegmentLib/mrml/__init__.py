"""The MRML bridge: where the engine's images, label maps and reports become Slicer nodes.

Imports ``slicer`` (MRML classes from the Slicer desktop or the ``slicer-core`` wheel) and VTK,
never Qt, and nothing in the engine imports it. Importing this package imports no ``slicer``
until a name is used, so the engine and its tests run without Slicer.

Modules, one job each:
    geometry        ITK (LPS) <-> Slicer (RAS) grid conversion, plain numbers
    volumes         volume node <-> SimpleITK image (and the model's tensor)
    terminology     BTCV codes, colours, the colour table and the .term.json file
    segmentations   label map <-> segmentation node (names, colours, terminology, 3D surfaces)
    display         CT windows, the perturbation's diverging colour map, segmentation styling
    tables          report.json metrics -> table node and bar chart
    results         a ``freqadv attack`` output folder -> nodes; write_scene
    views           the comparison layout and what each view shows
    scene           headless scenes; save/load .mrb and .mrml
    render          offscreen slice and 3D views to PNG
    engine_process  the engine's child process: command, progress, cancel
    logic           EngineRun: volume node in, results in the scene
    panel_controller  the module panel's states and buttons, without Qt
    dependencies    torch via PyTorch Utils, the rest via Slicer's pip; the device line from torch
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "image_from_volume_node": "volumes", "volume_node_from_image": "volumes", "model_input": "volumes",
    "segmentation_from_labels": "segmentations", "labels_from_segmentation": "segmentations",
    "show_perturbation": "display", "metrics_table": "tables", "dice_chart": "tables",
    "load_results": "results", "write_scene": "results", "ResultNodes": "results", "OutputNodes": "results",
    "new_scene": "scene", "save_scene": "scene", "load_scene": "scene",
    "register_layout": "views", "show_results": "views", "OffscreenViews": "render",
    "EngineRun": "logic", "EngineSettings": "logic", "attack": "logic", "segment": "logic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a submodule only when one of its names is first used (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
