"""Segment or attack a volume node through the engine's child process, results into the scene.

This is everything the module's Logic does except what needs the desktop (dependency install,
dialogs): FreqAdvSegment.py wraps it, and tests call it directly.

    run = EngineRun(scene, ct_node, "attack", method="vafa", params={"q_max": 20, "steps": 5})
    run = EngineRun(scene, ct_node, "attack", attacks=["vafa:public-code,q_max=30", "pgd"])
    results = run.run()                       # blocking; or start() / poll() / finish() / cancel()

Inputs are written to a temporary folder as NRRD (geometry exact), the CLI writes NRRD results
there, and only a successful run touches the scene: a failed or cancelled run leaves it exactly
as it was. The input nodes are only read.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..files.images import read_image, write_image
from ..organs import BTCV_LABELS
from .attack_choices import AttackChoices, attack_arguments, attack_methods, request_labels
from .engine_process import EngineJob, Progress, engine_command, engine_environment, overall_fraction
from .results import OutputNodes, ResultNodes, load_results
from .segmentations import labels_from_segmentation, segmentation_from_labels
from .volumes import image_from_volume_node

@dataclass
class EngineSettings:
    """How to run the model (the CLI's model and device options) and where to work.

    Attributes:
        model: registry name, checkpoint file or MONAI bundle folder.
        device: auto, cpu, cuda, cuda:N or mps.
        roi, overlap, sw_batch_size, amp, seed, include_background: as the CLI's options;
            None keeps the CLI's default.
        label_names: the model's labels, to write a ground-truth segmentation as label values.
        work_root: parent of the temporary folders (default: the system's).
        keep_folder: keep the engine's output folder (report.html, figures) here.
        python: interpreter for the child (default: PythonSlicer inside Slicer, else this one).
        environment: the child's base environment (default: this process's; the desktop
            passes Slicer's startup environment, as for any PythonSlicer child).
    """

    model: str = "demo-unet"
    device: str = "auto"
    roi: Sequence[int] | None = None
    overlap: float | None = None
    sw_batch_size: int | None = None
    amp: str | None = None
    seed: int | None = None
    include_background: bool = False
    label_names: Sequence[str] = BTCV_LABELS
    work_root: str | Path | None = None
    keep_folder: str | Path | None = None
    python: str | None = None
    environment: dict[str, str] | None = None

    def arguments(self) -> list[str]:
        args = ["--model", str(self.model), "--device", self.device]
        if self.roi is not None:
            args += ["--roi", ",".join(str(int(v)) for v in self.roi)]
        for flag, value in (("--overlap", self.overlap), ("--sw-batch-size", self.sw_batch_size), ("--amp", self.amp), ("--seed", self.seed)):
            if value is not None:
                args += [flag, str(value)]
        return args + (["--include-background"] if self.include_background else [])




@dataclass
class EngineRun:
    """One engine call for a volume node. ``kind`` is "attack" or "segment"."""

    scene: Any
    volume: Any
    kind: str = "attack"
    method: str = "vafa"
    params: dict[str, Any] = field(default_factory=dict)
    ground_truth: Any = None
    settings: EngineSettings = field(default_factory=EngineSettings)
    outputs: OutputNodes | None = None
    segmentation_node: Any = None  # for kind "segment": an existing node to fill
    attacks: Sequence[str] = ()  # request texts; empty: the one attack of method and params
    reuse: dict[str, Any] | None = None  # nodes of an earlier run to refill, by role (results.node_roles)
    closed_surfaces: bool = True  # False: the caller builds the 3D surfaces (a step at a time)
    job: EngineJob | None = field(default=None, init=False)
    workdir: Path | None = field(default=None, init=False)

    def start(self) -> None:
        """Write the inputs and start the child; raises ValueError for unusable inputs."""
        if self.kind not in ("attack", "segment"):
            raise ValueError(f"kind must be 'attack' or 'segment', got {self.kind!r}")
        if self.volume is None or self.volume.GetImageData() is None:
            raise ValueError("choose an input volume that has voxels")
        if self.kind == "attack":
            self.attacks = self.requests()  # checked by the registry before anything is written
        self.workdir = Path(tempfile.mkdtemp(prefix="freqadv-", dir=self.settings.work_root))
        try:
            command = self._command()
        except BaseException:
            self._clean()
            raise
        self.job = EngineJob(command, engine_environment(self.settings.environment))
        self.job.start()

    def poll(self) -> bool:
        """True while the child runs."""
        return self.job is not None and self.job.poll() is None

    @property
    def progress(self) -> Progress | None:
        return self.job.progress if self.job else None

    @property
    def fraction(self) -> float | None:
        """0..1 done, or None when the engine reports no progress (segmentation only)."""
        if self.kind == "segment":
            return None
        return overall_fraction(self.progress, request_labels(self.requests()))

    def requests(self) -> list[str]:
        """The attack request texts of this run (``attacks``, else ``method`` with ``params``)."""
        if self.attacks:
            return [str(a) for a in self.attacks]
        return [AttackChoices.from_call(self.method, self.params).request()]

    def status(self) -> str:
        """One line for a status bar."""
        progress = self.progress
        if progress is None:
            return "loading the model and segmenting..." if self.kind == "segment" else "starting the engine..."
        return f"{progress.stage}: {progress.done}/{progress.total}"

    def cancel(self) -> None:
        """Kill the child's whole process tree and remove the temporary files; the scene is
        left as it was."""
        if self.job is not None:
            self.job.cancel()
        self._clean()

    def finish(self) -> Any:
        """After the child exited: load the results into the scene (ResultNodes for an attack,
        the segmentation node for a segmentation). Raises EngineError if the child failed."""
        if self.job is None:
            raise RuntimeError("start() the run first")
        try:
            self.job.check()
            return self._load()
        finally:
            self._clean()

    def run(self, on_progress: Callable[[EngineRun], None] | None = None, keep_alive: Callable[[], None] | None = None) -> Any:
        """start(), wait (calling ``on_progress(self)`` and ``keep_alive()`` meanwhile), finish()."""
        self.start()
        try:
            self.job.wait(lambda _: on_progress(self) if on_progress else None, keep_alive)
        except BaseException:
            self.cancel()
            raise
        return self.finish()

    # --- internals --------------------------------------------------------------------------

    @property
    def output_dir(self) -> Path:
        assert self.workdir is not None
        return Path(self.settings.keep_folder) if self.settings.keep_folder else self.workdir / "out"

    def _command(self) -> list[str]:
        assert self.workdir is not None
        input_path = self.workdir / "input.nrrd"
        write_image(image_from_volume_node(self.volume), input_path)
        args = [input_path, "-o", self.output_dir, *self.settings.arguments()]
        if self.settings.keep_folder:
            args.append("--overwrite")
        args += ["--format", "nrrd"]  # NRRD in and out: what Slicer reads and writes natively
        if self.kind == "segment":
            return engine_command("segment", args, self.settings.python)
        args += attack_arguments(self.requests())
        if self.ground_truth is not None:
            labels_path = self.workdir / "labels.nrrd"
            write_image(labels_from_segmentation(self.ground_truth, self.volume, self.settings.label_names), labels_path)
            args += ["--labels", labels_path]
        return engine_command("attack", args, self.settings.python)

    def _load(self) -> Any:
        """Results into the scene; if loading fails half-way, the nodes it added are removed."""
        before = _node_ids(self.scene)
        try:
            return self._load_into_scene()
        except BaseException:
            for node_id in _node_ids(self.scene) - before:
                node = self.scene.GetNodeByID(node_id)
                if node is not None:
                    self.scene.RemoveNode(node)
            raise

    def _load_into_scene(self) -> Any:
        if self.kind == "segment":
            labels = read_image(next(self.output_dir.glob("segmentation.*")))
            name = f"{self.volume.GetName()} segmentation"
            return segmentation_from_labels(self.scene, labels, name, tuple(self.settings.label_names), self.volume, self.segmentation_node)
        return load_results(self.scene, self.output_dir, self.volume, self.ground_truth, outputs=self.outputs, reuse=self.reuse,
                            closed_surfaces=self.closed_surfaces)

    def _clean(self) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


def prune_run_folders(root: str | Path, keep: int = 5, prefix: str = "run-") -> list[Path]:
    """Remove all but the ``keep`` newest kept run folders (``run-*``) under ``root``, so the
    reports of old runs do not pile up in the temporary folder forever; returns those removed."""
    folders = sorted((p for p in Path(root).glob(f"{prefix}*") if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    removed = folders[max(keep, 0):]
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    return removed


def _node_ids(scene: Any) -> set[str]:
    return {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}


def segment(scene: Any, volume: Any, settings: EngineSettings | None = None, **run: Any) -> Any:
    """Segment ``volume`` with the model; returns a new (or ``segmentation_node``) node."""
    return EngineRun(scene, volume, "segment", settings=settings or EngineSettings(), **run).run()


def attack(scene: Any, volume: Any, method: str = "vafa", ground_truth: Any = None,
           settings: EngineSettings | None = None, outputs: OutputNodes | None = None,
           attacks: Sequence[str] = (), **params: Any) -> ResultNodes:
    """Segment, attack with ``method`` (``name`` or ``name:preset``; any registry parameter as a
    keyword, e.g. q_max=20, renormalize="slice") or with several request texts (``attacks``),
    and load everything into ``scene``; blocking."""
    return EngineRun(scene, volume, "attack", method, params, ground_truth, settings or EngineSettings(), outputs,
                     attacks=tuple(attacks)).run()


def __getattr__(name: str) -> Any:
    """``ATTACK_METHODS``: the registry's attack names, read when asked (a plug-in attack
    registered after this module was imported is included)."""
    if name == "ATTACK_METHODS":
        return attack_methods()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
