"""Load a ``freqadv attack`` output folder into a scene, and write it as a Slicer scene file.

    results = load_results(scene, "out/", input_volume=ct_node)
    results.adversarial_volume, results.perturbation_volume            # single-attack shortcuts
    results.clean_segmentation, results.adversarial_segmentation, results.metrics_table
    write_scene("out/", input_path="ct.nii.gz")     # -> out/scene.mrb, opens with all results

The folder is what FreqAdvSegmentLib.job.pipeline.write_outputs writes: report.json (whose "files"
map names every volume), clean_labels.*, and per attack <name>/adversarial.*,
<name>/perturbation_hu.*, <name>/adversarial_labels.*. Every volume is on the input's grid.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from ..files.images import read_image
from ..job.label_changes import written_change_maps
from .changes import change_counts, label_change_image, label_change_segmentation
from .display import show_ct, show_perturbation, style_segmentation
from .segmentations import segmentation_from_labels
from .tables import dice_chart, metrics_table
from .volumes import volume_node_from_image

SCENE_FILE = "scene.mrb"
# Every node a run creates carries this attribute (its role, e.g. "vafa/adversarial"): the
# module never offers such a node as an input, and refills only such nodes on the next run.
ROLE_ATTRIBUTE = "FreqAdvSegment.Role"


@dataclass
class AttackNodes:
    """One attack's nodes."""

    method: str
    adversarial_volume: Any
    perturbation_volume: Any
    adversarial_segmentation: Any
    perturbation_limit_hu: float
    changes_segmentation: Any = None  # where it broke: "<organ> lost" segments
    changed_voxels: dict[str, int] = field(default_factory=dict)  # segment name -> voxels


@dataclass
class OutputNodes:
    """Existing nodes to fill instead of creating new ones (any may be None = create)."""

    adversarial_volume: Any = None
    perturbation_volume: Any = None
    clean_segmentation: Any = None
    adversarial_segmentation: Any = None
    metrics_table: Any = None


@dataclass
class ResultNodes:
    """Everything one engine run put into the scene."""

    folder: Path
    report: dict[str, Any]
    input_volume: Any
    clean_segmentation: Any
    attacks: dict[str, AttackNodes] = field(default_factory=dict)
    metrics_table: Any = None
    dice_chart: Any = None
    ground_truth: Any = None
    focus_ras: tuple[float, float, float] | None = None

    def attack_nodes(self, method: str | None = None) -> AttackNodes:
        """The nodes of attack ``method``; None gives the first attack (in report order)."""
        if method is None and self.attacks:
            return next(iter(self.attacks.values()))
        if method not in self.attacks:
            raise KeyError(f"no attack {method!r} in these results; they hold: {', '.join(self.attacks) or 'none'}")
        return self.attacks[method]

    # Shortcuts to the first attack's nodes (the only one for a module or console run).
    @property
    def adversarial_volume(self) -> Any:
        return self.attack_nodes().adversarial_volume

    @property
    def perturbation_volume(self) -> Any:
        return self.attack_nodes().perturbation_volume

    @property
    def adversarial_segmentation(self) -> Any:
        return self.attack_nodes().adversarial_segmentation

    def segmentations(self) -> list[Any]:
        """Every segmentation node of these results (for building their 3D surfaces)."""
        return [n for n in self.node_roles().values() if n.IsA("vtkMRMLSegmentationNode")]

    def node_roles(self) -> dict[str, Any]:
        """Role -> node for every node made for these results: ``clean_segmentation``,
        ``metrics_table``, ``dice_chart`` and ``<attack>/adversarial``, ``/perturbation``,
        ``/segmentation``, ``/changes`` (what the parameter node remembers for the next run)."""
        roles = {"clean_segmentation": self.clean_segmentation, "metrics_table": self.metrics_table, "dice_chart": self.dice_chart}
        for label, a in self.attacks.items():
            roles.update({f"{label}/adversarial": a.adversarial_volume, f"{label}/perturbation": a.perturbation_volume,
                          f"{label}/segmentation": a.adversarial_segmentation, f"{label}/changes": a.changes_segmentation})
        return {role: node for role, node in roles.items() if node is not None}


def read_report(folder: str | Path) -> dict[str, Any]:
    """report.json of an output folder; FileNotFoundError naming the folder if absent."""
    path = Path(folder) / "report.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a freqadv output folder: it has no report.json")
    return json.loads(path.read_text(encoding="utf-8"))


def load_results(
    scene: Any,
    folder: str | Path,
    input_volume: Any = None,
    ground_truth: Any = None,
    name_prefix: str | None = None,
    outputs: OutputNodes | None = None,
    reuse: dict[str, Any] | None = None,
    closed_surfaces: bool = True,
) -> ResultNodes:
    """Create (or refill) nodes for every result in ``folder``; the input nodes are only read.

    Args:
        scene: the scene to load into.
        folder: a ``freqadv attack`` output folder.
        input_volume: the clean CT node the results belong to. None rebuilds it from the first
            attack as adversarial - perturbation (exact up to float rounding), named so.
        ground_truth: the ground-truth segmentation node, if one was used (kept for display).
        name_prefix: start of new node names (default: the input volume's name, else the
            folder's).
        outputs: existing nodes to fill (only for a folder with one attack); ValueError if one
            of them is an input.
        reuse: role -> node of an earlier run (``ResultNodes.node_roles()``, as the module's
            parameter node remembers them); a node is refilled only if an earlier run made it
            for that role, else a new node is made: an input is never overwritten.
        closed_surfaces: build the 3D surfaces now; False leaves them to the caller (the module
            builds one segmentation's per timer tick: ``ResultNodes.segmentations()``).
    """
    folder = Path(folder)
    report = read_report(folder)
    files, labels = report["files"], tuple(report["model"]["spec"]["label_names"])
    protected = [n for n in (input_volume, ground_truth) if n is not None]
    targets = _targets(outputs, reuse, report, protected)
    default_prefix = input_volume.GetName() if input_volume is not None else folder.resolve().name
    prefix = name_prefix if name_prefix is not None else default_prefix
    if input_volume is None:
        input_volume = _rebuilt_input(scene, folder, report)
    clean_labels = read_image(folder / files["clean_labels"])
    clean = segmentation_from_labels(scene, clean_labels, f"{prefix} clean segmentation", labels, input_volume,
                                     targets.get("clean_segmentation"), closed_surfaces)
    results = ResultNodes(folder, report, input_volume, clean, ground_truth=ground_truth)
    adversarial_labels = {}
    for method in report["attacks"]:
        results.attacks[method], adversarial_labels[method] = _load_attack(scene, folder, files, method, labels, input_volume,
                                                                           prefix, targets, closed_surfaces)
    results.metrics_table = metrics_table(scene, report, f"{prefix} metrics", targets.get("metrics_table"))
    results.dice_chart = dice_chart(scene, results.metrics_table, f"{prefix} Dice", targets.get("dice_chart"))
    if adversarial_labels:
        from .views import focus_point

        results.focus_ras = focus_point(clean_labels, next(iter(adversarial_labels.values())))
    style_segmentation(clean)
    for role, node in results.node_roles().items():
        node.SetAttribute(ROLE_ATTRIBUTE, role)
    group_in_folders(scene, results, f"{prefix} FreqAdvSegment results")
    return results


def _targets(outputs: OutputNodes | None, reuse: dict[str, Any] | None, report: dict[str, Any], protected: list[Any]) -> dict[str, Any]:
    """Role -> existing node to refill. Explicit ``outputs`` naming an input is an error;
    remembered nodes that are inputs, or were not made by a run for that role, are dropped."""
    targets: dict[str, Any] = {}
    if outputs is not None and outputs != OutputNodes():
        if len(report["attacks"]) != 1:
            raise ValueError("output nodes can only be given for results with exactly one attack")
        method = next(iter(report["attacks"]))
        named = {"clean_segmentation": outputs.clean_segmentation, "metrics_table": outputs.metrics_table,
                 f"{method}/adversarial": outputs.adversarial_volume, f"{method}/perturbation": outputs.perturbation_volume,
                 f"{method}/segmentation": outputs.adversarial_segmentation}
        for role, node in named.items():
            if node is None:
                continue
            if any(node is p or node.GetID() == p.GetID() for p in protected):
                raise ValueError(f"output {role!r} is the input node {node.GetName()!r}: choose another node "
                                 "(or none, to create one); FreqAdvSegment never overwrites its inputs")
            targets[role] = node
    for role, node in (reuse or {}).items():
        if node is None or role in targets or any(node.GetID() == p.GetID() for p in protected):
            continue
        if node.GetAttribute(ROLE_ATTRIBUTE) == role and node.GetScene() is not None:
            targets[role] = node
    return targets


def write_scene(folder: str | Path, input_path: str | Path | None = None, labels_path: str | Path | None = None,
                scene_file: str = SCENE_FILE) -> Path:
    """Write ``folder/scene_file`` (.mrb or .mrml): the input CT (from ``input_path``, else
    rebuilt), the optional ground truth, every result, the metrics table and chart, and the
    comparison views set up (names, colours, links, fields of view, 3D cameras), one
    subject-hierarchy folder per attack. Open it in Slicer (drag and drop, or File > Load Scene):
    it opens in Slicer's built-in "three over three" layout with the clean | attack A | attack B
    slice views, extension or not; the full layout (with the 3D views and the chart) is stored
    in the layout node and restored by the extension (views.restore_saved_layout)."""
    from .scene import new_scene, save_scene
    from .views import create_view_nodes, layout_node, register_layout, show_results, store_layout_for_saving

    folder = Path(folder)
    scene = new_scene()
    report = read_report(folder)
    input_volume = volume_node_from_image(scene, read_image(input_path), Path(input_path).name.split(".")[0]) if input_path else None
    if input_volume is not None:
        show_ct(input_volume)
    ground_truth = None
    if labels_path:
        labels = tuple(report["model"]["spec"]["label_names"])
        ground_truth = segmentation_from_labels(scene, read_image(labels_path), "ground truth", labels, input_volume)
    results = load_results(scene, folder, input_volume, ground_truth)
    layout = layout_node(scene)
    register_layout(layout, select=True)
    create_view_nodes(scene)
    show_results(scene, results)
    store_layout_for_saving(layout)
    return save_scene(scene, folder / scene_file)


# --- helpers -------------------------------------------------------------------------------------


def _load_attack(scene: Any, folder: Path, files: dict[str, str], method: str, labels: tuple[str, ...],
                 input_volume: Any, prefix: str, targets: dict[str, Any], closed_surfaces: bool = True) -> tuple[AttackNodes, sitk.Image]:
    adversarial = _volume(scene, folder / files[f"{method}/adversarial"], f"{prefix} {method} adversarial", input_volume,
                          targets.get(f"{method}/adversarial"))
    show_ct(adversarial, like=input_volume)  # same window as the clean CT: differences stay visible
    perturbation = _volume(scene, folder / files[f"{method}/perturbation_hu"], f"{prefix} {method} perturbation (HU)",
                           input_volume, targets.get(f"{method}/perturbation"))
    limit = show_perturbation(perturbation, title=f"{method} perturbation (HU)")
    adversarial_labels = read_image(folder / files[f"{method}/adversarial_labels"])
    segmentation = segmentation_from_labels(scene, adversarial_labels, f"{prefix} {method} segmentation", labels, input_volume,
                                            targets.get(f"{method}/segmentation"), closed_surfaces)
    style_segmentation(segmentation)
    lost, gained = written_change_maps(folder, files, method)  # what the engine wrote, not recomputed
    changes = label_change_segmentation(scene, lost, gained, f"{prefix} {method} where it broke", labels,
                                        input_volume, targets.get(f"{method}/changes"), closed_surfaces)
    counts = change_counts(label_change_image(lost, gained, len(labels)), labels)
    return AttackNodes(method, adversarial, perturbation, segmentation, limit, changes, counts), adversarial_labels


def _volume(scene: Any, path: Path, name: str, input_volume: Any, node: Any) -> Any:
    volume = volume_node_from_image(scene, read_image(path), name, node=node)
    volume.SetAndObserveTransformNodeID(input_volume.GetTransformNodeID())  # follow the input if it moves
    set_hounsfield_units(volume)
    return volume


def set_hounsfield_units(volume: Any) -> None:
    """Voxel values are CT numbers: quantity "attenuation coefficient", unit HU (UCUM), so
    Slicer's data probe and the colour legend say HU."""
    import slicer

    quantity, units = slicer.vtkCodedEntry(), slicer.vtkCodedEntry()
    quantity.SetValueSchemeMeaning("112031", "DCM", "Attenuation Coefficient")
    units.SetValueSchemeMeaning("[hnsf'U]", "UCUM", "Hounsfield unit")
    volume.SetVoxelValueQuantity(quantity)
    volume.SetVoxelValueUnits(units)


def _rebuilt_input(scene: Any, folder: Path, report: dict[str, Any]) -> Any:
    """The clean CT as adversarial - perturbation, for folders loaded without their input."""
    if not report["attacks"]:
        raise ValueError(f"{folder} has no attack results to rebuild the input from; pass the input volume")
    method, files = next(iter(report["attacks"])), report["files"]
    adversarial = read_image(folder / files[f"{method}/adversarial"])
    perturbation = read_image(folder / files[f"{method}/perturbation_hu"])
    clean = sitk.Subtract(sitk.Cast(adversarial, sitk.sitkFloat32), sitk.Cast(perturbation, sitk.sitkFloat32))
    volume = volume_node_from_image(scene, clean, "clean CT (adversarial - perturbation)")
    set_hounsfield_units(volume)
    show_ct(volume)
    return volume


def group_in_folders(scene: Any, results: ResultNodes, name: str) -> None:
    """One subject-hierarchy folder for the run, holding the clean segmentation, table and chart,
    and one sub-folder per attack with its volumes and segmentations. A refilled run keeps its
    folders."""
    import slicer

    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if hierarchy is None:
        return
    top = _folder(hierarchy, hierarchy.GetSceneItemID(), name)
    for node in (results.clean_segmentation, results.metrics_table, results.dice_chart):
        _place(hierarchy, node, top)
    for label, attack in results.attacks.items():
        sub = _folder(hierarchy, top, label)
        for node in (attack.adversarial_volume, attack.perturbation_volume, attack.adversarial_segmentation, attack.changes_segmentation):
            _place(hierarchy, node, sub)


def _folder(hierarchy: Any, parent: int, name: str) -> int:
    item = hierarchy.GetItemChildWithName(parent, name)
    return item if item else hierarchy.CreateFolderItem(parent, name)


def _place(hierarchy: Any, node: Any, parent: int) -> None:
    if node is None:
        return
    item = hierarchy.GetItemByDataNode(node)
    if item:
        hierarchy.SetItemParent(item, parent)
    else:
        hierarchy.CreateItem(parent, node)
