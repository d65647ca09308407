"""One engine job per session: start it, follow it, cancel it, collect its results or its error.

The job itself is the MRML bridge's :class:`~FreqAdvSegmentLib.mrml.logic.EngineRun`, exactly as
the Slicer module runs it: the input node written as NRRD, ``freqadv attack`` in a child process
(progress from its bars, Cancel kills the process tree), results loaded into the scene only on
success. This class adds what a shared web session needs:

* at most one job at a time; a second start raises :class:`JobBusy` with a sentence for the user;
* every job gets its own folder under the session's work folder, named by a random token that
  download URLs carry; starting the next job deletes the previous folder (and so its token);
* a failure or cancel never raises out of :meth:`JobRunner.collect`: it becomes ``phase`` and
  ``message`` for the page, which stays usable.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..mrml.logic import EngineRun, EngineSettings
from .params import METHOD_TITLES

log = logging.getLogger(__name__)

IDLE, RUNNING, DONE, FAILED, CANCELLED = "idle", "running", "done", "failed", "cancelled"
RESULTS_DIR = "results"


class JobBusy(RuntimeError):
    """A job is already running in this session."""


@dataclass
class JobRequest:
    """What the page asked for: model, device and one attack with its engine parameters."""

    method: str
    params: dict[str, Any] = field(default_factory=dict)
    model: str = "demo-unet"
    device: str = "auto"

    @property
    def title(self) -> str:
        return METHOD_TITLES.get(self.method, self.method)


RunFactory = Callable[..., Any]
"""Builds a run like EngineRun(scene, volume, kind, method, params, ground_truth, settings)."""


class JobRunner:
    """The session's job: at most one running, its folder, its outcome."""

    def __init__(self, work_root: Path, run_factory: RunFactory = EngineRun) -> None:
        self.work_root = Path(work_root)
        self._factory = run_factory
        self._run: Any = None
        self._started = 0.0
        self.request: JobRequest | None = None
        self.phase = IDLE
        self.message = ""
        self.token: str | None = None  # of the finished job whose folder may be downloaded
        self.folder: Path | None = None

    @property
    def running(self) -> bool:
        return self.phase == RUNNING

    @property
    def results_folder(self) -> Path | None:
        """The finished job's output folder (None unless the last job succeeded)."""
        return self.folder / RESULTS_DIR if self.phase == DONE and self.folder else None

    def start(self, scene: Any, volume: Any, request: JobRequest, ground_truth: Any = None) -> None:
        """Start ``request`` on ``volume``; JobBusy while another job runs, ValueError for
        unusable inputs (the previous results are then already gone, as the user asked anew)."""
        if self.running:
            raise JobBusy(self.busy_message())
        self._discard_folder()
        token = secrets.token_urlsafe(16)
        folder = self.work_root / f"job-{token}"
        folder.mkdir(parents=True)
        settings = EngineSettings(model=request.model, device=request.device, work_root=folder,
                                  keep_folder=folder / RESULTS_DIR)
        run = self._factory(scene, volume, "attack", request.method, dict(request.params), ground_truth, settings)
        try:
            run.start()
        except BaseException as err:
            shutil.rmtree(folder, ignore_errors=True)
            self._set(FAILED, f"could not start the job: {err}")
            raise
        self._run, self.request, self.folder, self.token = run, request, folder, None
        self._started = time.monotonic()
        self._set(RUNNING, "starting the engine...")

    def poll(self) -> bool:
        """True while the job's process runs (and refreshes ``message`` with its progress)."""
        if not self.running or self._run is None:
            return False
        if self._run.poll():
            self.message = self.progress_text()
            return True
        return False

    @property
    def fraction(self) -> float | None:
        """0..1 done while running (None: no progress known yet)."""
        return self._run.fraction if self.running and self._run is not None else None

    def busy_message(self) -> str:
        """What a second request is told while a job runs."""
        title = self.request.title if self.request else "an"
        return (f"A {title} job is already running ({self.progress_text()}). "
                "Wait for it to finish or press Cancel before starting another.")

    def progress_text(self) -> str:
        """'fgsm: 1/1, 12 s' style status of the running job."""
        if self._run is None:
            return self.message
        return f"{self._run.status()}, {time.monotonic() - self._started:.0f} s"

    def cancel(self) -> bool:
        """Kill the running job (and its folder); False if none was running."""
        if not self.running or self._run is None:
            return False
        self._run.cancel()
        self._run = None
        self._discard_folder()
        self._set(CANCELLED, "cancelled; nothing was changed")
        return True

    def collect(self) -> Any:
        """After the process exited: the results loaded into the scene (phase DONE, ``token``
        set), or None with phase FAILED and the engine's error in ``message``."""
        if self._run is None:
            return None
        run, self._run = self._run, None
        try:
            results = run.finish()
        except Exception as err:  # any failure is the user's to read, not a server crash
            log.warning("freqadv web job failed: %s", err, exc_info=not isinstance(err, RuntimeError))
            self._discard_folder()
            self._set(FAILED, str(err))
            return None
        self.token = self.folder.name.removeprefix("job-") if self.folder else None
        self._set(DONE, f"done in {time.monotonic() - self._started:.0f} s")
        return results

    def close(self) -> None:
        """Cancel any running job and delete the job folder (server shutdown)."""
        self.cancel()
        self._discard_folder()

    def _set(self, phase: str, message: str) -> None:
        self.phase, self.message = phase, message

    def _discard_folder(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.folder, self.token = None, None
