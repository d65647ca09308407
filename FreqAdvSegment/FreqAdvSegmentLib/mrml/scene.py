"""Scenes without the Slicer application: create, save (.mrb or .mrml + files), load back.

Works on the desktop's ``slicer.mrmlScene`` too; the headless specifics are:

* segmentation closed surfaces need converter rules, which the Segmentations module registers
  on the desktop; :func:`ensure_segmentation_converters` registers them when nobody has;
* reading an .mrb needs a data IO manager with a cache directory, which :func:`new_scene` sets
  up (the desktop scene has one already).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

_BINARY_TO_SURFACE = "Binary labelmap to closed surface"
# Logics that must live as long as their scene: a colour logic removes Slicer's default colour
# tables (Grey, ...) from the scene when it is destroyed.
_KEEP_ALIVE: list[Any] = []


def ensure_segmentation_converters() -> None:
    """Register the labelmap <-> closed surface conversion rules if no one has (headless)."""
    import slicer

    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if any(rule.GetName() == _BINARY_TO_SURFACE for rule in factory.GetConverterRules()):
        return
    factory.RegisterConverterRule(slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule())
    factory.RegisterConverterRule(slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule())


def new_scene(cache_dir: str | Path | None = None) -> Any:
    """An empty vtkMRMLScene as the desktop starts one: Slicer's default colour tables, closed
    surface conversion, and .mrb reading and writing."""
    import slicer

    scene = slicer.vtkMRMLScene()
    colors = slicer.vtkMRMLColorLogic()
    colors.SetMRMLScene(scene)  # adds the default colour tables (Grey, Labels, ...)
    _KEEP_ALIVE.append(colors)
    _ensure_cache(scene, cache_dir)
    register_module_node_classes(scene)
    ensure_segmentation_converters()
    return scene


def register_module_node_classes(scene: Any) -> None:
    """Register node classes that desktop modules register (a scene cannot read, or create, a
    node of an unregistered class: reading a saved scene holding one fails as a whole)."""
    import slicer

    if not scene.IsNodeClassRegistered("vtkMRMLColorLegendDisplayNode"):
        scene.RegisterNodeClass(slicer.vtkMRMLColorLegendDisplayNode())  # the Colors module's


def save_scene(scene: Any, path: str | Path) -> Path:
    """Save every node with its data: ``.mrb`` (one zip file) or ``.mrml`` (the scene file plus a
    ``Data/`` folder beside it). Returns the path written; raises OSError on failure."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".mrb":
        with _without_zip_chatter():
            ok = scene.WriteToMRB(str(path))
    elif suffix == ".mrml":
        ok = _write_mrml_with_files(scene, path)
    else:
        raise ValueError(f"cannot save a scene as {path.name!r}: use a .mrb or .mrml file name")
    if not ok or not path.is_file():
        raise OSError(f"writing the scene to {path} failed (see the VTK messages above)")
    return path


def load_scene(path: str | Path, scene: Any = None) -> Any:
    """Read an .mrb or .mrml file into ``scene`` (default: a new scene) and return the scene."""
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"scene file not found: {path}")
    scene = scene if scene is not None else new_scene()
    _ensure_cache(scene, None)
    register_module_node_classes(scene)
    from .render import ensure_slice_presets

    ensure_slice_presets(scene)  # saved slice nodes name their orientation preset
    if path.suffix.lower() == ".mrb":
        ok = scene.ReadFromMRB(str(path))
    elif path.suffix.lower() == ".mrml":
        scene.SetURL(str(path))
        ok = scene.Import()
    else:
        raise ValueError(f"cannot load {path.name!r}: not a .mrb or .mrml scene file")
    if not ok:
        raise ValueError(f"could not read the scene {path} (see the VTK messages above)")
    return scene


# --- internals -----------------------------------------------------------------------------------


class _without_zip_chatter:
    """Slicer's zip writer reports every file it adds ("Zip: adding ...", ~40 lines per scene)
    through VTK's output window. Collect VTK's messages while writing and pass on only the
    others (real warnings and errors still reach the console, after the write)."""

    def __enter__(self) -> None:
        import vtk

        self._previous = vtk.vtkOutputWindow.GetInstance()
        self._previous.Register(None)  # keep it alive while it is not the instance
        self._collector = vtk.vtkStringOutputWindow()
        vtk.vtkOutputWindow.SetInstance(self._collector)

    def __exit__(self, *exc: object) -> None:
        import vtk

        vtk.vtkOutputWindow.SetInstance(self._previous)
        self._previous.UnRegister(None)
        kept = [block for block in self._collector.GetOutput().split("\n\n") if block.strip() and "Zip: adding" not in block]
        for block in kept:
            self._previous.DisplayText(block.strip() + "\n")


def _ensure_cache(scene: Any, cache_dir: str | Path | None) -> None:
    """ReadFromMRB unpacks into the cache manager's remote cache directory; give it one."""
    import slicer

    io_manager = scene.GetDataIOManager()
    if io_manager is None:
        io_manager = slicer.vtkDataIOManager()
        scene.SetDataIOManager(io_manager)
    cache = scene.GetCacheManager() or io_manager.GetCacheManager()
    if cache is None:
        cache = slicer.vtkCacheManager()
    if not cache.GetRemoteCacheDirectory():
        folder = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "freqadvsegment-mrml-cache"
        folder.mkdir(parents=True, exist_ok=True)
        cache.SetRemoteCacheDirectory(str(folder))
    io_manager.SetCacheManager(cache)
    scene.SetCacheManager(cache)


def _write_mrml_with_files(scene: Any, path: Path) -> bool:
    data = path.parent / "Data"
    data.mkdir(exist_ok=True)
    used: set[str] = set()
    for node in _storable_nodes(scene):
        storage = node.GetStorageNode() or _add_storage(node)
        if storage is None:
            continue
        target = data / _unique(_safe(node.GetName() or node.GetID()), used)
        storage.SetFileName(f"{target}.{storage.GetDefaultWriteFileExtension()}")
        if not storage.WriteData(node):
            raise OSError(f"could not write {node.GetName()!r} to {storage.GetFileName()}")
    scene.SetRootDirectory(str(path.parent))
    scene.SetURL(str(path))
    return bool(scene.Commit())


def _storable_nodes(scene: Any) -> list[Any]:
    """Nodes whose data must be written: skip Slicer's built-in colour tables (they ship with
    Slicer) and nodes with nothing in them."""
    nodes = []
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        if not node.IsA("vtkMRMLStorableNode") or not node.GetSaveWithScene():
            continue
        if node.IsA("vtkMRMLColorNode") and not (node.IsA("vtkMRMLColorTableNode") and node.GetType() == node.User):
            continue
        if node.IsA("vtkMRMLVolumeNode") and node.GetImageData() is None:
            continue
        nodes.append(node)
    return nodes


def _add_storage(node: Any) -> Any:
    node.AddDefaultStorageNode()
    return node.GetStorageNode()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "node"


def _unique(name: str, used: set[str]) -> str:
    candidate, n = name, 1
    while candidate.lower() in used:
        n += 1
        candidate = f"{name}_{n}"
    used.add(candidate.lower())
    return candidate
