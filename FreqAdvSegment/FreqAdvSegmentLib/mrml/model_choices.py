"""What the module's model chooser lists: every registry model, installed or not, and how to get it.

Read from resources/Models.json as plain JSON and the file system only (no PyTorch: the panel
lists models before PyTorch is installed). The paths follow FreqAdvSegmentLib.models.registry:
shipped models under resources/, downloaded ones in $FREQADV_MODEL_DIR (default
~/.cache/freqadvsegment/models) under their "filename".
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

MODELS_JSON = Path(__file__).resolve().parent.parent / "resources" / "Models.json"
CACHE_ENV = "FREQADV_MODEL_DIR"


@dataclass(frozen=True)
class ModelChoice:
    """One registry model as the chooser shows it."""

    name: str
    description: str
    installed: bool
    how_to_get: str  # "" when installed: the one command (or the download page) otherwise
    path: Path | None

    @property
    def menu_text(self) -> str:
        return self.name if self.installed else f"{self.name} (not installed)"


def model_folder() -> Path:
    """Where downloaded models are looked for (the registry's cache folder)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "freqadvsegment" / "models").expanduser()


def model_choices(registry: str | os.PathLike = MODELS_JSON) -> list[ModelChoice]:
    """Every model of the registry file; ValueError naming the file if it cannot be read."""
    try:
        entries = json.loads(Path(registry).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read the model list {registry}: {error}") from error
    choices = []
    for entry in entries:
        if "file" in entry:
            path = Path(registry).parent / entry["file"]
            how = "" if path.exists() else "reinstall FreqAdvSegment: this model ships with it"
        else:
            path = model_folder() / entry.get("filename", entry["name"])
            command = entry.get("download", "").replace("CACHE_DIR", str(model_folder()))
            how = "" if path.exists() else (command or f"download it from {entry.get('url', '?')} and save it as {path}")
        choices.append(ModelChoice(entry["name"], entry.get("description", ""), path.exists(), how, path))
    return choices


def detect_gpu_text() -> str:
    """One line about the GPU the engine would use, without importing PyTorch into Slicer: from
    nvidia-smi (a second at most), else "no NVIDIA GPU found" (the engine then runs on the CPU)."""
    import shutil
    import subprocess

    tool = shutil.which("nvidia-smi")
    if tool is None:
        return "No NVIDIA GPU found: auto runs on the CPU."
    try:
        out = subprocess.run([tool, "--query-gpu=name,memory.total", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=3, check=False, **_hidden_console()).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return f"GPU: {out.splitlines()[0]} (auto uses it)" if out else "nvidia-smi found no GPU: auto runs on the CPU."


def _hidden_console() -> dict:
    import subprocess

    return {"creationflags": subprocess.CREATE_NO_WINDOW} if os.name == "nt" else {}
