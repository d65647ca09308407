"""FreqAdvSegment: attack a CT segmentation model in the frequency domain (VAFA) and see what breaks.

The thin Qt layer of the extension. All work is in FreqAdvSegmentLib: the engine (PyTorch, MONAI)
runs in a child PythonSlicer process, and FreqAdvSegmentLib.mrml turns its files into nodes.
From the Python console:

    logic = slicer.util.getModuleLogic("FreqAdvSegment")
    segmentation = logic.segment(volumeNode)
    results = logic.attack(volumeNode, method="vafa", q_max=20, steps=20)
    results = logic.attack(volumeNode, attacks=["vafa:public-code,q_max=30", "pgd"])
    results.attacks["pgd"].changes_segmentation       # where it broke: "<organ> lost" segments
    results.adversarial_volume, results.perturbation_volume, results.metrics_table
"""

import logging
import time
import traceback
from importlib.metadata import PackageNotFoundError, version
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

from FreqAdvSegmentLib.evaluation.results import ReportMetrics
from FreqAdvSegmentLib.mrml.logic import EngineRun, EngineSettings
from FreqAdvSegmentLib.mrml.results import ROLE_ATTRIBUTE, OutputNodes, ResultNodes

MODULE_DIR = Path(__file__).resolve().parent
REQUIREMENTS = MODULE_DIR / "Resources" / "requirements.txt"
MINIMUM_TORCH = "2.8"
DEVICES = ("auto", "cpu", "cuda")
CONTRIBUTORS = "FreqAdvSegment maintainers (FreqAdvSegment project)"
KEPT_RUNS = 5  # engine output folders (reports) kept under Slicer's temporary folder


#
# Module
#


class FreqAdvSegment(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("FreqAdvSegment")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = [CONTRIBUTORS]
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

    from FreqAdvSegmentLib.samples.sample_data import sample_ct_path

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

    ``attackRequests`` holds the attacks of a run as request texts, separated by ';'
    (``vafa:public-code,q_max=30.0; pgd``): the attack panel writes it from the attack registry's
    fields and presets, and the engine's --method takes each request as it is. The nodes a run
    made are remembered as node references of the parameter node (mrml/outputs.py), by role.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    groundTruth: vtkMRMLSegmentationNode
    model: str = "demo-unet"
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    swBatchSize: Annotated[int, WithinRange(1, 64)] = 2
    seed: Annotated[int, WithinRange(0, 2147483647)] = 0
    attackRequests: str = "vafa:table5; pgd"


#
# Widget
#


class FreqAdvSegmentWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._run = None  # the EngineRun or install job in progress, if any
        self._results = None  # the last ResultNodes
        self._pendingSurfaces = []  # segmentations whose 3D surfaces are still to build
        self._choices = {}  # attack name -> AttackChoices the panel holds
        self._fieldWidgets = {}
        self._updatingAttacks = False
        self._logShown = 0
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
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent, self.onSceneEndImport)
        self._timer.connect("timeout()", self._onTimer)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.segmentButton.connect("clicked(bool)", self.onSegmentButton)
        self.ui.loadSampleButton.connect("clicked(bool)", self.onLoadSampleButton)
        self.ui.modelBrowseButton.connect("clicked(bool)", self.onModelBrowseButton)
        self.ui.modelFolderButton.connect("clicked(bool)", self.onModelFolderButton)
        self.ui.modelPresetComboBox.connect("activated(int)", self.onModelPresetChosen)
        self.ui.modelLineEdit.connect("textChanged(QString)", self._updateModelStatus)
        self.ui.attackListWidget.connect("currentRowChanged(int)", self._showAttackFields)
        self.ui.attackListWidget.connect("itemChanged(QListWidgetItem*)", self._onAttackTicked)
        self.ui.attackPresetComboBox.connect("activated(int)", self._onPresetChosen)
        self.ui.attackRequestsLineEdit.connect("editingFinished()", self._readRequests)
        self.ui.showLayoutButton.connect("clicked(bool)", self.onShowLayoutButton)
        self.ui.openReportButton.connect("clicked(bool)", self.onOpenReportButton)
        self.ui.newOutputsButton.connect("clicked(bool)", self.onNewOutputsButton)
        self._fillModelChoices()
        self._fillAttackList()
        self._detectGpu()
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
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def onSceneStartClose(self, caller, event) -> None:
        self._cancelRun()  # its results would land in a scene that is going away
        self._showResults(None)
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def onSceneEndImport(self, caller, event) -> None:
        """A scene saved by FreqAdvSegment opens in a built-in layout; bring back its own."""
        from FreqAdvSegmentLib.mrml.views import restore_saved_layout

        layoutNode = slicer.app.layoutManager().layoutLogic().GetLayoutNode()
        restore_saved_layout(layoutNode)

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = self.logic.firstInputCandidate()
        self._hideResultsFromInputs()

    def _hideResultsFromInputs(self) -> None:
        """Volumes made by earlier runs (adversarial CTs, perturbations) are not offered as the
        input CT: attacking a perturbation is never what was meant."""
        ids = [n.GetID() for n in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode") if n.GetAttribute(ROLE_ATTRIBUTE)]
        self.ui.inputVolumeSelector.sortFilterProxyModel().hiddenNodeIDs = ids

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Widgets carry a "SlicerParameterName" dynamic property in the .ui file.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self._readRequests()
        self._updateButtons()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        self._updateButtons()

    # --- model ---------------------------------------------------------------------------------

    def _fillModelChoices(self) -> None:
        from FreqAdvSegmentLib.mrml.model_choices import model_choices

        self.ui.modelPresetComboBox.clear()
        try:
            self._modelChoices = model_choices()
        except ValueError as error:
            logging.error(f"FreqAdvSegment: {error}")
            self._modelChoices = []
        for choice in self._modelChoices:
            self.ui.modelPresetComboBox.addItem(choice.menu_text, choice.name)
            self.ui.modelPresetComboBox.setItemData(self.ui.modelPresetComboBox.count - 1, choice.description, qt.Qt.ToolTipRole)

    def _updateModelStatus(self, text: str = "") -> None:
        name = self.ui.modelLineEdit.text.strip()
        choice = next((c for c in self._modelChoices if c.name == name), None)
        if choice is not None:
            status = _("Installed.") if choice.installed else _("Not installed. To get it: {how}").format(how=choice.how_to_get)
        elif name and Path(name).expanduser().exists():
            status = _("A folder (MONAI bundle).") if Path(name).expanduser().is_dir() else _("A checkpoint file.")
        else:
            status = _("Not a known model, file or folder: choose one above.") if name else ""
        self.ui.modelStatusLabel.text = status
        self._updateButtons()

    def onModelPresetChosen(self, index: int) -> None:
        self._parameterNode.model = self.ui.modelPresetComboBox.itemData(index)

    def onModelBrowseButton(self) -> None:
        path = qt.QFileDialog.getOpenFileName(self.parent, _("Choose a model checkpoint"), "",
                                              _("Model checkpoints (*.safetensors *.pt *.pth *.ckpt *.bin);;All files (*)"))
        if path:
            self._parameterNode.model = path

    def onModelFolderButton(self) -> None:
        path = qt.QFileDialog.getExistingDirectory(self.parent, _("Choose a model folder (MONAI bundle)"))
        if path:
            self._parameterNode.model = path

    def _detectGpu(self) -> None:
        """nvidia-smi in a worker thread; the label is updated when it answers (never blocks)."""
        import threading

        from FreqAdvSegmentLib.mrml.model_choices import detect_gpu_text

        self._gpuText = None

        def work():
            self._gpuText = detect_gpu_text()

        threading.Thread(target=work, name="freqadv-gpu", daemon=True).start()
        qt.QTimer.singleShot(500, self._showGpu)

    def _showGpu(self) -> None:
        if self._gpuText is None:
            qt.QTimer.singleShot(500, self._showGpu)
            return
        self.ui.deviceInfoLabel.text = self._gpuText

    # --- attacks -------------------------------------------------------------------------------

    def _fillAttackList(self) -> None:
        """One checkable item per registered attack (the registry needs PyTorch: without it the
        list says so, and requests can still be typed)."""
        from FreqAdvSegmentLib.mrml.attack_choices import attack_methods

        self.ui.attackListWidget.clear()
        try:
            names = attack_methods()
        except ImportError:
            item = qt.QListWidgetItem(_("(install PyTorch with Apply to list the attacks)"))
            item.setFlags(qt.Qt.NoItemFlags)
            self.ui.attackListWidget.addItem(item)
            return
        from FreqAdvSegmentLib.attacks import registry

        self._updatingAttacks = True
        for name in names:
            spec = registry.get(name)
            item = qt.QListWidgetItem(f"{spec.title} ({name})")
            item.setData(qt.Qt.UserRole, name)
            item.setToolTip(spec.summary)
            item.setFlags(item.flags() | qt.Qt.ItemIsUserCheckable)
            item.setCheckState(qt.Qt.Unchecked)
            self.ui.attackListWidget.addItem(item)
        self._updatingAttacks = False

    def _attackItems(self) -> list:
        items = [self.ui.attackListWidget.item(i) for i in range(self.ui.attackListWidget.count)]
        return [i for i in items if i.data(qt.Qt.UserRole)]

    def _readRequests(self) -> None:
        """Parameter node (or the typed line) -> ticks, presets and fields."""
        from FreqAdvSegmentLib.mrml.attack_choices import AttackChoices, split_requests

        if self._parameterNode is None or not self._attackItems():
            return
        try:
            choices = [AttackChoices.from_request(t) for t in split_requests(self._parameterNode.attackRequests)]
        except ValueError as error:
            self.ui.statusLabel.text = _("Requests: {error}").format(error=error)
            return
        self._choices = {c.method: c for c in choices}
        self._updatingAttacks = True
        for item in self._attackItems():
            item.setCheckState(qt.Qt.Checked if item.data(qt.Qt.UserRole) in self._choices else qt.Qt.Unchecked)
        self._updatingAttacks = False
        self._showAttackFields(self.ui.attackListWidget.currentRow)

    def _writeRequests(self) -> None:
        from FreqAdvSegmentLib.mrml.attack_choices import join_requests

        ticked = [i.data(qt.Qt.UserRole) for i in self._attackItems() if i.checkState() == qt.Qt.Checked]
        text = join_requests([self._choice(name).request() for name in ticked])
        if self._parameterNode is not None and text != self._parameterNode.attackRequests:
            self._parameterNode.attackRequests = text

    def _choice(self, name: str):
        from FreqAdvSegmentLib.mrml.attack_choices import AttackChoices

        return self._choices.setdefault(name, AttackChoices(name))

    def _onAttackTicked(self, item) -> None:
        if not self._updatingAttacks:
            self._writeRequests()

    def _onPresetChosen(self, index: int) -> None:
        name = self._currentAttack()
        if name is None:
            return
        choice = self._choice(name)
        choice.preset = self.ui.attackPresetComboBox.itemData(index) or None
        choice.values = {}  # a preset is a starting point: its values replace the fields
        self._showAttackFields(self.ui.attackListWidget.currentRow)
        self._writeRequests()

    def _currentAttack(self):
        item = self.ui.attackListWidget.currentItem()
        return item.data(qt.Qt.UserRole) if item is not None else None

    def _showAttackFields(self, row: int = -1) -> None:
        """The selected attack's preset menu and one field per registry parameter."""
        layout = self.ui.attackFieldsWidget.layout()
        while layout.count():
            widget = layout.takeAt(0).widget()
            if widget is not None:
                widget.deleteLater()
        self._fieldWidgets = {}
        name = self._currentAttack()
        self.ui.attackPresetComboBox.clear()
        if name is None:
            return
        from FreqAdvSegmentLib.attacks import registry

        choice = self._choice(name)
        self.ui.attackPresetComboBox.addItem(_("defaults (the paper)"), "")
        for preset in registry.get(name).presets:
            self.ui.attackPresetComboBox.addItem(preset.name, preset.name)
            self.ui.attackPresetComboBox.setItemData(self.ui.attackPresetComboBox.count - 1, preset.description, qt.Qt.ToolTipRole)
        self.ui.attackPresetComboBox.setCurrentIndex(max(0, self.ui.attackPresetComboBox.findData(choice.preset or "")))
        for field in choice.fields():
            widget = self._fieldWidget(field, choice.values.get(field.name, field.default))
            widget.toolTip = f"{field.help} [{field.unit}]" if field.unit else field.help
            layout.addRow(f"{field.label}:", widget)
            self._fieldWidgets[field.name] = (field, widget)

    def _fieldWidget(self, field, value):
        """A spin box, combo box or check box for one PanelField (bounds from the registry)."""
        if field.kind == "choice":
            widget = qt.QComboBox()
            for option in field.choices:
                widget.addItem("none" if option is None else str(option))
            widget.setCurrentIndex(max(0, widget.findText("none" if value is None else str(value))))
            widget.connect("currentIndexChanged(int)", lambda _i, n=field.name: self._onFieldChanged(n))
        elif field.kind == "bool":
            widget = qt.QCheckBox()
            widget.checked = bool(value)
            widget.connect("toggled(bool)", lambda _b, n=field.name: self._onFieldChanged(n))
        else:
            widget = qt.QSpinBox() if field.kind == "int" else qt.QDoubleSpinBox()
            if field.kind == "float":
                widget.decimals = 4
            number = int if field.kind == "int" else float
            lowest = field.minimum if field.minimum is not None else -1e9
            if field.optional:
                widget.specialValueText = "none"  # one step below the minimum stands for None (q_init = q_min)
                lowest -= 1 if field.kind == "int" else 0.01
            widget.minimum = number(max(lowest, -2**31 + 1))
            widget.maximum = number(min(field.maximum if field.maximum is not None else 1e9, 2**31 - 1))
            widget.value = widget.minimum if value is None else value
            widget.suffix = f" {field.unit}" if field.unit == "/255" else ""
            widget.connect("valueChanged(double)" if field.kind == "float" else "valueChanged(int)",
                           lambda _v, n=field.name: self._onFieldChanged(n))
        return widget

    def _onFieldChanged(self, fieldName: str) -> None:
        name = self._currentAttack()
        field, widget = self._fieldWidgets[fieldName]
        if field.kind == "choice":
            text = widget.currentText
            value = None if text == "none" else text
        elif field.kind == "bool":
            value = widget.checked
        else:
            value = None if field.optional and widget.value == widget.minimum else widget.value
        self._choice(name).values[fieldName] = value
        self._writeRequests()

    # --- buttons -------------------------------------------------------------------------------

    def _updateButtons(self, caller=None, event=None) -> None:
        running = self._run is not None or self.logic.busy
        hasInput = bool(self._parameterNode and self._parameterNode.inputVolume)
        hasAttack = bool(self._parameterNode and self._parameterNode.attackRequests.strip())
        missingModel = self._missingModel()
        self.ui.applyButton.text = _("Cancel") if self._run is not None else _("Apply")
        self.ui.applyButton.enabled = self._run is not None or (hasInput and hasAttack and not missingModel and not self.logic.busy)
        if self._run is not None:
            tip = _("Stop the engine; the scene is left as it was.")
        elif self.logic.busy:
            tip = _("An engine run started from the Python console is in progress.")
        elif not hasInput:
            tip = _("Choose an input CT first.")
        elif not hasAttack:
            tip = _("Tick at least one attack.")
        elif missingModel:
            tip = _("The model {name} is not installed: {how}").format(name=missingModel.name, how=missingModel.how_to_get)
        else:
            tip = _("Segment, attack, and show the clean and adversarial results side by side.")
        self.ui.applyButton.toolTip = tip
        self.ui.segmentButton.enabled = hasInput and not running and not missingModel

    def _missingModel(self):
        """The chosen registry model if it is not installed (checked before any engine starts)."""
        name = self._parameterNode.model.strip() if self._parameterNode else ""
        choice = next((c for c in getattr(self, "_modelChoices", []) if c.name == name), None)
        return choice if choice is not None and not choice.installed else None

    def onLoadSampleButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not load the sample."), waitCursor=True):
            volume, truth = self.logic.loadSample()
            self._parameterNode.inputVolume = volume
            self._parameterNode.groundTruth = truth
            slicer.util.setSliceViewerLayers(background=volume, fit=True)

    def onNewOutputsButton(self) -> None:
        from FreqAdvSegmentLib.mrml.outputs import forget_outputs

        forget_outputs(self._parameterNode.parameterNode)
        self.ui.statusLabel.text = _("The next run makes new nodes; these results stay as they are.")

    # --- running -------------------------------------------------------------------------------

    def onApplyButton(self) -> None:
        if self._run is not None:
            self._cancelRun()
            return
        if self._startInstallIfNeeded():
            return
        p = self._parameterNode
        from FreqAdvSegmentLib.mrml.attack_choices import split_requests
        from FreqAdvSegmentLib.mrml.outputs import remembered_outputs

        with slicer.util.tryWithErrorDisplay(_("Could not start the attack."), waitCursor=True):
            run = self.logic.newAttackRun(p.inputVolume, groundTruth=p.groundTruth, settings=self._settings(keepReport=True),
                                          attacks=split_requests(p.attackRequests), reuse=remembered_outputs(p.parameterNode))
            run.closed_surfaces = False  # built one segmentation per timer tick, see _onTimer
            self._startRun(run)

    def onSegmentButton(self) -> None:
        if self._startInstallIfNeeded():
            return
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Could not start the segmentation."), waitCursor=True):
            self._startRun(self.logic.newSegmentRun(p.inputVolume, self._settings()))

    def _startInstallIfNeeded(self) -> bool:
        """Missing or too old packages: ask, then install them in a background process whose
        output goes to the log panel (the GUI stays responsive); True if an install started."""
        missing = self.logic.missingDependencies()
        if not missing:
            return False
        question = _("FreqAdvSegment needs these Python packages:\n\n{packages}\n\nInstall them now? This runs in the "
                     "background (see Engine log); Slicer must be restarted afterwards.").format(packages="\n".join(missing))
        if not slicer.util.confirmOkCancelDisplay(question):
            self.ui.statusLabel.text = _("FreqAdvSegment cannot run without: {packages}").format(packages=", ".join(missing))
            return True
        self._startRun(self.logic.newInstallJob(missing))
        return True

    def _settings(self, keepReport: bool = False) -> EngineSettings:
        p = self._parameterNode
        return self.logic.engineSettings(p.model, p.device, p.swBatchSize, p.seed, keepReport)

    def _startRun(self, run) -> None:
        self.logic.claim(run)  # refuses if a console call is running an engine already
        try:
            run.start()
        except BaseException:
            self.logic.release(run)
            raise
        self._run = run
        self._logShown = 0
        self.ui.logTextEdit.clear()
        self.ui.progressBar.visible = True
        self.ui.progressBar.setRange(0, 0 if run.fraction is None else 100)
        self.ui.progressBar.value = 0
        self.ui.statusLabel.text = run.status()
        self._timer.start()
        self._updateButtons()

    def _appendLog(self, run) -> None:
        lines = list(run.job.lines) if run is not None and run.job is not None else []
        for line in lines[self._logShown:]:
            self.ui.logTextEdit.appendPlainText(line)
        self._logShown = len(lines)

    def _onTimer(self) -> None:
        if self._pendingSurfaces:  # one segmentation's 3D surfaces per tick: a moment each
            node = self._pendingSurfaces.pop(0)
            if node.GetScene() is not None:
                node.CreateClosedSurfaceRepresentation()
            if not self._pendingSurfaces and self._run is None:
                self._timer.stop()
                self.ui.statusLabel.text = _("Done.")
            return
        run = self._run
        if run is None:
            self._timer.stop()
            return
        self._appendLog(run)
        if run.poll():
            if run.fraction is not None:
                self.ui.progressBar.value = int(100 * run.fraction)
            self.ui.statusLabel.text = run.status()
            return
        self._run = None
        self.logic.release(run)
        self.ui.statusLabel.text = _("Loading the results...")
        try:
            with slicer.util.tryWithErrorDisplay(_("The FreqAdvSegment run failed."), waitCursor=True):
                result = self.logic.finishRun(run)
            if isinstance(result, ResultNodes):
                from FreqAdvSegmentLib.mrml.outputs import remember_outputs

                remember_outputs(self._parameterNode.parameterNode, result)
                self._hideResultsFromInputs()
                self._showResults(result)
                self._pendingSurfaces = result.segmentations()
                self.ui.statusLabel.text = _("Building the 3D surfaces...")
                self._timer.start()
            else:
                self.ui.statusLabel.text = _("Done.")
            if getattr(run, "restartNeeded", False):
                self.logic.offerRestart()
        except Exception:
            self.ui.statusLabel.text = _("Failed; the scene was left as it was (details in the error message and the Engine log).")
            self.ui.engineLogGroupBox.collapsed = False
        finally:
            self.ui.progressBar.visible = False
            self._updateButtons()

    def _cancelRun(self) -> None:
        if self._run is None:
            return
        self._timer.stop()
        self._run.cancel()
        self.logic.release(self._run)
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
    """What each attack did, from report.json, and where it broke (the organs that lost most)."""
    report = ReportMetrics.from_json(results.report)
    lines = []
    reference = report.reference
    if report.clean is not None:
        lines.append(_("Clean: mean Dice {dice:.3f} vs {reference}.").format(dice=report.clean.mean_dice, reference=reference))
    for method, attack in report.attacks.items():
        m = attack.metrics
        lines.append(_("{method}: mean Dice {dice:.3f} vs {reference}; {flips:.2f}% of labels flipped; "
                       "L-inf {linf:.1f} HU; SSIM {ssim:.4f}; {seconds:.0f} s.").format(
            method=method.upper(), dice=m.vs_reference.mean_dice, reference=reference,
            flips=100 * m.flip_rate, linf=m.perturbation_hu_linf,
            ssim=m.perturbation.ssim, seconds=attack.seconds))
        nodes = results.attacks.get(method)
        if nodes is not None and nodes.changed_voxels:
            worst = ", ".join(f"{name} ({count})" for name, count in list(nodes.changed_voxels.items())[:3])
            lines.append(_("    where it broke (voxels): {worst}").format(worst=worst))
    return "\n".join(lines)


#
# Logic
#


class FreqAdvSegmentLogic(ScriptedLoadableModuleLogic):
    """Everything the module does, callable from the Python console; see the module docstring.

    One engine at a time: a run started from the panel or the console holds the module until it
    ends; a second one is refused with a message saying so."""

    _activeRun = None  # shared by every logic instance: the panel's and the console's

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return FreqAdvSegmentParameterNode(super().getParameterNode())

    # --- one engine at a time ------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return FreqAdvSegmentLogic._activeRun is not None

    def claim(self, run) -> None:
        if FreqAdvSegmentLogic._activeRun is not None and FreqAdvSegmentLogic._activeRun is not run:
            raise RuntimeError(_("FreqAdvSegment is already running an engine (from the module panel or the Python "
                                 "console); wait for it to finish or cancel it, then try again."))
        FreqAdvSegmentLogic._activeRun = run

    def release(self, run) -> None:
        if FreqAdvSegmentLogic._activeRun is run:
            FreqAdvSegmentLogic._activeRun = None

    def _blocking(self, run):
        """Run ``run`` to the end from a console call, the GUI kept alive, holding the module."""
        self.claim(run)
        try:
            return run.run(keep_alive=slicer.app.processEvents)
        finally:
            self.release(run)

    def firstInputCandidate(self):
        """The first scalar volume that is not a result of an earlier run."""
        for node in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode"):
            if not node.GetAttribute(ROLE_ATTRIBUTE):
                return node
        return None

    # --- dependencies --------------------------------------------------------------------------

    def missingDependencies(self) -> list[str]:
        """Requirements to install before the engine can run: torch (missing or older than
        MINIMUM_TORCH) and the engine's packages from Resources/requirements.txt."""
        missing = missingRequirements(REQUIREMENTS)
        try:
            installed = version("torch").split("+")[0]
        except PackageNotFoundError:
            installed = None
        if installed is None or not versionAtLeast(installed, MINIMUM_TORCH):
            missing.insert(0, f"torch>={MINIMUM_TORCH}")
        return missing

    def newInstallJob(self, requirements: list[str]):
        """A background pip install (PythonSlicer -m pip install ...), run like an engine job:
        output in the log panel, Cancel works, the GUI stays responsive."""
        return InstallJob(requirements)

    def offerRestart(self) -> None:
        if slicer.util.confirmOkCancelDisplay(_("The packages were installed. Slicer must restart to use them. Restart now?")):
            slicer.util.restart()

    def ensureDependencies(self, askConfirmation: bool = True) -> None:
        """For console use: install what is missing (blocking, the GUI kept alive), or raise
        RuntimeError if the user declines."""
        missing = self.missingDependencies()
        if not missing:
            return
        if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                _("FreqAdvSegment needs: {packages}. Install them now?").format(packages=", ".join(missing))):
            raise RuntimeError(_("FreqAdvSegment cannot run without: {packages}").format(packages=", ".join(missing)))
        job = self.newInstallJob(missing)
        self._blocking(job)
        self.offerRestart()

    # --- running -------------------------------------------------------------------------------

    def engineSettings(self, model: str = "demo-unet", device: str = "auto", swBatchSize: int | None = None,
                       seed: int | None = None, keepReport: bool = False) -> EngineSettings:
        """Settings for a run; with keepReport, the engine's folder (report.html) is kept under
        Slicer's temporary folder (the newest KEPT_RUNS only: older ones are removed)."""
        from FreqAdvSegmentLib.mrml.logic import prune_run_folders

        work = Path(slicer.app.temporaryPath) / "FreqAdvSegment"
        work.mkdir(parents=True, exist_ok=True)
        keep = None
        if keepReport:
            prune_run_folders(work, keep=KEPT_RUNS - 1)
            keep = work / time.strftime("run-%Y%m%d-%H%M%S")
        # The child is a PythonSlicer process: give it Slicer's startup environment, as
        # slicer.util.launchConsoleProcess does, so the launcher sets it up from scratch.
        return EngineSettings(model=model, device=device, sw_batch_size=swBatchSize, seed=seed, work_root=work,
                              keep_folder=keep, environment=slicer.util.startupEnvironment())

    def newAttackRun(self, volumeNode, method="vafa", params=None, groundTruth=None, settings=None, outputs=None,
                     attacks=(), reuse=None) -> EngineRun:
        """An EngineRun (not started) that segments and attacks ``volumeNode`` with ``method``
        and ``params`` or with several request texts (``attacks``)."""
        return EngineRun(slicer.mrmlScene, volumeNode, "attack", method, dict(params or {}), groundTruth,
                         settings or self.engineSettings(keepReport=True), outputs, attacks=tuple(attacks), reuse=reuse)

    def newSegmentRun(self, volumeNode, settings=None, outputSegmentation=None) -> EngineRun:
        """An EngineRun (not started) that only segments ``volumeNode``."""
        return EngineRun(slicer.mrmlScene, volumeNode, "segment", settings=settings or self.engineSettings(),
                         segmentation_node=outputSegmentation)

    def finishRun(self, run, show: bool = True):
        """Load a finished run's results (and show them)."""
        result = run.finish()
        if show and isinstance(result, ResultNodes):
            self.showResults(result)
        elif show and result is not None:
            result.GetDisplayNode().SetVisibility(True)
        return result

    def segment(self, volumeNode, model: str = "demo-unet", device: str = "auto", outputSegmentation=None):
        """Segment ``volumeNode`` with ``model``; returns the segmentation node. Blocking."""
        run = self.newSegmentRun(volumeNode, self.engineSettings(model, device), outputSegmentation)
        segmentation = self._blocking(run)
        segmentation.GetDisplayNode().SetVisibility(True)
        return segmentation

    def attack(self, volumeNode, method: str = "vafa", groundTruth=None, model: str = "demo-unet", device: str = "auto",
               outputs: OutputNodes | None = None, show: bool = True, attacks=(), **params) -> ResultNodes:
        """Segment ``volumeNode``, attack the model with ``method`` (``name`` or ``name:preset``;
        any parameter of the attack registry as a keyword: q_max, steps, renormalize, eps, ...) or
        with several request texts (``attacks=["vafa:public-code,q_max=30", "pgd"]``), and load
        each attack's adversarial volume, perturbation, segmentation and where-it-broke
        segmentation, the clean segmentation and the metrics table. Blocking (Slicer stays
        responsive; a second call while one runs is refused)."""
        run = self.newAttackRun(volumeNode, method, params, groundTruth, self.engineSettings(model, device, keepReport=True),
                                outputs, attacks)
        results = self._blocking(run)
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

    def loadSample(self):
        """The shipped sample CT and its labels as a volume and a segmentation node."""
        from FreqAdvSegmentLib.files.images import read_image
        from FreqAdvSegmentLib.mrml.display import show_ct
        from FreqAdvSegmentLib.mrml.segmentations import segmentation_from_labels
        from FreqAdvSegmentLib.mrml.volumes import volume_node_from_image
        from FreqAdvSegmentLib.samples.sample_data import sample_ct_path, sample_labels_path

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


class InstallJob:
    """``PythonSlicer -m pip install REQUIREMENTS`` in the background, shaped like an EngineRun
    (start, poll, status, fraction, finish, cancel, job.lines), so the panel runs it the same way."""

    fraction = None
    restartNeeded = True

    def __init__(self, requirements: list[str]) -> None:
        from FreqAdvSegmentLib.mrml.engine_process import EngineJob, python_executable

        self.requirements = list(requirements)
        command = [python_executable(), "-m", "pip", "install", "--progress-bar", "off", *self.requirements]
        self.job = EngineJob(command, slicer.util.startupEnvironment())

    def start(self) -> None:
        self.job.start()

    def poll(self) -> bool:
        return self.job.poll() is None

    def status(self) -> str:
        last = self.job.lines[-1] if self.job.lines else ""
        return _("Installing {packages}... {last}").format(packages=", ".join(self.requirements), last=last[:80])

    def run(self, keep_alive=None):
        self.start()
        self.job.wait(keep_alive=keep_alive)
        return self.finish()

    def finish(self):
        self.job.check()  # EngineError with pip's last lines if it failed
        return None

    def cancel(self) -> None:
        self.job.cancel()


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
    """The whole flow, offline: a tiny model made here, a small synthetic CT, two one-step
    attacks; no pip, no PyTorch install (skipped with a message when PyTorch is missing)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_OfflineAttackFlow()

    def test_OfflineAttackFlow(self):
        import importlib.util
        import tempfile

        if importlib.util.find_spec("torch") is None or importlib.util.find_spec("monai") is None:
            self.delayDisplay("PyTorch/MONAI are not installed: FreqAdvSegment's engine test is skipped (nothing was installed).")
            return
        import numpy as np
        import SimpleITK as sitk

        from FreqAdvSegmentLib.mrml.segmentations import segmentation_from_labels
        from FreqAdvSegmentLib.mrml.volumes import volume_node_from_image
        from FreqAdvSegmentLib.samples.phantoms import make_phantom

        self.delayDisplay("Making a tiny model and a synthetic CT")
        folder = Path(tempfile.mkdtemp(prefix="FreqAdvSegmentTest-"))
        modelPath = tinyModel(folder / "tiny.safetensors")
        hu, labels = make_phantom((48, 48, 32), seed=1)
        image = sitk.GetImageFromArray(np.ascontiguousarray(hu.transpose(2, 1, 0)))
        image.SetSpacing((3.0, 3.0, 3.0))
        labelImage = sitk.GetImageFromArray(np.ascontiguousarray(labels.transpose(2, 1, 0)))
        labelImage.CopyInformation(image)
        volume = volume_node_from_image(slicer.mrmlScene, image, "phantom CT")
        truth = segmentation_from_labels(slicer.mrmlScene, labelImage, "phantom labels", reference_volume=volume)
        before = slicer.util.arrayFromVolume(volume).copy()
        mtime = volume.GetImageData().GetMTime()

        self.delayDisplay("Attacking (FGSM and noise, one step each)")
        logic = FreqAdvSegmentLogic()
        results = logic.attack(volume, groundTruth=truth, model=str(modelPath), device="cpu", attacks=["fgsm", "gn"])

        self.assertTrue(np.array_equal(before, slicer.util.arrayFromVolume(volume)), "the input must not change")
        self.assertEqual(volume.GetImageData().GetMTime(), mtime)
        self.assertEqual(list(results.attacks), ["fgsm", "gn"])
        for nodes in results.attacks.values():
            adversarial = slicer.util.arrayFromVolume(nodes.adversarial_volume)
            perturbation = slicer.util.arrayFromVolume(nodes.perturbation_volume)
            self.assertLess(np.abs(adversarial - (before + perturbation)).max(), 0.1)
            self.assertIsNotNone(nodes.changes_segmentation)
        self.assertGreater(results.metrics_table.GetNumberOfRows(), 1)
        from FreqAdvSegmentLib.mrml.views import LAYOUT_ID

        self.assertEqual(slicer.app.layoutManager().layout, LAYOUT_ID)
        with self.assertRaises(RuntimeError):  # one engine at a time
            logic.claim(object())
            logic.claim(object())
        FreqAdvSegmentLogic._activeRun = None
        self.delayDisplay("Test passed")


def tinyModel(path: Path) -> Path:
    """A randomly initialised 3D UNet (BTCV's 14 labels, 32^3 windows) saved the engine's way."""
    import torch

    from FreqAdvSegmentLib.models import ModelSpec, build_model, save_model

    spec = ModelSpec(arch="unet", arch_args={"in_channels": 1, "out_channels": 14, "channels": (4, 8), "strides": (2,),
                                             "num_res_units": 0}, target_spacing=(3.0, 3.0, 3.0), roi_size=(32, 32, 32))
    torch.manual_seed(0)
    save_model(path, build_model(spec), spec)
    return path
