"""The module file as the Slicer desktop runs it (issue 23 items 7 and 8), checked without a
desktop: it imports on Python 3.9 (Slicer 5.8), states one minimum Slicer version everywhere a
user looks, says it in one line on an older Slicer, and registers its layout only where there
is a layout manager."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "FreqAdvSegment" / "FreqAdvSegment.py"


def _tree() -> ast.Module:
    return ast.parse(SCRIPT.read_text(encoding="utf-8"), feature_version=(3, 9))  # SyntaxError if 3.10+ syntax


def _minimum() -> tuple[int, int]:
    node = next(n for n in _tree().body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "MINIMUM_SLICER")
    return ast.literal_eval(node.value)


def test_module_file_imports_on_python_39():
    """Slicer 5.8's Python 3.9 evaluates annotations unless told not to, and cannot import
    FreqAdvSegmentLib (3.10+): the file postpones annotations and imports the Lib only on a
    Slicer new enough."""
    tree = _tree()
    futures = {a.name for n in tree.body if isinstance(n, ast.ImportFrom) and n.module == "__future__" for a in n.names}
    evaluated = [ast.unparse(a) for n in ast.walk(tree) for a in _annotations(n)
                 if any(isinstance(b, ast.BinOp) and isinstance(b.op, ast.BitOr) for b in ast.walk(a))]
    assert "annotations" in futures or not evaluated, f"X | Y annotations evaluated on 3.9: {evaluated}"
    top = [n for n in tree.body if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("FreqAdvSegmentLib")]
    assert not top, "FreqAdvSegmentLib imported unconditionally at module level"


def _annotations(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.AnnAssign):
        return [node.annotation]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
        return [a.annotation for a in args if a.annotation is not None] + ([node.returns] if node.returns else [])
    return []


def test_an_older_slicer_gets_one_line_naming_the_version():
    tree = _tree()
    function = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "versionProblem")
    namespace: dict = {"MINIMUM_SLICER": _minimum()}
    exec(compile("from __future__ import annotations\n" + ast.unparse(function), str(SCRIPT), "exec"), namespace)
    major, minor = _minimum()
    message = namespace["versionProblem"](5, 8)
    assert f"{major}.{minor} or later" in message and "5.8" in message and "\n" not in message
    assert namespace["versionProblem"](major, minor) is None and namespace["versionProblem"](6, 0) is None


def test_the_minimum_version_is_stated_where_users_look():
    major, minor = _minimum()
    wanted = f"5.{minor}" if major == 5 else f"{major}.{minor}"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert re.search(rf"Supported Slicer versions: 3D Slicer {re.escape(wanted)} and later", readme)
    cmake = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    assert f'set(FreqAdvSegment_MINIMUM_SLICER_VERSION "{wanted}")' in cmake and "VERSION_LESS" in cmake
    assert f"Needs 3D Slicer {wanted} or later" in re.search(r'set\(EXTENSION_DESCRIPTION "([^"]+)"\)', cmake).group(1)
    assert f"Needs 3D Slicer {wanted} or later" in SCRIPT.read_text(encoding="utf-8"), "the module's help says it"
    assert "How torch gets installed" in readme and "installTorch" in readme


def test_layout_registration_without_a_main_window_does_nothing():
    """`Slicer --no-main-window` (the generic tests) has no layout manager: no traceback."""
    from FreqAdvSegmentLib.mrml.views import register_desktop_layout

    assert register_desktop_layout(None) is False
    body = next(n for n in _tree().body if isinstance(n, ast.FunctionDef) and n.name == "_registerLayout")
    assert "register_desktop_layout(slicer.app.layoutManager())" in ast.unparse(body)


def test_self_test_reloads_the_lib_skips_without_packages_and_cleans_up():
    source = SCRIPT.read_text(encoding="utf-8")
    tree = _tree()
    widget = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "FreqAdvSegmentWidget")
    reload = next(f for f in widget.body if isinstance(f, ast.FunctionDef) and f.name == "onReload")
    assert "startswith('FreqAdvSegmentLib.')" in ast.unparse(reload), "Reload drops the Lib's modules too"
    test = ast.unparse(next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "FreqAdvSegmentTest"))
    assert "installPlan()" in test and "plan.needed" in test, "skips on any missing engine package"
    assert "shutil.rmtree(folder" in test and "PanelController()" in test
    assert "importlib.util.find_spec(\"torch\")" not in source


_ON_OLD_SLICER = """
import sys
from unittest import mock
for name in ("qt", "vtk", "slicer", "slicer.i18n", "slicer.parameterNodeWrapper", "slicer.ScriptedLoadableModule", "slicer.util"):
    sys.modules[name] = mock.MagicMock()
sys.modules["slicer"].app.majorVersion, sys.modules["slicer"].app.minorVersion = 5, 8
bases = sys.modules["slicer.ScriptedLoadableModule"]
bases.ScriptedLoadableModule = bases.ScriptedLoadableModuleLogic = bases.ScriptedLoadableModuleTest = type("Base", (), {})
bases.ScriptedLoadableModuleWidget = type("Widget", (), {})
sys.modules["slicer.util"].VTKObservationMixin = type("Mixin", (), {})
sys.modules["slicer.parameterNodeWrapper"].parameterNodeWrapper = lambda cls: cls
sys.path.insert(0, sys.argv[1])
import FreqAdvSegment
print(FreqAdvSegment.VERSION_PROBLEM)
print("FreqAdvSegmentLib" in sys.modules)
"""


def test_module_file_imports_on_a_real_python_39_and_names_the_version(tmp_path):
    """Where a Python 3.9 is at hand (Slicer 5.8's), import the file there with Slicer's modules
    mocked as a 5.8: one line, no traceback, FreqAdvSegmentLib not imported."""
    import shutil
    import subprocess

    import pytest

    candidates = [shutil.which("python3.9"), *map(str, Path.home().glob(".pyenv/versions/3.9*/bin/python3.9"))]
    python = next((c for c in candidates if c and _runs_python_39(c)), None)
    if python is None:
        pytest.skip("no working Python 3.9 on this machine")
    script = tmp_path / "old_slicer.py"
    script.write_text(_ON_OLD_SLICER, encoding="utf-8")
    done = subprocess.run([python, str(script), str(SCRIPT.parent)], capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=60)
    assert done.returncode == 0, done.stderr
    message, lib_imported = done.stdout.strip().splitlines()
    assert message.startswith("FreqAdvSegment needs 3D Slicer 5.10 or later (this is 5.8)")
    assert lib_imported == "False" and "Traceback" not in done.stderr


def _runs_python_39(python: str) -> bool:
    import subprocess

    try:
        done = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2] == (3, 9))"], capture_output=True,
                              text=True, timeout=30)
    except OSError:
        return False
    return done.stdout.strip() == "True"
