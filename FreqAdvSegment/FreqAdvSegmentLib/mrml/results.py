"""Load a ``freqadv attack`` output folder into a scene, and write it as a Slicer scene file.

    results = load_results(scene, "out/", input_volume=ct_node)
    results.adversarial_volume, results.perturbation_volume            # single-attack shortcuts
    results.clean_segmentation, results.adversarial_segmentation, results.metrics_table
    write_scene("out/", input_path="ct.nii.gz")     # -> out/scene.mrb, opens with all results

The folder is what FreqAdvSegmentLib.pipeline.write_outputs writes: report.json (whose "files"
map names every volume), clean_labels.*, and per attack <name>/adversarial.*,
<name>/perturbation_hu.*, <name>/adversarial_labels.*. Every volume is on the input's grid.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from ..io import read_image
from .display import show_ct, show_perturbation, style_segmentation
from .segmentations import segmentation_from_labels
from .tables import dice_chart, metrics_table
from .volumes import volume_node_from_image

SCENE_FILE = "scene.mrb"


@dataclass
class AttackNodes:
    """One attack's nodes."""

    method: str
    adversarial_volume: Any
    perturbation_volume: Any
    adversarial_segmentation: Any
    perturbation_limit_hu: float


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

    def created_nodes(self) -> list[Any]:
        """Nodes made for these results (not the input or the ground truth)."""
        nodes = [self.clean_segmentation, self.metrics_table, self.dice_chart]
        for a in self.attacks.values():
            nodes += [a.adversarial_volume, a.perturbation_volume, a.adversarial_segmentation]
        return [n for n in nodes if n is not None]


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
) -> ResultNodes:
    """Create (or fill) nodes for every result in ``folder``; the input nodes are not modified.

    Args:
        scene: the scene to load into.
        folder: a ``freqadv attack`` output folder.
        input_volume: the clean CT node the results belong to. None rebuilds it from the first
            attack as adversarial - perturbation (exact up to float rounding), named so.
        ground_truth: the ground-truth segmentation node, if one was used (kept for display).
        name_prefix: start of new node names (default: the input volume's name, else the
            folder's).
        outputs: existing nodes to fill (only for a folder with one attack).
    """
    folder = Path(folder)
    report = read_report(folder)
    files, labels = report["files"], tuple(report["model"]["spec"]["label_names"])
    outputs = outputs or OutputNodes()
    if outputs != OutputNodes() and len(report["attacks"]) != 1:
        raise ValueError("output nodes can only be given for results with exactly one attack")
    default_prefix = input_volume.GetName() if input_volume is not None else folder.resolve().name
    prefix = name_prefix if name_prefix is not None else default_prefix
    if input_volume is None:
        input_volume = _rebuilt_input(scene, folder, report)
    clean_labels = read_image(folder / files["clean_labels"])
    clean = segmentation_from_labels(scene, clean_labels, f"{prefix} clean segmentation", labels, input_volume, outputs.clean_segmentation)
    results = ResultNodes(folder, report, input_volume, clean, ground_truth=ground_truth)
    adversarial_labels = {}
    for method in report["attacks"]:
        results.attacks[method], adversarial_labels[method] = _load_attack(scene, folder, files, method, labels, input_volume, prefix, outputs)
    results.metrics_table = metrics_table(scene, report, f"{prefix} metrics", outputs.metrics_table)
    results.dice_chart = dice_chart(scene, results.metrics_table, f"{prefix} Dice")
    if adversarial_labels:
        from .views import focus_point

        results.focus_ras = focus_point(clean_labels, next(iter(adversarial_labels.values())))
    style_segmentation(clean)
    _group_in_folder(scene, results, f"{prefix} FreqAdvSegment results")
    return results


def write_scene(folder: str | Path, input_path: str | Path | None = None, labels_path: str | Path | None = None,
                scene_file: str = SCENE_FILE) -> Path:
    """Write ``folder/scene_file`` (.mrb or .mrml): the input CT (from ``input_path``, else
    rebuilt), the optional ground truth, every result, the metrics table and chart, and the
    comparison layout with its views set up. Open it in Slicer (drag and drop, or File > Load
    Scene) to see everything as the module shows it. Scene files keep the layout's number, not
    its description: the extension registers the description at startup, so without the
    extension installed Slicer keeps its own layout (every node is still there)."""
    from .scene import new_scene, save_scene
    from .views import create_view_nodes, layout_node, register_layout, show_results

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
    register_layout(layout_node(scene), select=True)
    create_view_nodes(scene)
    show_results(scene, results)
    return save_scene(scene, folder / scene_file)


# --- helpers -------------------------------------------------------------------------------------


def _load_attack(scene: Any, folder: Path, files: dict[str, str], method: str, labels: tuple[str, ...],
                 input_volume: Any, prefix: str, outputs: OutputNodes) -> tuple[AttackNodes, sitk.Image]:
    adversarial = _volume(scene, folder / files[f"{method}/adversarial"], f"{prefix} {method} adversarial", input_volume, outputs.adversarial_volume)
    show_ct(adversarial, like=input_volume)  # same window as the clean CT: differences stay visible
    perturbation = _volume(scene, folder / files[f"{method}/perturbation_hu"], f"{prefix} {method} perturbation (HU)", input_volume, outputs.perturbation_volume)
    limit = show_perturbation(perturbation)
    adversarial_labels = read_image(folder / files[f"{method}/adversarial_labels"])
    segmentation = segmentation_from_labels(scene, adversarial_labels, f"{prefix} {method} segmentation", labels, input_volume, outputs.adversarial_segmentation)
    style_segmentation(segmentation)
    return AttackNodes(method, adversarial, perturbation, segmentation, limit), adversarial_labels


def _volume(scene: Any, path: Path, name: str, input_volume: Any, node: Any) -> Any:
    volume = volume_node_from_image(scene, read_image(path), name, node=node)
    volume.SetAndObserveTransformNodeID(input_volume.GetTransformNodeID())  # follow the input if it moves
    return volume


def _rebuilt_input(scene: Any, folder: Path, report: dict[str, Any]) -> Any:
    """The clean CT as adversarial - perturbation, for folders loaded without their input."""
    if not report["attacks"]:
        raise ValueError(f"{folder} has no attack results to rebuild the input from; pass the input volume")
    method, files = next(iter(report["attacks"])), report["files"]
    adversarial = read_image(folder / files[f"{method}/adversarial"])
    perturbation = read_image(folder / files[f"{method}/perturbation_hu"])
    clean = sitk.Subtract(sitk.Cast(adversarial, sitk.sitkFloat32), sitk.Cast(perturbation, sitk.sitkFloat32))
    volume = volume_node_from_image(scene, clean, "clean CT (adversarial - perturbation)")
    show_ct(volume)
    return volume


def _group_in_folder(scene: Any, results: ResultNodes, name: str) -> None:
    """On the desktop, gather the new nodes in one subject-hierarchy folder. Headless scenes
    have no subject hierarchy items; then this does nothing."""
    hierarchy = scene.GetFirstNodeByClass("vtkMRMLSubjectHierarchyNode")
    if hierarchy is None:
        return
    items = [hierarchy.GetItemByDataNode(n) for n in results.created_nodes()]
    items = [i for i in items if i]
    if not items:
        return
    folder = hierarchy.CreateFolderItem(hierarchy.GetSceneItemID(), name)
    for item in items:
        hierarchy.SetItemParent(item, folder)
