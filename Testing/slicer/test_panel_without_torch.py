"""Issue 21/23: Slicer's GUI process lists every attack, its fields and presets without PyTorch.

The panel's code (every FreqAdvSegmentLib module FreqAdvSegment.py imports outside its self-test)
is imported in a child Python where ``import torch`` and ``import monai`` raise: once with
ImportError (not installed), once with OSError (a DLL that failed to load, as on Windows). The
attack list it produces must be complete and identical to the one the live registry gives."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from FreqAdvSegmentLib.attacks import registry

MODULE_FILE = Path(__file__).resolve().parents[2] / "FreqAdvSegment" / "FreqAdvSegment.py"
SELF_TEST = {"FreqAdvSegmentTest", "tinyModel"}  # run only by the self-test, which may import PyTorch

CHILD = r"""
import importlib, importlib.abc, json, sys

mode, modules = sys.argv[1], json.loads(sys.argv[2])

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("torch", "monai"):
            if mode == "oserror":
                raise OSError(f"[WinError 1114] A dynamic link library (DLL) initialization routine failed ({name})")
            raise ImportError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, Refuse())
for name in ("torch", "monai"):
    try:
        importlib.import_module(name)
    except (ImportError, OSError):
        pass
    else:
        raise SystemExit(f"{name} imported despite the refusal")

for module in modules:
    importlib.import_module(module)

{DESCRIBE}

listing = describe()
loaded = sorted(m for m in sys.modules if m.partition(".")[0] in ("torch", "monai"))
print(json.dumps({"listing": listing, "loaded": loaded}))
"""

DESCRIBE = """
def describe():
    from dataclasses import asdict

    from FreqAdvSegmentLib.mrml.attack_choices import AttackChoices, attack_description, attack_fields, attack_methods

    out = {}
    for name in attack_methods():
        info = attack_description(name)
        presets = [None, *(p.name for p in info.presets)]
        out[name] = {
            "title": info.title, "summary": info.summary,
            "presets": {p.name: p.description for p in info.presets},
            "fields": {str(p): [asdict(f) for f in attack_fields(name, p)] for p in presets},
            "requests": {str(p): AttackChoices(name, p).request() for p in presets},
        }
    return out
"""


def _describe() -> dict:
    """The same listing in this process, where the live registry answers (JSON round trip as in the child)."""
    scope: dict = {}
    exec(DESCRIBE, scope)
    return json.loads(json.dumps(scope["describe"]()))


def panel_modules() -> list[str]:
    """Every FreqAdvSegmentLib module FreqAdvSegment.py imports, at module level or in the panel,
    logic and install code (not in the self-test)."""
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name in SELF_TEST:
            return
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("FreqAdvSegmentLib"):
            found.add(node.module)
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(("FreqAdvSegmentLib", "torch", "monai")))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return sorted(found)


def test_the_panel_code_has_no_torch_import_of_its_own():
    modules = panel_modules()
    assert "FreqAdvSegmentLib.mrml.attack_choices" in modules and "FreqAdvSegmentLib.mrml.logic" in modules
    assert not [m for m in modules if m.partition(".")[0] in ("torch", "monai")]


@pytest.mark.parametrize("refusal", ["importerror", "oserror"])
def test_the_panel_lists_every_attack_with_fields_and_presets_while_torch_and_monai_raise(refusal):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(MODULE_FILE.parent), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.run(
        [sys.executable, "-c", CHILD.replace("{DESCRIBE}", DESCRIBE), refusal, json.dumps(panel_modules())],
        capture_output=True, text=True, encoding="utf-8", errors="replace", env=env, timeout=120,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert result["loaded"] == [], "the panel's code imported torch/monai (partially)"
    listing = result["listing"]
    assert list(listing) == list(registry.names()), "every registered attack, in registry order"
    assert listing == _describe(), "the panel's list must equal the live registry's, field by field"
    vafa = listing["vafa"]
    assert set(vafa["presets"]) == {p.name for p in registry.get("vafa").presets}
    assert [f["name"] for f in vafa["fields"]["None"]] == list(registry.get("vafa").param_names)
    assert vafa["requests"]["public-code"] == "vafa:public-code"
