"""Static checks of the Slicer extension's files (no Slicer needed).

Slicer installs only what FreqAdvSegment/CMakeLists.txt lists, and binds the panel through widget
names and SlicerParameterName properties of the .ui file: a file or widget forgotten there breaks
the extension in Slicer only, where CI cannot see it. These tests catch that here.
"""

from __future__ import annotations

import ast
import json
import re
import struct
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "FreqAdvSegment"
SCRIPT = MODULE / "FreqAdvSegment.py"
UI = MODULE / "Resources" / "UI" / "FreqAdvSegment.ui"
IGNORED_PARTS = {"__pycache__", "freqadvsegment.egg-info"}


def _cmake_list(cmake: Path, variable: str) -> list[str]:
    text = cmake.read_text(encoding="utf-8")
    match = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S)
    assert match, f"{cmake} does not set {variable}"
    return [item.replace("${MODULE_NAME}", "FreqAdvSegment") for item in match.group(1).split()]


def _module_files(pattern: str, under: Path = MODULE) -> set[str]:
    files = set()
    for path in under.rglob(pattern):
        relative = path.relative_to(MODULE)
        if path.is_file() and not IGNORED_PARTS & set(relative.parts) and relative.parts[0] != "Testing":
            files.add(relative.as_posix())
    return files


def test_every_script_is_listed_in_cmake():
    listed = set(_cmake_list(MODULE / "CMakeLists.txt", "MODULE_PYTHON_SCRIPTS"))
    missing = _module_files("*.py") - listed
    assert not missing, f"not in FreqAdvSegment/CMakeLists.txt (run scripts/update_slicer_cmake.py): {sorted(missing)}"


def test_every_resource_is_listed_in_cmake():
    listed = set(_cmake_list(MODULE / "CMakeLists.txt", "MODULE_PYTHON_RESOURCES"))
    resources = _module_files("*", MODULE / "Resources") | _module_files("*", MODULE / "FreqAdvSegmentLib" / "resources")
    missing = {f for f in resources if not f.endswith(".py")} - listed
    assert not missing, f"not in FreqAdvSegment/CMakeLists.txt (run scripts/update_slicer_cmake.py): {sorted(missing)}"


def test_every_listed_file_exists():
    cmake = MODULE / "CMakeLists.txt"
    listed = _cmake_list(cmake, "MODULE_PYTHON_SCRIPTS") + _cmake_list(cmake, "MODULE_PYTHON_RESOURCES")
    absent = [f for f in listed if not (MODULE / f).is_file()]
    assert not absent, f"listed in FreqAdvSegment/CMakeLists.txt but missing: {absent}"


def test_shipped_models_are_listed_in_cmake():
    listed = set(_cmake_list(MODULE / "CMakeLists.txt", "MODULE_PYTHON_RESOURCES"))
    registry = json.loads((MODULE / "FreqAdvSegmentLib" / "resources" / "Models.json").read_text(encoding="utf-8"))
    shipped = {f"FreqAdvSegmentLib/resources/{entry['file']}" for entry in registry if "file" in entry}
    assert shipped <= listed, f"shipped model weights not listed: {sorted(shipped - listed)}"


def test_python_tests_are_registered():
    text = (MODULE / "Testing" / "Python" / "CMakeLists.txt").read_text(encoding="utf-8")
    for script in (MODULE / "Testing" / "Python").glob("*.py"):
        assert f"slicer_add_python_unittest(SCRIPT {script.name})" in text, script.name
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in (MODULE / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "WITH_GENERIC_TESTS" in (MODULE / "CMakeLists.txt").read_text(encoding="utf-8")


# --- the .ui and the Qt layer --------------------------------------------------------------------


def _ui_widgets() -> dict[str, ElementTree.Element]:
    return {w.get("name"): w for w in ElementTree.parse(UI).iter("widget")}


def _parameter_names(tree: ast.Module) -> dict[str, str]:
    """Annotated fields of the @parameterNodeWrapper class: name -> annotation source."""
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(getattr(d, "id", None) == "parameterNodeWrapper" for d in node.decorator_list):
            return {s.target.id: ast.unparse(s.annotation) for s in node.body if isinstance(s, ast.AnnAssign)}
    raise AssertionError("no @parameterNodeWrapper class in FreqAdvSegment.py")


def test_every_widget_the_code_names_exists_in_the_ui():
    source = SCRIPT.read_text(encoding="utf-8")
    named = set(re.findall(r"self\.ui\.(\w+)", source))
    # Widgets toggled by name (METHOD_WIDGETS / TOGGLED_WIDGETS) and their labels.
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") in ("METHOD_WIDGETS", "TOGGLED_WIDGETS"):
            named |= {c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant) and isinstance(c.value, str)}
    named -= set(_parameter_names(tree)) | {"vafa", "pgd", "bim", "fgsm", "gn", "cw"}
    widgets = _ui_widgets()
    missing = sorted(n for n in named if n not in widgets)
    assert not missing, f"FreqAdvSegment.py uses widgets the .ui does not have: {missing}"


def test_every_parameter_is_bound_to_one_widget_of_a_fitting_kind():
    parameters = _parameter_names(ast.parse(SCRIPT.read_text(encoding="utf-8")))
    bound = {}
    for name, widget in _ui_widgets().items():
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound.setdefault(prop.find("string").text, []).append(widget)
    assert set(bound) == set(parameters), f"unbound: {set(parameters) - set(bound)}, unknown: {set(bound) - set(parameters)}"
    fits = {"vtkMRML": {"qMRMLNodeComboBox"}, "Choice": {"QComboBox"}, "float": {"QDoubleSpinBox"},
            "int": {"QSpinBox"}, "bool": {"QCheckBox"}, "str": {"QLineEdit"}}
    for name, widgets in bound.items():
        assert len(widgets) == 1, f"{name} is bound to several widgets"
        annotation = parameters[name]
        kind = next(k for k in fits if k in annotation)
        assert widgets[0].get("class") in fits[kind], f"{name} ({annotation}) is bound to a {widgets[0].get('class')}"


def test_mrml_widgets_receive_the_scene():
    tree = ElementTree.parse(UI)
    receivers = {c.findtext("receiver") for c in tree.iter("connection") if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    mrml = {w.get("name") for w in tree.iter("widget") if w.get("class", "").startswith("qMRML") and w.get("class") != "qMRMLWidget"}
    assert mrml <= receivers, f"connect mrmlSceneChanged to: {sorted(mrml - receivers)}"


def test_module_sections_exist():
    titles = [w.find("property/string").text for w in _ui_widgets().values() if w.get("class") == "ctkCollapsibleButton"]
    assert titles == ["Inputs", "Model", "Attack", "Outputs", "Results"]


def test_qt_layer_imports_no_engine_heavyweights_at_module_level():
    """Slicer imports FreqAdvSegment.py at startup, before PyTorch/MONAI may be installed."""
    tree = ast.parse(SCRIPT.read_text(encoding="utf-8"))
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    modules = {(n.module or "") if isinstance(n, ast.ImportFrom) else a.name for n in top for a in getattr(n, "names", [])}
    assert not {m for m in modules if m.split(".")[0] in ("torch", "monai")}
    bridge = MODULE / "FreqAdvSegmentLib" / "mrml"
    for path in bridge.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(import|from)\s+(qt|ctk|torch|monai)\b", text, re.M), f"{path.name} must not import Qt or torch at import time"


def test_engine_never_imports_the_bridge_or_slicer():
    """One direction of dependency: Qt layer -> bridge -> engine. The bridge's consumers (the CLI's
    scene writer, the web viewer) may import it; the engine proper never imports it or slicer."""
    consumers = {"mrml", "web", "cli"}
    for path in (MODULE / "FreqAdvSegmentLib").rglob("*.py"):
        relative = path.relative_to(MODULE / "FreqAdvSegmentLib")
        if consumers & set(relative.parts[:-1]):
            continue
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(import|from)\s+(slicer|qt|vtk|\S*\bmrml)\b", text, re.M), path


# --- requirements, metadata, images --------------------------------------------------------------


def test_slicer_requirements_follow_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    lines = [line.strip() for line in (MODULE / "Resources" / "requirements.txt").read_text(encoding="utf-8").splitlines()]
    required = {line for line in lines if line and not line.startswith("#")}
    # torch comes from the PyTorch extension; SimpleITK ships with Slicer.
    expected = {d for d in project if not re.match(r"(torch|SimpleITK)\b", d, re.I)}
    assert required == expected


def test_extension_metadata():
    text = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    for key in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert re.search(rf'set\(EXTENSION_{key} "[^"]+"\)', text), key
    assert 'set(EXTENSION_CATEGORY "Segmentation")' in text
    assert 'set(EXTENSION_DEPENDS "PyTorch")' in text
    assert "add_subdirectory(FreqAdvSegment)" in text
    screenshot = re.search(r'EXTENSION_SCREENSHOTURLS "[^"]*/main/([^"]+)"', text).group(1)
    assert (REPO / screenshot).is_file(), "the screenshot the metadata points to is in the repository"
    icon = re.search(r'EXTENSION_ICONURL "[^"]*/main/([^"]+)"', text).group(1)
    assert (REPO / icon).is_file()


def test_extensions_index_entry():
    entry = json.loads((REPO / "FreqAdvSegment.json").read_text(encoding="utf-8"))
    allowed = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
               "build_subdirectory", "enabled", "tier"}
    assert {"$schema", "category", "scm_url"} <= set(entry) <= allowed
    assert entry["category"] == "Segmentation" and entry["build_dependencies"] == ["PyTorch"]
    assert 1 <= entry["tier"] <= 5


@pytest.mark.parametrize("path", ["Resources/Icons/FreqAdvSegment.png", "FreqAdvSegment/Resources/Icons/FreqAdvSegment.png"])
def test_icon_is_a_128_pixel_png(path):
    data = (REPO / path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (128, 128)
