"""The module's .ui loaded by a real Qt (PyQt5 from PyPI, offscreen), as Slicer's loadUI would.

Slicer's own widget classes (qMRMLNodeComboBox, ctkCollapsibleButton, ...) are not on PyPI; each
is replaced by the Qt class its <customwidget> entry says it extends, and its Slicer-only
properties become dynamic properties. Then: every widget FreqAdvSegment.py names exists (as
Slicer's childWidgetVariables would find it), every SlicerParameterName names a parameter of the
parameter node and every parameter is bound, through a widget of a kind the parameter node
wrapper can connect to.
"""

from __future__ import annotations

import ast
import io
import os
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
QtWidgets = pytest.importorskip("PyQt5.QtWidgets", reason="PyQt5 is not installed (pip install PyQt5)")
from PyQt5 import uic  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "FreqAdvSegment" / "FreqAdvSegment.py"
UI = REPO / "FreqAdvSegment" / "Resources" / "UI" / "FreqAdvSegment.ui"
# What the parameter node wrapper connects each annotation to (slicer.parameterNodeWrapper's
# GUI connectors), by the real Qt base class.
FITS = {"vtkMRML": QtWidgets.QWidget, "Choice": QtWidgets.QComboBox, "float": QtWidgets.QDoubleSpinBox,
        "int": QtWidgets.QSpinBox, "bool": QtWidgets.QCheckBox, "str": QtWidgets.QLineEdit}


def _qt_ui_text() -> str:
    """The .ui with Slicer's classes replaced by their Qt bases (properties made dynamic)."""
    tree = ElementTree.parse(UI)
    root = tree.getroot()
    bases = {c.findtext("class"): c.findtext("extends") for c in root.iter("customwidget")}
    for widget in root.iter("widget"):
        cls = widget.get("class")
        if cls in bases:
            widget.set("class", bases[cls])
            for prop in widget.findall("property"):
                if prop.get("name") not in ("geometry", "toolTip", "title", "enabled"):
                    prop.set("stdset", "0")  # a Slicer property (nodeTypes, text, ...): keep as dynamic
    custom = root.find("customwidgets")
    if custom is not None:
        root.remove(custom)
    connections = root.find("connections")
    if connections is not None:  # mrmlSceneChanged exists only on Slicer's classes (checked below)
        root.remove(connections)
    return ElementTree.tostring(root, encoding="unicode")


@pytest.fixture(scope="module")
def panel():
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["test"])
    widget = uic.loadUi(io.StringIO(_qt_ui_text()))
    yield widget
    widget.deleteLater()
    app.processEvents()


def _parameters() -> dict[str, str]:
    tree = ast.parse(SCRIPT.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(getattr(d, "id", None) == "parameterNodeWrapper" for d in node.decorator_list):
            return {s.target.id: ast.unparse(s.annotation) for s in node.body if isinstance(s, ast.AnnAssign)}
    raise AssertionError("no @parameterNodeWrapper class in FreqAdvSegment.py")


def test_every_widget_the_module_names_exists(panel):
    named = set(re.findall(r"self\.ui\.(\w+)", SCRIPT.read_text(encoding="utf-8")))
    assert named, "the module names its widgets through self.ui"
    missing = sorted(n for n in named if panel.findChild(QtWidgets.QWidget, n) is None)
    assert not missing, f"FreqAdvSegment.py uses widgets the .ui does not have: {missing}"


def test_every_parameter_name_maps_to_a_parameter_through_a_fitting_widget(panel):
    parameters = _parameters()
    bound: dict[str, list] = {}
    for widget in panel.findChildren(QtWidgets.QWidget):
        name = widget.property("SlicerParameterName")
        if name:
            bound.setdefault(name, []).append(widget)
    assert set(bound) == set(parameters), f"unbound: {set(parameters) - set(bound)}, unknown: {set(bound) - set(parameters)}"
    for name, widgets in bound.items():
        assert len(widgets) == 1, f"{name} is bound to several widgets"
        kind = next(k for k in FITS if k in parameters[name])
        assert isinstance(widgets[0], FITS[kind]), f"{name} ({parameters[name]}) is bound to a {type(widgets[0]).__name__}"


def test_the_dynamic_attack_panel_has_its_containers(panel):
    fields = panel.findChild(QtWidgets.QWidget, "attackFieldsWidget")
    assert isinstance(fields.layout(), QtWidgets.QFormLayout), "fields are added with layout().addRow"
    assert isinstance(panel.findChild(QtWidgets.QWidget, "attackListWidget"), QtWidgets.QListWidget)
    log = panel.findChild(QtWidgets.QWidget, "logTextEdit")
    assert isinstance(log, QtWidgets.QPlainTextEdit) and log.isReadOnly()


def test_mrml_widgets_receive_the_scene():
    tree = ElementTree.parse(UI)
    receivers = {c.findtext("receiver") for c in tree.iter("connection") if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    mrml = {w.get("name") for w in tree.iter("widget") if w.get("class", "").startswith("qMRML") and w.get("class") != "qMRMLWidget"}
    assert mrml and mrml <= receivers, f"connect mrmlSceneChanged to: {sorted(mrml - receivers)}"
