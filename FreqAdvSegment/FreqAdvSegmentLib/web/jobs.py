"""One engine job per session: start it, follow it, cancel it, collect its results or its error.

The job itself is the MRML bridge's :class:`~FreqAdvSegmentLib.mrml.logic.EngineRun`, exactly as
the Slicer module runs it: the input node written as NRRD, ``freqadv attack`` in a child process
(progress from its JSON progress lines, Cancel kills the process tree), results loaded into the scene only on
success. This class adds what a shared web session needs:

* at most one job at a time; a second start raises :class:`JobBusy` with a sentence for the user;
* every job gets its own folder under the session's work folder, named by a random token that
  download URLs carry; the last finished job's folder (and so its downloads) stays until the next
  job succeeds, so a cancelled or failed run leaves the previous results usable;
* a failure or cancel never raises out of :meth:`JobRunner.collect`: it becomes ``phase`` and
  ``message`` for the page, which stays usable.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..mrml.logic import EngineSettings
from .engine import WebEngineRun
from .params import request_title

log = logging.getLogger(__name__)

IDLE, RUNNING, DONE, FAILED, CANCELLED = "idle", "running", "done", "failed", "cancelled"
RESULTS_DIR = "results"


class JobBusy(RuntimeError):
    """A job is already running in this session."""


@dataclass
class JobRequest:
    """What the page asked for: model, device and the attacks, as registry request texts
    (``vafa:public-code,q_max=30``); ``kind`` "segment" runs the model only."""

    requests: tuple[str, ...] = ()
    model: str = "demo-unet"
    device: str = "auto"
    kind: str = "attack"

    @property
    def title(self) -> str:
        if self.kind == "segment":
            return "segmentation"
        return " + ".join(request_title(t) for t in self.requests) or "attack"


RunFactory = Callable[..., Any]
"""Builds a run: factory(scene, volume, request, ground_truth, settings) -> an EngineRun-like."""


def engine_run(scene: Any, volume: Any, request: JobRequest, ground_truth: Any, settings: EngineSettings) -> Any:
    """The real run: the bridge's engine process with the request's attacks (or segmentation)."""
    return WebEngineRun(scene, volume, request.kind, ground_truth=ground_truth, settings=settings,
                        attacks=tuple(request.requests))


class JobRunner:
    """The session's job: at most one running, its folder, its outcome."""

    def __init__(self, work_root: Path, run_factory: RunFactory = engine_run) -> None:
        self.work_root = Path(work_root)
        self._factory = run_factory
        self._run: Any = None
        self._started = 0.0
        self.request: JobRequest | None = None
        self.phase = IDLE
        self.message = ""
        self.token: str | None = None  # of the last finished job, whose folder may be downloaded
        self.folder: Path | None = None  # that job's folder
        self.done_request: JobRequest | None = None  # what that job was
        self._pending: Path | None = None  # the running job's folder

    @property
    def running(self) -> bool:
        return self.phase == RUNNING

    @property
    def results_folder(self) -> Path | None:
        """The last finished job's output folder (None if no job has succeeded yet)."""
        return self.folder / RESULTS_DIR if self.folder is not None and self.token is not None else None

    def start(self, scene: Any, volume: Any, request: JobRequest, ground_truth: Any = None) -> None:
        """Start ``request`` on ``volume``; JobBusy while another job runs, ValueError for
        unusable inputs. The previous results stay until this job succeeds."""
        if self.running:
            raise JobBusy(self.busy_message())
        token = secrets.token_urlsafe(16)
        folder = self.work_root / f"job-{token}"
        folder.mkdir(parents=True)
        settings = EngineSettings(model=request.model, device=request.device, work_root=folder,
                                  keep_folder=folder / RESULTS_DIR)
        try:
            run = self._factory(scene, volume, request, ground_truth, settings)
            run.start()
        except BaseException as err:
            shutil.rmtree(folder, ignore_errors=True)
            self._set(FAILED, f"could not start the job: {err}")
            raise
        self._run, self.request, self._pending = run, request, folder
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
        self._discard_pending()
        kept = "the previous results are still shown" if self.token else "nothing was changed"
        self._set(CANCELLED, f"cancelled; {kept}")
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
            self._discard_pending()
            self._set(FAILED, str(err))
            return None
        self._discard_folder()  # the previous results are replaced only now
        self.folder, self._pending, self.done_request = self._pending, None, self.request
        self.token = self.folder.name.removeprefix("job-") if self.folder else None
        self._set(DONE, f"done in {time.monotonic() - self._started:.0f} s")
        return results

    def close(self) -> None:
        """Cancel any running job and delete every job folder (a new input, server shutdown)."""
        self.cancel()
        self._discard_folder()
        self._set(IDLE, "")

    def _set(self, phase: str, message: str) -> None:
        self.phase, self.message = phase, message

    def _discard_pending(self) -> None:
        if self._pending is not None:
            shutil.rmtree(self._pending, ignore_errors=True)
        self._pending = None

    def _discard_folder(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.folder, self.token, self.done_request = None, None, None
