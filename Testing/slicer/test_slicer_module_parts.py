"""Small parts of the Slicer module that need no MRML scene: the model chooser's list, pruning
of old run folders, the engine command's interpreter, and the extension's metadata files."""

from __future__ import annotations

import ast
import json
import os
import re
import time
from pathlib import Path

import pytest

from FreqAdvSegmentLib.mrml import engine_process, model_choices
from FreqAdvSegmentLib.mrml.logic import prune_run_folders

REPO = Path(__file__).resolve().parents[2]


def test_model_chooser_marks_what_is_installed_and_says_how_to_get_the_rest(tmp_path, monkeypatch):
    monkeypatch.setenv(model_choices.CACHE_ENV, str(tmp_path))
    choices = {c.name: c for c in model_choices.model_choices()}
    registry = json.loads(model_choices.MODELS_JSON.read_text(encoding="utf-8"))
    assert list(choices) == [e["name"] for e in registry]
    assert choices["demo-unet"].installed and choices["demo-unet"].menu_text == "demo-unet"
    bundle = choices["spleen_ct_segmentation"]
    assert not bundle.installed and bundle.menu_text.endswith("(not installed)")
    assert "monai.bundle download" in bundle.how_to_get and str(tmp_path) in bundle.how_to_get
    entry = next(e for e in registry if e["name"] == "spleen_ct_segmentation")
    (tmp_path / entry["filename"]).mkdir()  # "downloaded": now it is installed
    assert {c.name: c for c in model_choices.model_choices()}["spleen_ct_segmentation"].installed
    with pytest.raises(ValueError, match="cannot read the model list"):
        model_choices.model_choices(tmp_path / "missing.json")


def test_only_the_newest_run_folders_are_kept(tmp_path):
    for index in range(7):
        folder = tmp_path / f"run-2026120{index}"
        folder.mkdir()
        (folder / "report.html").write_text("x", encoding="utf-8")
        os.utime(folder, (time.time() - 100 + index, time.time() - 100 + index))
    (tmp_path / "keep-me").mkdir()
    removed = prune_run_folders(tmp_path, keep=3)
    assert sorted(p.name for p in removed) == [f"run-2026120{i}" for i in range(4)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep-me", "run-20261204", "run-20261205", "run-20261206"]


def test_inside_slicer_the_child_is_pythonslicer_never_the_application(tmp_path, monkeypatch):
    import sys
    import types

    fake = types.SimpleNamespace(app=types.SimpleNamespace(applicationDirPath=lambda: str(tmp_path)))
    monkeypatch.setitem(sys.modules, "slicer", fake)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="PythonSlicer is not in"):
        engine_process.python_executable()
    launcher = tmp_path / "PythonSlicer"
    launcher.write_text("#!/bin/sh\n", encoding="utf-8")
    launcher.chmod(0o755)
    assert engine_process.python_executable() == str(launcher)


def test_license_and_contributors():
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License"), "the licence pyproject.toml declares"
    assert 'license = { text = "MIT" }' in (REPO / "pyproject.toml").read_text(encoding="utf-8")
    cmake = re.search(r'set\(EXTENSION_CONTRIBUTORS "([^"]+)"\)', (REPO / "CMakeLists.txt").read_text(encoding="utf-8")).group(1)
    tree = ast.parse((REPO / "FreqAdvSegment" / "FreqAdvSegment.py").read_text(encoding="utf-8"))
    module = next(n.value.value for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "CONTRIBUTORS")
    assert cmake == module, "the extension and the module credit the same people"
    assert all(re.fullmatch(r"[^,()]+ \([^()]+\)", part.strip()) for part in cmake.split(",")), "Name (Affiliation)"
