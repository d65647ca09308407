"""FreqAdvSegment: attack a CT segmentation model in the frequency domain (VAFA) and see what breaks.

The thin Qt layer of the extension. All work is in FreqAdvSegmentLib: the engine (PyTorch, MONAI)
runs in a child PythonSlicer process, and FreqAdvSegmentLib.mrml turns its files into nodes.
From the Python console:

    logic = slicer.util.getModuleLogic("FreqAdvSegment")
    segmentation = logic.segment(volumeNode)
    results = logic.attack(volumeNode, method="vafa", q_max=20, steps=20)
    results.adversarial_volume, results.perturbation_volume, results.metrics_table
"""

import json
import logging
import time
import traceback
from pathlib import Path
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from FreqAdvSegmentLib.mrml.logic import ATTACK_METHODS, AttackChoices, EngineRun, EngineSettings
from FreqAdvSegmentLib.mrml.results import OutputNodes, ResultNodes

MODULE_DIR = Path(__file__).resolve().parent
MODELS_JSON = MODULE_DIR / "FreqAdvSegmentLib" / "resources" / "Models.json"
REQUIREMENTS = MODULE_DIR / "Resources" / "requirements.txt"
MINIMUM_TORCH = "2.8"
DEVICES = ("auto", "cpu", "cuda")


#
# Module
#


class FreqAdvSegment(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("FreqAdvSegment")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["FreqAdvSegment developers"]
        self.parent.helpText = _("""
Tests how reliable a volumetric CT segmentation model is under adversarial attack: segments the
input with a MONAI model, attacks the model in the frequency domain (VAFA, Hanif et al., MICCAI
2023) or the voxel domain (FGSM, PGD, BIM, CW, Gaussian noise), and shows the clean and
adversarial segmentations side by side with the perturbation in HU and per-organ Dice/HD95.
""")
        self.parent.acknowledgementText = _("""
VAFA and VAFT: Hanif, Naseer, Khan, Shah, Khan, "Frequency Domain Adversarial Training for Robust
Volumetric Medical Segmentation", MICCAI 2023. Sample CT from the TotalSegmentator sample data
(Wasserthal et al., Radiology: AI 2023; Apache-2.0).
""")
        slicer.app.connect("startupCompleted()", _onStartupCompleted)


def _onStartupCompleted():
    """Sample data, terminology and layout, once the application is up."""
    for step in (registerSampleData, _loadTerminology, _registerLayout):
        try:
            step()
        except Exception:  # one failing step must not stop the others; still report it
            logging.error(f"FreqAdvSegment startup step {step.__name__} failed:\n{traceback.format_exc()}")


def registerSampleData():
    """The shipped sample CT (patient A) in the Sample Data module."""
    import hashlib

    import SampleData

    from FreqAdvSegmentLib.sample_data import sample_ct_path

    path = sample_ct_path()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()  # 2 MB: instant
    if hasattr(SampleData.SampleDataLogic, "registerCustomSampleDataCategory"):  # Slicer 5.12+
        SampleData.SampleDataLogic.registerCustomSampleDataCategory("FreqAdvSegment", title=_("FreqAdvSegment"))
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="FreqAdvSegment",
        sampleName="FreqAdvSegmentSampleCT",
        thumbnailFileName=str(MODULE_DIR / "Resources" / "Icons" / "FreqAdvSegmentSampleCT.png"),
        uris=path.as_uri(),  # shipped with the extension: "downloading" is a local copy
        fileNames="FreqAdvSegmentSampleCT.nii.gz",
        nodeNames="FreqAdvSegmentSampleCT",
        loadFileTypes="VolumeFile",
        checksums=f"SHA256:{digest}",
    )


def _loadTerminology():
    from FreqAdvSegmentLib.mrml.terminology import load_terminology

    load_terminology(slicer.modules.terminologies.logic())


def _registerLayout():
    from FreqAdvSegmentLib.mrml.views import register_layout

    register_layout(slicer.app.layoutManager().layoutLogic().GetLayoutNode())


#
# Parameter node
#


@parameterNodeWrapper
class FreqAdvSegmentParameterNode:
    """What the panel shows; names match the .ui's SlicerParameterName properties.

    Attack intensities (eps255, alpha255, std255) are on the 0-255 scale, as the paper writes
    them; AttackChoices converts them to the engine's [0, 1] scale.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    groundTruth: vtkMRMLSegmentationNode
    model: str = "demo-unet"
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    swBatchSize: Annotated[int, WithinRange(1, 64)] = 2
    seed: Annotated[int, WithinRange(0, 2147483647)] = 0
    method: Annotated[str, Choice(list(ATTACK_METHODS))] = "vafa"
    steps: Annotated[int, WithinRange(1, 1000)] = 20
    qMax: Annotated[float, WithinRange(1.0, 255.0)] = 20.0
    qMin: Annotated[float, WithinRange(0.1, 255.0)] = 1.0
    qInitFromMax: bool = True
    blockSize: Annotated[int, WithinRange(2, 64)] = 8
    ssimWeight: Annotated[float, WithinRange(0.0, 100.0)] = 1.0
    eps255: Annotated[float, WithinRange(0.0, 255.0)] = 4.0
    alpha255: Annotated[float, WithinRange(0.0, 255.0)] = 2.55
    std255: Annotated[float, WithinRange(0.0, 255.0)] = 4.0
    cwC: Annotated[float, WithinRange(0.0, 1000.0)] = 1.0
    adversarialVolume: vtkMRMLScalarVolumeNode
    perturbationVolume: vtkMRMLScalarVolumeNode
    cleanSegmentation: vtkMRMLSegmentationNode
    adversarialSegmentation: vtkMRMLSegmentationNode
    metricsTable: vtkMRMLTableNode

    def attackChoices(self) -> AttackChoices:
        return AttackChoices(self.steps, self.qMax, self.qMin, self.qInitFromMax, self.blockSize,
                             self.ssimWeight, self.eps255, self.alpha255, self.std255, self.cwC)

    def outputNodes(self) -> OutputNodes:
        return OutputNodes(self.adversarialVolume, self.perturbationVolume, self.cleanSegmentation,
                           self.adversarialSegmentation, self.metricsTable)


#
# Widget
#

# Which attack widgets each method uses (the others are hidden).
METHOD_WIDGETS = {
    "vafa": ("stepsSpinBox", "vafaGroupBox"),
    "pgd": ("stepsSpinBox", "voxelGroupBox", "epsSpinBox", "alphaSpinBox"),
    "bim": ("stepsSpinBox", "voxelGroupBox", "epsSpinBox", "alphaSpinBox"),
    "fgsm": ("voxelGroupBox", "epsSpinBox"),
    "gn": ("voxelGroupBox", "stdSpinBox"),
    "cw": ("stepsSpinBox", "voxelGroupBox", "cwCSpinBox"),
}
TOGGLED_WIDGETS = ("stepsSpinBox", "vafaGroupBox", "voxelGroupBox", "epsSpinBox", "alphaSpinBox", "stdSpinBox", "cwCSpinBox")


class FreqAdvSegmentWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._run = None  # the EngineRun in progress, if any
        self._results = None  # the last ResultNodes
        self._timer = qt.QTimer()
        self._timer.setInterval(200)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/FreqAdvSegment.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = FreqAdvSegmentLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self._timer.connect("timeout()", self._onTimer)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.segmentButton.connect("clicked(bool)", self.onSegmentButton)
        self.ui.loadSampleButton.connect("clicked(bool)", self.onLoadSampleButton)
        self.ui.modelBrowseButton.connect("clicked(bool)", self.onModelBrowseButton)
        self.ui.modelPresetComboBox.connect("activated(int)", self.onModelPresetChosen)
        self.ui.methodComboBox.connect("currentIndexChanged(int)", self._updateMethodWidgets)
        self.ui.showLayoutButton.connect("clicked(bool)", self.onShowLayoutButton)
        self.ui.openReportButton.connect("clicked(bool)", self.onOpenReportButton)
        self.ui.modelPresetComboBox.addItems(knownModelNames())
        self._showResults(None)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self._cancelRun()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)

    def onSceneStartClose(self, caller, event) -> None:
        self._cancelRun()  # its results would land in a scene that is going away
        self._showResults(None)
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Widgets carry a "SlicerParameterName" dynamic property in the .ui file.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
        self._updateMethodWidgets()
        self._updateButtons()

    # --- reacting to the panel -------------------------------------------------------------

    def _updateButtons(self, caller=None, event=None) -> None:
        running = self._run is not None
        hasInput = bool(self._parameterNode and self._parameterNode.inputVolume)
        self.ui.applyButton.text = _("Cancel") if running else _("Apply")
        self.ui.applyButton.enabled = running or hasInput
        self.ui.applyButton.toolTip = _("Stop the engine; the scene is left as it was.") if running else (
            _("Segment, attack, and show clean and adversarial results side by side.") if hasInput else _("Choose an input CT first."))
        self.ui.segmentButton.enabled = hasInput and not running

    def _updateMethodWidgets(self, index=None) -> None:
        # Read the combo box, not the parameter node: this slot may run before the node is updated.
        method = self.ui.methodComboBox.currentText or "vafa"
        shown = METHOD_WIDGETS.get(method, ())
        for name in TOGGLED_WIDGETS:
            widget = getattr(self.ui, name)
            widget.visible = name in shown
            label = getattr(self.ui, name.replace("SpinBox", "Label"), None)
            if label is not None and label is not widget:
                label.visible = name in shown

    def onModelPresetChosen(self, index: int) -> None:
        self._parameterNode.model = self.ui.modelPresetComboBox.itemText(index)

    def onModelBrowseButton(self) -> None:
        path = qt.QFileDialog.getOpenFileName(self.parent, _("Choose a model checkpoint"), "",
                                              _("Model checkpoints (*.safetensors *.pt *.pth *.ckpt *.bin);;All files (*)"))
        if path:
            self._parameterNode.model = path

    def onLoadSampleButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not load the sample."), waitCursor=True):
            volume, truth = self.logic.loadSample()
            self._parameterNode.inputVolume = volume
            self._parameterNode.groundTruth = truth
            slicer.util.setSliceViewerLayers(background=volume, fit=True)

    # --- running -------------------------------------------------------------------------------

    def onApplyButton(self) -> None:
        if self._run is not None:
            self._cancelRun()
            return
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Could not start the attack."), waitCursor=True):
            self.logic.ensureDependencies()
            run = self.logic.newAttackRun(p.inputVolume, p.method, p.attackChoices().parameters(p.method), p.groundTruth,
                                          self._settings(keepReport=True), p.outputNodes())
            self._startRun(run)

    def onSegmentButton(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Could not start the segmentation."), waitCursor=True):
            self.logic.ensureDependencies()
            self._startRun(self.logic.newSegmentRun(p.inputVolume, self._settings(), p.cleanSegmentation))

    def _settings(self, keepReport: bool = False) -> EngineSettings:
        p = self._parameterNode
        return self.logic.engineSettings(p.model, p.device, p.swBatchSize, p.seed, keepReport)

    def _startRun(self, run: EngineRun) -> None:
        run.start()
        self._run = run
        self.ui.progressBar.visible = True
        self.ui.progressBar.setRange(0, 0 if run.fraction is None else 100)
        self.ui.progressBar.value = 0
        self.ui.statusLabel.text = run.status()
        self._timer.start()
        self._updateButtons()

    def _onTimer(self) -> None:
        run = self._run
        if run is None:
            self._timer.stop()
            return
        if run.poll():
            if run.fraction is not None:
                self.ui.progressBar.value = int(100 * run.fraction)
            self.ui.statusLabel.text = run.status()
            return
        self._timer.stop()
        self._run = None
        self.ui.statusLabel.text = _("Loading the results...")
        try:
            with slicer.util.tryWithErrorDisplay(_("The FreqAdvSegment run failed."), waitCursor=True):
                result = self.logic.finishRun(run)
            self.ui.statusLabel.text = _("Done.")
            if isinstance(result, ResultNodes):
                self._showResults(result)
        except Exception:
            self.ui.statusLabel.text = _("Failed; the scene was left as it was (details in the error message).")
        finally:
            self.ui.progressBar.visible = False
            self._updateButtons()

    def _cancelRun(self) -> None:
        if self._run is None:
            return
        self._timer.stop()
        self._run.cancel()
        self._run = None
        self.ui.progressBar.visible = False
        self.ui.statusLabel.text = _("Cancelled; the scene was left as it was.")
        self._updateButtons()

    # --- results -------------------------------------------------------------------------------

    def _showResults(self, results: ResultNodes | None) -> None:
        self._results = results
        self.ui.showLayoutButton.enabled = results is not None
        self.ui.openReportButton.enabled = results is not None and (results.folder / "report.html").is_file()
        self.ui.resultsTableView.setMRMLTableNode(results.metrics_table if results else None)
        self.ui.summaryLabel.text = summaryText(results) if results else _("Run an attack to see what broke.")

    def onShowLayoutButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not show the results.")):
            self.logic.showResults(self._results)

    def onOpenReportButton(self) -> None:
        report = self._results.folder / "report.html"
        qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(report)))


def summaryText(results: ResultNodes) -> str:
    """Two lines on what the attack did, from report.json."""
    report = results.report
    lines = []
    clean = report.get("clean_vs_ground_truth")
    reference = report.get("reference", "reference")
    if clean:
        lines.append(_("Clean: mean Dice {dice:.3f} vs {reference}.").format(dice=clean["mean_dice"], reference=reference))
    for method, attack in report.get("attacks", {}).items():
        lines.append(_("{method}: mean Dice {dice:.3f} vs {reference}; {flips:.2f}% of labels flipped; "
                       "L-inf {linf:.1f} HU; SSIM {ssim:.4f}; {seconds:.0f} s.").format(
            method=method.upper(), dice=attack["vs_reference"]["mean_dice"], reference=reference,
            flips=100 * attack["flip_rate"], linf=attack["perturbation_hu_linf"],
            ssim=attack["perturbation"]["ssim"], seconds=attack["seconds"]))
    return "\n".join(lines)


def knownModelNames() -> list[str]:
    """Registry names from Models.json (read as plain JSON: no PyTorch needed to list them)."""
    try:
        return [entry["name"] for entry in json.loads(MODELS_JSON.read_text(encoding="utf-8"))]
    except (OSError, ValueError, KeyError, TypeError) as error:
        logging.error(f"FreqAdvSegment: cannot read the model list {MODELS_JSON}: {error}")
        return []


#
# Logic
#


class FreqAdvSegmentLogic(ScriptedLoadableModuleLogic):
    """Everything the module does, callable from the Python console; see the module docstring."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._dependenciesReady = False

    def getParameterNode(self):
        return FreqAdvSegmentParameterNode(super().getParameterNode())

    # --- dependencies --------------------------------------------------------------------------

    def ensureDependencies(self, askConfirmation: bool = True) -> None:
        """PyTorch through the PyTorch extension, the engine's other packages through pip (after
        one confirmation); raises RuntimeError if the user declines or something is missing."""
        if self._dependenciesReady:
            return
        self._ensureTorch(askConfirmation)
        self._ensurePackages(askConfirmation)
        self._dependenciesReady = True

    def _ensureTorch(self, askConfirmation: bool) -> None:
        try:
            import PyTorchUtils
        except ModuleNotFoundError:
            raise RuntimeError(_("FreqAdvSegment needs the PyTorch extension: install 'PyTorch' from the "
                                 "Extensions Manager and restart Slicer.")) from None
        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if not torchLogic.torchInstalled():
            if torchLogic.installTorch(askConfirmation=askConfirmation, torchVersionRequirement=f">={MINIMUM_TORCH}") is None:
                raise RuntimeError(_("PyTorch is required; install it in the PyTorch Utils module."))
            return
        installed = torchLogic.torch.__version__.split("+")[0]
        if not versionAtLeast(installed, MINIMUM_TORCH):
            raise RuntimeError(_("PyTorch {installed} is too old; FreqAdvSegment needs {minimum} or later. Use the "
                                 "PyTorch Utils module to install torch>={minimum}.").format(installed=installed, minimum=MINIMUM_TORCH))

    def _ensurePackages(self, askConfirmation: bool) -> None:
        try:
            import slicer.packaging as packaging  # Slicer 5.12 and later
        except ImportError:
            packaging = None
        if packaging is not None:
            packaging.pip_ensure(packaging.load_requirements(REQUIREMENTS), prompt_install=askConfirmation, requester="FreqAdvSegment")
            return
        missing = missingRequirements(REQUIREMENTS)
        if not missing:
            return
        question = _("FreqAdvSegment needs these Python packages, which will now be installed:\n\n{packages}").format(packages="\n".join(missing))
        if askConfirmation and not slicer.util.confirmOkCancelDisplay(question):
            raise RuntimeError(_("FreqAdvSegment cannot run without: {packages}").format(packages=", ".join(missing)))
        slicer.util.pip_install(missing)
        still = missingRequirements(REQUIREMENTS)
        if still:
            raise RuntimeError(_("Installing {packages} did not succeed; see the Python console.").format(packages=", ".join(still)))

    # --- running -------------------------------------------------------------------------------

    def engineSettings(self, model: str = "demo-unet", device: str = "auto", swBatchSize: int | None = None,
                       seed: int | None = None, keepReport: bool = False) -> EngineSettings:
        """Settings for a run; with keepReport, the engine's folder (report.html) is kept under
        Slicer's temporary folder."""
        work = Path(slicer.app.temporaryPath) / "FreqAdvSegment"
        work.mkdir(parents=True, exist_ok=True)
        keep = work / time.strftime("run-%Y%m%d-%H%M%S") if keepReport else None
        # The child is a PythonSlicer process: give it Slicer's startup environment, as
        # slicer.util.launchConsoleProcess does, so the launcher sets it up from scratch.
        return EngineSettings(model=model, device=device, sw_batch_size=swBatchSize, seed=seed, work_root=work,
                              keep_folder=keep, environment=slicer.util.startupEnvironment())

    def newAttackRun(self, volumeNode, method="vafa", params=None, groundTruth=None, settings=None, outputs=None) -> EngineRun:
        """An EngineRun (not started) that segments and attacks ``volumeNode``."""
        return EngineRun(slicer.mrmlScene, volumeNode, "attack", method, dict(params or {}), groundTruth,
                         settings or self.engineSettings(keepReport=True), outputs)

    def newSegmentRun(self, volumeNode, settings=None, outputSegmentation=None) -> EngineRun:
        """An EngineRun (not started) that only segments ``volumeNode``."""
        return EngineRun(slicer.mrmlScene, volumeNode, "segment", settings=settings or self.engineSettings(),
                         segmentation_node=outputSegmentation)

    def finishRun(self, run: EngineRun, show: bool = True):
        """Load a finished run's results (and show them)."""
        result = run.finish()
        if show and isinstance(result, ResultNodes):
            self.showResults(result)
        elif show:
            result.GetDisplayNode().SetVisibility(True)
        return result

    def segment(self, volumeNode, model: str = "demo-unet", device: str = "auto", outputSegmentation=None):
        """Segment ``volumeNode`` with ``model``; returns the segmentation node. Blocking."""
        self.ensureDependencies()
        run = self.newSegmentRun(volumeNode, self.engineSettings(model, device), outputSegmentation)
        segmentation = run.run(keep_alive=slicer.app.processEvents)
        segmentation.GetDisplayNode().SetVisibility(True)
        return segmentation

    def attack(self, volumeNode, method: str = "vafa", groundTruth=None, model: str = "demo-unet", device: str = "auto",
               outputs: OutputNodes | None = None, show: bool = True, **params) -> ResultNodes:
        """Segment ``volumeNode``, attack the model with ``method`` (engine parameters as keywords:
        q_max, q_min, q_init, steps, block_size, ssim_weight, eps, alpha, std, c, kappa, lr) and
        load the adversarial volume, perturbation, both segmentations and the metrics table.
        Blocking (Slicer stays responsive)."""
        self.ensureDependencies()
        run = self.newAttackRun(volumeNode, method, params, groundTruth, self.engineSettings(model, device, keepReport=True), outputs)
        results = run.run(keep_alive=slicer.app.processEvents)
        if show:
            self.showResults(results)
        return results

    # --- scene ---------------------------------------------------------------------------------

    def showResults(self, results: ResultNodes, method: str | None = None) -> None:
        """Switch to the comparison layout and put the results into its views."""
        from FreqAdvSegmentLib.mrml.views import register_layout, show_results

        layoutManager = slicer.app.layoutManager()
        register_layout(layoutManager.layoutLogic().GetLayoutNode(), select=True)
        slicer.app.processEvents()  # let the layout manager create the views before filling them
        show_results(slicer.mrmlScene, results, method)
        slicer.util.resetSliceViews()
        if results.focus_ras is not None:
            from FreqAdvSegmentLib.mrml.views import jump_slices

            jump_slices(slicer.mrmlScene, results.focus_ras)
        for index in range(layoutManager.threeDViewCount):
            layoutManager.threeDWidget(index).threeDView().resetFocalPoint()

    def loadSample(self):
        """The shipped sample CT and its labels as a volume and a segmentation node."""
        from FreqAdvSegmentLib.io import read_image
        from FreqAdvSegmentLib.mrml.display import show_ct
        from FreqAdvSegmentLib.mrml.segmentations import segmentation_from_labels
        from FreqAdvSegmentLib.mrml.volumes import volume_node_from_image
        from FreqAdvSegmentLib.sample_data import sample_ct_path, sample_labels_path

        volume = volume_node_from_image(slicer.mrmlScene, read_image(sample_ct_path()), "FreqAdvSegment sample CT")
        show_ct(volume)
        truth = segmentation_from_labels(slicer.mrmlScene, read_image(sample_labels_path()), "FreqAdvSegment sample labels",
                                         reference_volume=volume)
        return volume, truth

    def loadResults(self, folder, inputVolume=None, show: bool = True) -> ResultNodes:
        """Load a ``freqadv attack`` output folder (from the command line) into the scene."""
        from FreqAdvSegmentLib.mrml.results import load_results

        results = load_results(slicer.mrmlScene, folder, inputVolume)
        if show:
            self.showResults(results)
        return results


def missingRequirements(path: Path) -> list[str]:
    """Requirements in ``path`` that are not installed at an acceptable version (before Slicer
    5.12's slicer.packaging, which does this itself)."""
    import re
    from importlib.metadata import PackageNotFoundError, version

    missing = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-")):
            continue
        name = re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0]
        try:
            installed = version(name)
        except PackageNotFoundError:
            missing.append(line)
            continue
        minimum = re.search(r">=\s*([\w.]+)", line)
        if minimum and not versionAtLeast(installed, minimum.group(1)):
            missing.append(line)
    return missing


def versionAtLeast(installed: str, minimum: str) -> bool:
    """installed >= minimum, by packaging's rules when available, else by numeric parts."""
    try:
        from packaging.version import Version

        return Version(installed) >= Version(minimum)
    except ImportError:
        import re

        def parts(text):
            return tuple(int(p) for p in re.findall(r"\d+", text)[:3])

        return parts(installed) >= parts(minimum)


#
# Test
#


class FreqAdvSegmentTest(ScriptedLoadableModuleTest):
    """The whole flow on the shipped sample with small settings (a few minutes on a CPU)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SampleAttackFlow()

    def test_SampleAttackFlow(self):
        self.delayDisplay("Loading the sample")
        logic = FreqAdvSegmentLogic()
        volume, truth = logic.loadSample()
        before = slicer.util.arrayFromVolume(volume).copy()

        self.delayDisplay("Attacking (FGSM, one step)")
        logic.ensureDependencies(askConfirmation=False)
        results = logic.attack(volume, method="fgsm", groundTruth=truth, device="cpu", eps=4 / 255)

        import numpy as np

        self.assertTrue(np.array_equal(before, slicer.util.arrayFromVolume(volume)), "the input must not change")
        adversarial = slicer.util.arrayFromVolume(results.adversarial_volume)
        perturbation = slicer.util.arrayFromVolume(results.perturbation_volume)
        self.assertEqual(adversarial.shape, before.shape)
        self.assertLess(np.abs(adversarial - (before + perturbation)).max(), 0.1)
        self.assertLessEqual(np.abs(perturbation).max(), 4 / 255 * 425 + 1e-3)
        self.assertGreater(results.clean_segmentation.GetSegmentation().GetNumberOfSegments(), 0)
        self.assertGreater(results.metrics_table.GetNumberOfRows(), 1)
        self.assertEqual(slicer.app.layoutManager().layout, 15601)

        self.delayDisplay("Segmenting only")
        segmentation = logic.segment(volume, device="cpu")
        self.assertGreater(segmentation.GetSegmentation().GetNumberOfSegments(), 0)
        self.delayDisplay("Test passed")
