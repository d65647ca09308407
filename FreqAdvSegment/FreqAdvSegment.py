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

Needs Slicer 5.10 or later (MINIMUM_SLICER); an older Slicer loads this file (Python 3.9 syntax,
annotations never evaluated) and says so in one line instead of importing FreqAdvSegmentLib.
"""

from __future__ import annotations

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

MINIMUM_SLICER = (5, 10)  # vtkSegment terminology API, Python 3.10+ in FreqAdvSegmentLib


def versionProblem(major: int, minor: int) -> str | None:
    """One line saying which Slicer the module needs, or None when ``major.minor`` will do."""
    if (major, minor) >= MINIMUM_SLICER:
        return None
    return (f"FreqAdvSegment needs 3D Slicer {MINIMUM_SLICER[0]}.{MINIMUM_SLICER[1]} or later (this is {major}.{minor}): "
            "install a newer Slicer from download.slicer.org.")


VERSION_PROBLEM = versionProblem(int(slicer.app.majorVersion), int(slicer.app.minorVersion))
if VERSION_PROBLEM is None:  # FreqAdvSegmentLib needs the newer Python and MRML API
    from FreqAdvSegmentLib.evaluation.results import ReportMetrics
    from FreqAdvSegmentLib.mrml.logic import EngineRun, EngineSettings
    from FreqAdvSegmentLib.mrml.results import ROLE_ATTRIBUTE, OutputNodes, ResultNodes

MODULE_DIR = Path(__file__).resolve().parent
REQUIREMENTS = MODULE_DIR / "Resources" / "requirements.txt"
DEVICES = ("auto", "cpu", "cuda", "mps")
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
Needs 3D Slicer 5.10 or later; PyTorch comes from the PyTorch extension (PyTorch Utils), the other
packages are installed on the first Apply.
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
        if VERSION_PROBLEM:
            self.parent.helpText = VERSION_PROBLEM
            logging.error(VERSION_PROBLEM)
            return
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
    import SampleData

    from FreqAdvSegmentLib.samples.sample_data import SAMPLE_CT_SHA256, sample_ct_path

    path = sample_ct_path()
    digest = SAMPLE_CT_SHA256  # shipped with the file (a test keeps it right): no hashing at every start
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
    from FreqAdvSegmentLib.mrml.views import register_desktop_layout

    register_desktop_layout(slicer.app.layoutManager())  # None under --no-main-window: nothing to do


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
        self._panel = None  # PanelController: which job runs and what the buttons do (see setup)
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
        if VERSION_PROBLEM:  # an older Slicer: say so, build nothing that needs FreqAdvSegmentLib
            label = qt.QLabel(VERSION_PROBLEM)
            label.wordWrap = True
            self.layout.addWidget(label)
            return
        from FreqAdvSegmentLib.mrml.panel_controller import PanelController

        self._panel = PanelController(tr=_)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/FreqAdvSegment.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = FreqAdvSegmentLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent, self.onSceneEndImport)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartSaveEvent, self.onSceneStartSave)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndSaveEvent, self.onSceneEndSave)
        FreqAdvSegmentLogic.runListeners.append(self._updateButtons)  # console runs start and end
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
        if self._panel is None:
            return
        if FreqAdvSegmentLogic.runListeners.count(self._updateButtons):
            FreqAdvSegmentLogic.runListeners.remove(self._updateButtons)
        if self._panel.shutdown() == "wait":  # never kill pip: Slicer's Python would be half-installed
            while self._panel.tick().value == "progress":
                time.sleep(0.2)
        self._releaseJob()
        self.removeObservers()

    def onReload(self) -> None:
        """Reload FreqAdvSegmentLib too (Slicer reloads only this file), so "Reload and Test"
        tests the code on disk."""
        import sys

        for name in [n for n in sys.modules if n == "FreqAdvSegmentLib" or n.startswith("FreqAdvSegmentLib.")]:
            del sys.modules[name]
        ScriptedLoadableModuleWidget.onReload(self)

    def enter(self) -> None:
        if self._panel is not None:  # None: an older Slicer, nothing was built
            self.initializeParameterNode()

    def exit(self) -> None:
        if self._panel is not None and self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def onSceneStartClose(self, caller, event) -> None:
        what = self._panel.scene_closing()  # a run is cancelled; an install goes on; loading results are dropped
        if what == "cancelled":
            self._releaseJob()
            self.ui.statusLabel.text = _("Cancelled: the scene was closed.")
        elif what == "kept":
            self.ui.statusLabel.text = _("The scene was closed; the package installation goes on.")
        self._showResults(None)
        self.setParameterNode(None)

    def onSceneStartSave(self, caller, event) -> None:
        """Saved scenes get a built-in layout (any Slicer shows it); EndSave brings ours back."""
        from FreqAdvSegmentLib.mrml.views import LAYOUT_ID, store_layout_for_saving

        layoutManager = slicer.app.layoutManager()
        self._layoutStoredForSaving = layoutManager is not None and layoutManager.layout == LAYOUT_ID
        if self._layoutStoredForSaving:
            store_layout_for_saving(layoutManager.layoutLogic().GetLayoutNode())

    def onSceneEndSave(self, caller, event) -> None:
        if getattr(self, "_layoutStoredForSaving", False):
            self._layoutStoredForSaving = False
            self.onSceneEndImport(caller, event)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def onSceneEndImport(self, caller, event) -> None:
        """A scene saved by FreqAdvSegment opens in a built-in layout; bring back its own."""
        from FreqAdvSegmentLib.mrml.views import restore_saved_layout

        layoutManager = slicer.app.layoutManager()
        if layoutManager is not None:
            restore_saved_layout(layoutManager.layoutLogic().GetLayoutNode())

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
        """Ask torch, in a PythonSlicer child from a worker thread (this process never imports
        torch), which GPU it can use; the label is updated when it answers (never blocks)."""
        import threading

        from FreqAdvSegmentLib.mrml.dependencies import device_text, nvidia_gpu, probe_torch
        from FreqAdvSegmentLib.mrml.engine_process import python_executable

        self._gpuText = None
        python, environment = python_executable(), slicer.util.startupEnvironment()

        def work():
            report = probe_torch(python, environment)
            self._gpuText = device_text(report, None if report is None or report.get("cuda") else nvidia_gpu())

        threading.Thread(target=work, name="freqadv-gpu", daemon=True).start()
        qt.QTimer.singleShot(500, self._showGpu)

    def _showGpu(self) -> None:
        if self._gpuText is None:
            qt.QTimer.singleShot(500, self._showGpu)
            return
        self.ui.deviceInfoLabel.text = self._gpuText

    # --- attacks -------------------------------------------------------------------------------

    def _fillAttackList(self) -> None:
        """One checkable item per attack of the catalog (read without PyTorch: Slicer's own
        process never imports it; a damaged catalog file says so, and requests can still be typed)."""
        from FreqAdvSegmentLib.mrml.attack_choices import attack_description, attack_methods

        self.ui.attackListWidget.clear()
        try:
            names = attack_methods()
        except ValueError as error:
            item = qt.QListWidgetItem(str(error))
            item.setFlags(qt.Qt.NoItemFlags)
            self.ui.attackListWidget.addItem(item)
            return

        self._updatingAttacks = True
        for name in names:
            spec = attack_description(name)
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
        from FreqAdvSegmentLib.mrml.attack_choices import attack_description

        choice = self._choice(name)
        self.ui.attackPresetComboBox.addItem(_("defaults (the paper)"), "")
        for preset in attack_description(name).presets:
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
        """The buttons as the panel controller says for its state and these inputs."""
        from FreqAdvSegmentLib.mrml.panel_controller import Inputs

        if self._panel is None:
            return
        missingModel = self._missingModel()
        inputs = Inputs(has_input=bool(self._parameterNode and self._parameterNode.inputVolume),
                        has_attack=bool(self._parameterNode and self._parameterNode.attackRequests.strip()),
                        missing_model=missingModel.how_to_get if missingModel else None,
                        console_busy=self.logic.busy and FreqAdvSegmentLogic._activeRun is not self._panel.job)
        buttons = self._panel.buttons(inputs)
        self.ui.applyButton.text = buttons.apply_text
        self.ui.applyButton.enabled = buttons.apply_enabled
        self.ui.applyButton.toolTip = buttons.apply_tip
        self.ui.segmentButton.enabled = buttons.segment_enabled
        self.ui.loadSampleButton.enabled = buttons.inputs_enabled
        self.ui.newOutputsButton.enabled = buttons.inputs_enabled
        self.ui.progressBar.visible = buttons.show_progress

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
        what = self._panel.apply_pressed()  # "cancelled" while running, "ignored" while installing or loading
        if what == "cancelled":
            self._releaseJob()
            self.ui.statusLabel.text = _("Cancelling...")
            self._updateButtons()
            return
        if what != "start" or self._installIfNeeded():
            return
        p = self._parameterNode
        from FreqAdvSegmentLib.mrml.attack_choices import split_requests
        from FreqAdvSegmentLib.mrml.outputs import remembered_outputs

        with slicer.util.tryWithErrorDisplay(_("Could not start the attack."), waitCursor=True):
            run = self.logic.newAttackRun(p.inputVolume, groundTruth=p.groundTruth, settings=self._settings(keepReport=True),
                                          attacks=split_requests(p.attackRequests), reuse=remembered_outputs(p.parameterNode))
            run.closed_surfaces = False  # built one segmentation per timer tick, see _onTimer
            self._startJob(run)

    def onSegmentButton(self) -> None:
        if self._panel.busy or self._installIfNeeded():
            return
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Could not start the segmentation."), waitCursor=True):
            self._startJob(self.logic.newSegmentRun(p.inputVolume, self._settings()))

    def _installIfNeeded(self) -> bool:
        """Missing or too old packages: ask once, then torch through PyTorch Utils and the rest
        through Slicer's pip (see FreqAdvSegmentLib/mrml/dependencies.py); True if the run must
        wait (installed: Slicer restarts; declined or failed: the status line says why)."""
        plan = self.logic.installPlan()
        if not plan.needed:
            return False
        if plan.problem:
            self.ui.statusLabel.text = plan.problem
            slicer.util.errorDisplay(plan.problem)
            return True
        question = _("FreqAdvSegment needs these Python packages:\n\n{packages}\n\nInstall them now? Slicer must be "
                     "restarted afterwards.").format(packages="\n".join(plan.describe()))
        if not slicer.util.confirmOkCancelDisplay(question):
            self.ui.statusLabel.text = _("FreqAdvSegment cannot run without: {packages}").format(packages=", ".join(plan.describe()))
            return True
        with slicer.util.tryWithErrorDisplay(_("Could not install the packages."), waitCursor=True):
            self._startJob(InstallJob(plan), kind="install")
        return True

    def _settings(self, keepReport: bool = False) -> EngineSettings:
        p = self._parameterNode
        return self.logic.engineSettings(p.model, p.device, p.swBatchSize, p.seed, keepReport)

    def _startJob(self, job, kind: str = "run") -> None:
        self.logic.claim(job)  # refuses if a console call is running an engine already
        try:
            self._panel.start(job, kind)
        except BaseException:
            self.logic.release(job)
            raise
        self._logShown = 0
        self.ui.logTextEdit.clear()
        self.ui.progressBar.setRange(0, 0 if job.fraction is None else 100)
        self.ui.progressBar.value = 0
        self.ui.statusLabel.text = job.status()
        self._timer.start()
        self._updateButtons()

    def _releaseJob(self) -> None:
        """The module is free again for console runs (the job ended or was cancelled)."""
        for job in (self._panel.job, self._panel.last_job):
            if job is not None:
                self.logic.release(job)

    def _appendLog(self, run) -> None:
        job = getattr(run, "job", None)
        lines = list(job.lines) if job is not None else []
        for line in lines[self._logShown:]:
            self.ui.logTextEdit.appendPlainText(line)
        self._logShown = len(lines)

    def _onTimer(self) -> None:
        if self._pendingSurfaces:  # one segmentation's 3D surfaces per tick: a moment each
            node = self._pendingSurfaces.pop(0)
            if node.GetScene() is not None:
                node.CreateClosedSurfaceRepresentation()
            if not self._pendingSurfaces and not self._panel.busy:
                self._timer.stop()
                self.ui.statusLabel.text = _("Done.")
            return
        run = self._panel.job
        event = self._panel.tick().value
        if event == "none":  # idle, or a tick that came while results load (showResults processes events)
            if not self._panel.busy:
                self._timer.stop()
            return
        self._appendLog(run)
        if event == "progress":
            if run.fraction is not None:
                self.ui.progressBar.value = int(100 * run.fraction)
            self.ui.statusLabel.text = run.status()
            return
        self._releaseJob()
        if event == "load":
            self._loadResults(run)
        elif event == "installed":
            self._finishInstall(self._panel.last_job)
        elif event == "cancelled":
            self.ui.statusLabel.text = _("Cancelled; the scene was left as it was.")
        elif event == "discard":
            self._panel.last_job.cancel()  # removes its temporary files; nothing is loaded
        if not self._pendingSurfaces:
            self._timer.stop()
        self._updateButtons()

    def _loadResults(self, run) -> None:
        """The engine ended: load its results (the controller is in "loading": Apply is disabled
        while showResults processes events)."""
        self.ui.statusLabel.text = _("Loading the results...")
        self._updateButtons()
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
        except Exception:
            self.ui.statusLabel.text = _("Failed; the scene was left as it was (details in the error message and the Engine log).")
            self.ui.engineLogGroupBox.collapsed = False
        finally:
            self._panel.loaded()

    def _finishInstall(self, job) -> None:
        try:
            with slicer.util.tryWithErrorDisplay(_("Installing the packages failed."), waitCursor=True):
                job.finish()
                self.ui.statusLabel.text = _("Installed.")
                self.logic.offerRestart()
        except Exception:
            self.ui.statusLabel.text = _("Installing the packages failed (details in the error message).")

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
    runListeners = []  # called when a run starts or ends (the panel refreshes its buttons)

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
        self._notify()

    def release(self, run) -> None:
        if FreqAdvSegmentLogic._activeRun is run:
            FreqAdvSegmentLogic._activeRun = None
            self._notify()

    @staticmethod
    def _notify() -> None:
        for listener in list(FreqAdvSegmentLogic.runListeners):
            try:
                listener()
            except Exception:  # a listener of a closed panel must not break the run
                logging.debug(traceback.format_exc())

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

    def installPlan(self):
        """What to install before the engine can run (an InstallPlan: torch through PyTorch
        Utils, the rest through Slicer's pip); ``plan.needed`` is False when nothing is missing."""
        from FreqAdvSegmentLib.mrml.dependencies import plan_install

        return plan_install(REQUIREMENTS, has_pytorch_utils=hasattr(slicer.modules, "pytorchutils"))

    def offerRestart(self) -> None:
        if slicer.util.confirmOkCancelDisplay(_("The packages were installed. Slicer must restart to use them. Restart now?")):
            slicer.util.restart()

    def ensureDependencies(self, askConfirmation: bool = True) -> None:
        """For console use: install what is missing (PyTorch Utils asks before installing
        torch; ``askConfirmation`` asks about the rest), or raise RuntimeError."""
        from FreqAdvSegmentLib.mrml.dependencies import install

        plan = self.installPlan()
        if not plan.needed:
            return
        if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                _("FreqAdvSegment needs: {packages}. Install them now?").format(packages=", ".join(plan.describe()))):
            raise RuntimeError(_("FreqAdvSegment cannot run without: {packages}").format(packages=", ".join(plan.describe())))
        install(plan, slicer)
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
    """An InstallPlan carried out by Slicer's own installers (PyTorch Utils for torch, then
    pip_ensure or pip_install), shaped like an EngineRun for the panel controller. Those installers
    block (with their own progress dialogs), so start() does the work and poll() is then False."""

    fraction = None
    job = None  # no child process of ours: the installers log to Slicer's Python console

    def __init__(self, plan) -> None:
        self.plan = plan
        self.steps = []
        self._error = None

    def start(self) -> None:
        from FreqAdvSegmentLib.mrml.dependencies import install

        try:
            self.steps = install(self.plan, slicer)
        except Exception as error:  # reported by finish(), as an engine's failure is
            self._error = error

    def poll(self) -> bool:
        return False

    def status(self) -> str:
        return _("Installing {packages}...").format(packages=", ".join(self.plan.describe()))

    def finish(self):
        if self._error is not None:
            raise self._error
        return None

    def cancel(self) -> None:
        """Never interrupts an install (a killed pip leaves Slicer's Python half-installed)."""


#
# Test
#


class FreqAdvSegmentTest(ScriptedLoadableModuleTest):
    """The whole flow, offline: a tiny model made here, a small synthetic CT, two one-step
    attacks, then a segmentation driven through the panel's controller; no pip, no PyTorch
    install (skipped, with the missing packages named, where the engine's packages are missing).
    "Reload and Test" reloads FreqAdvSegmentLib too (FreqAdvSegmentWidget.onReload)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        if VERSION_PROBLEM:
            self.delayDisplay(VERSION_PROBLEM)
            return
        self.test_OfflineAttackFlow()

    def test_OfflineAttackFlow(self):
        import shutil
        import tempfile

        plan = FreqAdvSegmentLogic().installPlan()
        if plan.needed:
            self.delayDisplay("FreqAdvSegment's engine test is skipped: missing {packages} (nothing was installed).".format(
                packages=", ".join(plan.describe())))
            return
        folder = Path(tempfile.mkdtemp(prefix="FreqAdvSegmentTest-"))
        try:
            self._attackFlow(folder)
        finally:
            FreqAdvSegmentLogic._activeRun = None
            shutil.rmtree(folder, ignore_errors=True)
        self.assertFalse(folder.exists(), "the test leaves no temporary folder")
        self.delayDisplay("Test passed")

    def _attackFlow(self, folder: Path):
        import numpy as np
        import SimpleITK as sitk

        from FreqAdvSegmentLib.mrml.panel_controller import Event, Inputs, PanelController, State
        from FreqAdvSegmentLib.mrml.segmentations import segmentation_from_labels
        from FreqAdvSegmentLib.mrml.views import LAYOUT_ID, SLICE_VIEWS, slice_node_id
        from FreqAdvSegmentLib.mrml.volumes import volume_node_from_image
        from FreqAdvSegmentLib.samples.phantoms import make_phantom

        self.delayDisplay("Making a tiny model and a synthetic CT")
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
        layoutManager = slicer.app.layoutManager()
        if layoutManager is not None:  # none under --no-main-window
            self.assertEqual(layoutManager.layout, LAYOUT_ID)
            orientations = {n: slicer.mrmlScene.GetNodeByID(slice_node_id(n)).GetOrientation() for n in SLICE_VIEWS}
            self.assertEqual(set(orientations.values()), {"Axial"}, f"every CT view axial: {orientations}")
        with self.assertRaises(RuntimeError):  # one engine at a time
            logic.claim(object())
            logic.claim(object())
        FreqAdvSegmentLogic._activeRun = None

        self.delayDisplay("Segmenting through the panel's controller")
        panel = PanelController()
        settings = logic.engineSettings(str(modelPath), "cpu")
        run = logic.newSegmentRun(volume, settings)
        panel.start(run)
        ready = Inputs(has_input=True, has_attack=True)
        self.assertEqual(panel.buttons(ready).apply_text, "Cancel")
        deadline = time.monotonic() + 300
        while (event := panel.tick()) is Event.PROGRESS and time.monotonic() < deadline:
            slicer.app.processEvents()
            time.sleep(0.1)
        self.assertIs(event, Event.LOAD)
        self.assertFalse(panel.buttons(ready).apply_enabled, "no second run while results load")
        self.assertEqual(panel.apply_pressed(), "ignored")
        segmentation = logic.finishRun(run)
        panel.loaded()
        self.assertIs(panel.state, State.IDLE)
        self.assertIsNotNone(segmentation.GetScene(), "the segmentation was loaded into the scene")


def tinyModel(path: Path) -> Path:
    """A randomly initialised 3D UNet (BTCV's 14 labels, 32^3 windows) saved the engine's way."""
    import torch

    from FreqAdvSegmentLib.models import ModelSpec, build_model, save_model

    spec = ModelSpec(arch="unet", arch_args={"in_channels": 1, "out_channels": 14, "channels": (4, 8), "strides": (2,),
                                             "num_res_units": 0}, target_spacing=(3.0, 3.0, 3.0), roi_size=(32, 32, 32))
    torch.manual_seed(0)
    save_model(path, build_model(spec), spec)
    return path
