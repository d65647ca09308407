"""What the module panel does, as a state machine without Qt: the widget binds buttons to it.

One job at a time (an install, or an engine run), in one of five states:

    idle        nothing runs; Apply and Segment start one when the inputs allow
    installing  packages are being installed; nothing can cancel it (a killed pip leaves
                Slicer's Python half-installed), and closing the scene leaves it running
    running     the engine's child process runs; Apply reads "Cancel"; closing the scene
                cancels it (its results would land in a scene that is gone)
    loading     the engine finished and its results are being loaded into the scene (this
                processes Qt events): every button is disabled, so no second run starts
    cancelling  Cancel was pressed; the child process tree is being ended

The widget asks :meth:`PanelController.buttons` what to show, tells it what the user did
(:meth:`apply_pressed`, :meth:`scene_closing`, :meth:`shutdown`) and polls it from its timer
(:meth:`tick`), which returns what the widget must do next. A job is anything with
``start()``, ``poll() -> bool`` (True while it runs), ``cancel()`` and ``status()``: an
EngineRun, or the module's install job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any


class State(str, Enum):
    IDLE = "idle"
    INSTALLING = "installing"
    RUNNING = "running"
    LOADING = "loading"
    CANCELLING = "cancelling"


class Event(str, Enum):
    """What :meth:`PanelController.tick` tells the widget to do."""

    NONE = "none"  # nothing runs
    PROGRESS = "progress"  # still running: show its status and progress
    LOAD = "load"  # the engine ended: load its results now, then call loaded()
    INSTALLED = "installed"  # the install ended: check it, offer the restart
    CANCELLED = "cancelled"  # a cancelled job has ended: the scene is as it was
    DISCARD = "discard"  # the engine ended after its scene was closed: drop the results


@dataclass(frozen=True)
class Inputs:
    """What the panel's fields allow."""

    has_input: bool = False
    has_attack: bool = False
    missing_model: str | None = None  # "how to get it" text when the chosen model is not installed
    console_busy: bool = False  # an engine run from the Python console holds the module


@dataclass(frozen=True)
class Buttons:
    """Text, enabled state and tooltip of the panel's controls in one state."""

    apply_text: str
    apply_enabled: bool
    apply_tip: str
    segment_enabled: bool
    inputs_enabled: bool  # sample, model and attack choosers, "new outputs"
    show_progress: bool


class PanelController:
    """The panel's state; see the module docstring. ``tr`` translates the texts (Slicer's ``_``)."""

    def __init__(self, tr: Callable[[str], str] = str) -> None:
        self.tr = tr
        self.state = State.IDLE
        self.job: Any = None
        self.last_job: Any = None  # the job that ended last (the widget checks or loads it)
        self.kind: str | None = None  # "install" or "run"
        self.scene_closed = False  # the scene closed while the job ran: its results are unwanted

    # --- what the panel shows ------------------------------------------------------------------

    def buttons(self, inputs: Inputs) -> Buttons:
        tr = self.tr
        idle = self.state is State.IDLE
        if self.state is State.RUNNING:
            return Buttons(tr("Cancel"), True, tr("Stop the engine; the scene is left as it was."), False, False, True)
        if self.state is State.INSTALLING:
            return Buttons(tr("Installing..."), False, tr("Packages are being installed; this cannot be interrupted "
                                                          "safely. Slicer must restart afterwards."), False, False, True)
        if self.state is State.LOADING:
            return Buttons(tr("Loading..."), False, tr("The results are being loaded into the scene."), False, False, True)
        if self.state is State.CANCELLING:
            return Buttons(tr("Cancelling..."), False, tr("Stopping the engine."), False, False, True)
        ready, tip = self._ready(inputs)
        return Buttons(tr("Apply"), idle and ready, tip, idle and inputs.has_input and not inputs.missing_model
                       and not inputs.console_busy, True, False)

    def _ready(self, inputs: Inputs) -> tuple[bool, str]:
        tr = self.tr
        if inputs.console_busy:
            return False, tr("An engine run started from the Python console is in progress.")
        if not inputs.has_input:
            return False, tr("Choose an input CT first.")
        if not inputs.has_attack:
            return False, tr("Tick at least one attack.")
        if inputs.missing_model:
            return False, tr("The chosen model is not installed: {how}").format(how=inputs.missing_model)
        return True, tr("Segment, attack, and show the clean and adversarial results side by side.")

    @property
    def busy(self) -> bool:
        return self.state is not State.IDLE

    # --- what the user does --------------------------------------------------------------------

    def start(self, job: Any, kind: str = "run") -> None:
        """Start ``job`` (``kind`` "run" or "install"); only from idle."""
        if self.state is not State.IDLE:
            raise RuntimeError(f"the panel is {self.state.value}: one job at a time")
        if kind not in ("run", "install"):
            raise ValueError(f"unknown job kind {kind!r}")
        # The state changes first: Slicer's installers block in start() while showing progress
        # dialogs that process events, and a click meanwhile must find the panel busy.
        self.job, self.kind, self.scene_closed = job, kind, False
        self.state = State.INSTALLING if kind == "install" else State.RUNNING
        try:
            job.start()
        except BaseException:
            self.state, self.job, self.kind = State.IDLE, None, None
            raise

    def apply_pressed(self) -> str:
        """"start" (idle: the widget starts a run), "cancelled" (running: cancelled now) or
        "ignored" (installing, loading, cancelling: a stray click, e.g. one queued while the
        results loaded)."""
        if self.state is State.IDLE:
            return "start"
        if self.state is State.RUNNING:
            self.cancel()
            return "cancelled"
        return "ignored"

    def cancel(self) -> bool:
        """Cancel a running engine (its child process tree is ended). An install is never
        cancelled (False): a killed pip can leave Slicer's Python half-installed."""
        if self.state is not State.RUNNING:
            return False
        self.state = State.CANCELLING
        self.job.cancel()
        return True

    def scene_closing(self) -> str:
        """The scene is about to close. Running: cancel ("cancelled"). Installing: the install
        goes on, it does not touch the scene ("kept"). Loading: its results are dropped when
        loading ends ("discard"). Otherwise "nothing"."""
        if self.state is State.RUNNING:
            self.scene_closed = True
            self.cancel()
            return "cancelled"
        if self.state is State.INSTALLING:
            return "kept"
        if self.state is State.LOADING:
            self.scene_closed = True
            return "discard"
        return "nothing"

    def shutdown(self) -> str:
        """The module is cleaned up (Slicer quits). Running: cancel ("cancelled"). Installing:
        "wait" (the widget waits for pip to finish, never kills it). Otherwise "nothing"."""
        if self.state is State.INSTALLING:
            return "wait"
        if self.state is State.RUNNING:
            self.cancel()
            return "cancelled"
        return "nothing"

    # --- the timer -----------------------------------------------------------------------------

    def tick(self) -> Event:
        """Poll the job; see Event for what the widget does with the answer."""
        if self.state is State.IDLE:
            return Event.NONE
        if self.state is State.LOADING:
            return Event.NONE  # the widget is loading; it calls loaded() when done
        if self.job.poll():
            return Event.PROGRESS
        if self.state is State.CANCELLING:
            self._end()
            return Event.CANCELLED
        if self.state is State.INSTALLING:
            self._end()
            return Event.INSTALLED
        if self.scene_closed:
            self._end()
            return Event.DISCARD
        self.state = State.LOADING  # buttons disabled until loaded(); self.job is what to load
        return Event.LOAD

    def loaded(self) -> None:
        """The widget finished loading (or failed to): back to idle."""
        if self.state is State.LOADING:
            self._end()

    def _end(self) -> None:
        self.state = State.IDLE
        self.last_job, self.job, self.kind = self.job, None, None
