"""The engine in a child process: ``python -m FreqAdvSegmentLib.cli ...``, its progress, Cancel.

Slicer must stay responsive while a model runs for minutes, and a cancelled run must leave
nothing behind, so long work runs in a child Python (PythonSlicer on the desktop) through the
same command line everyone else uses. The child is asked (``FREQADV_PROGRESS=json``) for its
progress as JSON lines on stderr (``{"event": "progress", "stage": "vafa", "step": 8, "total":
20, ...}``, see job/progress.py) instead of the bars a person sees; every other line is kept as
the run's text. Cancel kills the whole process tree (the PythonSlicer launcher starts the real
interpreter as its own child).

    job = EngineJob(engine_command("attack", ["ct.nrrd", "-o", "out", "--format", "nrrd"]))
    job.start()
    while job.poll() is None: ...job.progress...
    job.check()          # raises EngineError with the child's last lines if it failed

No slicer or Qt import here: the desktop module drives it from a QTimer, tests from a loop.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from ..job.progress import JSON, PROGRESS_ENV, Progress, parse_progress

__all__ = ["EngineError", "EngineJob", "Progress", "parse_progress", "overall_fraction", "engine_command",
           "engine_environment", "python_executable", "kill_process_tree"]

PACKAGE_PARENT = Path(__file__).resolve().parent.parent.parent  # the folder holding FreqAdvSegmentLib


class EngineError(RuntimeError):
    """The engine process failed; the message ends with its last output lines."""


def overall_fraction(progress: Progress | None, stages: Sequence[str], segment_share: float = 0.1) -> float:
    """0..1 over a whole run: segmentation first (``segment_share``), then each stage in
    ``stages`` an equal part of the rest."""
    if progress is None:
        return 0.0
    if progress.stage == "segment":
        return segment_share * progress.fraction
    if progress.stage not in stages:
        return segment_share
    part = (1.0 - segment_share) / len(stages)
    return segment_share + part * (stages.index(progress.stage) + progress.fraction)


def python_executable() -> str:
    """The interpreter for the child: inside Slicer its PythonSlicer launcher (which sets up
    Slicer's Python environment), elsewhere this interpreter. Inside Slicer, sys.executable is
    the application itself, not a Python: a missing launcher is an error, not a fallback."""
    slicer = sys.modules.get("slicer")
    if slicer is not None and hasattr(slicer, "app"):
        folder = str(slicer.app.applicationDirPath())  # Slicer's bin folder holds PythonSlicer
        launcher = shutil.which("PythonSlicer", path=folder) or shutil.which("PythonSlicer")
        if launcher is None:
            raise FileNotFoundError(f"PythonSlicer is not in {folder} nor on the PATH: reinstall Slicer, or set "
                                    "EngineSettings(python=...) to a Python that has FreqAdvSegment's packages")
        return launcher
    return sys.executable


def engine_command(command: str, arguments: Sequence[str], python: str | None = None) -> list[str]:
    """Argument list of ``python -m FreqAdvSegmentLib.cli COMMAND ARGUMENTS``."""
    return [python or python_executable(), "-m", "FreqAdvSegmentLib.cli", command, *map(str, arguments)]


def engine_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment in which the child finds this copy of FreqAdvSegmentLib, flushes output and
    reports its progress as JSON lines."""
    env = dict(os.environ if base is None else base)
    env[PROGRESS_ENV] = JSON
    paths = [str(PACKAGE_PARENT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PYTHONIOENCODING", "utf-8")
    return env


class EngineJob:
    """One child process: started, polled, cancelled, checked."""

    def __init__(self, command: Sequence[str], env: dict[str, str] | None = None, keep_lines: int = 400) -> None:
        self.command = list(command)
        self.env = env if env is not None else engine_environment()
        self.lines: deque[str] = deque(maxlen=keep_lines)
        self.progress: Progress | None = None
        self.cancelled = False
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        """Start the child (in its own process group, so Cancel can end its whole tree)."""
        if self._process is not None:
            raise RuntimeError("this engine job was already started")
        # Own process group (Cancel ends the whole tree); on Windows also no console window.
        kwargs: dict = {"start_new_session": True} if os.name != "nt" else {
            "creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW}
        self._process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env, **kwargs)
        self._reader = threading.Thread(target=self._read, name="freqadv-engine-output", daemon=True)
        self._reader.start()

    def poll(self) -> int | None:
        """The exit code, or None while running."""
        if self._process is None:
            raise RuntimeError("start() the engine job first")
        code = self._process.poll()
        if code is not None and self._reader is not None:
            self._reader.join(timeout=5)  # collect the last lines before anyone reads them
        return code

    def wait(self, on_progress: Callable[[Progress | None], None] | None = None,
             keep_alive: Callable[[], None] | None = None, interval: float = 0.1) -> int:
        """Block until the child exits, calling ``on_progress`` and ``keep_alive`` (e.g. Qt's
        processEvents) every ``interval`` seconds; returns the exit code."""
        while (code := self.poll()) is None:
            if on_progress is not None:
                on_progress(self.progress)
            if keep_alive is not None:
                keep_alive()
            time.sleep(interval)
        return code

    def cancel(self) -> None:
        """Kill the child and everything it started; safe to call at any time."""
        self.cancelled = True
        if self._process is None or self._process.poll() is not None:
            return
        kill_process_tree(self._process)

    def check(self) -> None:
        """Raise EngineError (with the child's last lines) unless it exited with code 0."""
        code = self.poll()
        if code is None:
            raise RuntimeError("the engine job is still running")
        if self.cancelled:
            raise EngineError("the engine run was cancelled")
        if code != 0:
            tail = "\n".join(list(self.lines)[-15:])
            raise EngineError(f"the FreqAdvSegment engine failed (exit code {code}):\n{tail}")

    def _read(self) -> None:
        """Collect output lines; tqdm redraws with carriage returns, so those end lines too."""
        assert self._process is not None and self._process.stdout is not None
        pending = b""
        while chunk := self._process.stdout.read1(4096):  # returns what is there, b"" at the end
            pending += chunk
            *complete, pending = re.split(rb"[\r\n]", pending)
            for raw in complete:
                self._add(raw)
        if pending:
            self._add(pending)

    def _add(self, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace").rstrip()
        if not line:
            return
        progress = parse_progress(line)
        if progress is not None:
            self.progress = progress  # progress is state, not text: the error tail stays readable
            return
        self.lines.append(line)


def kill_process_tree(process: subprocess.Popen) -> None:
    """End ``process`` and its descendants: on POSIX its process group (it leads one, see
    EngineJob.start), first politely then by force; on Windows ``taskkill /T``."""
    if os.name == "nt":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True, check=False,
                       creationflags=subprocess.CREATE_NO_WINDOW)  # else a console window flashes
        process.wait(timeout=10)
        return
    _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=3)
    except subprocess.TimeoutExpired:
        pass
    # Also reaches grandchildren that outlive the leader or ignore SIGTERM.
    _signal_group(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def _signal_group(group: int, sig: signal.Signals) -> None:
    try:
        os.killpg(group, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the whole group is gone already
