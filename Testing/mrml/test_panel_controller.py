"""The panel's behaviour (issue 23 items 5 and 6) without Qt: the controller the widget binds to,
driving real child processes (a sleeping Python stands in for pip and for the engine)."""

from __future__ import annotations

import sys
import time

import pytest

from FreqAdvSegmentLib.mrml.engine_process import EngineJob
from FreqAdvSegmentLib.mrml.panel_controller import Event, Inputs, PanelController, State

READY = Inputs(has_input=True, has_attack=True)


class ProcessJob:
    """A job the way the panel sees one (start, poll -> running?, cancel, status) around a real
    child process that runs ``seconds`` then exits 0."""

    def __init__(self, seconds: float) -> None:
        self.job = EngineJob([sys.executable, "-c", f"import time; time.sleep({seconds})"])

    def start(self) -> None:
        self.job.start()

    def poll(self) -> bool:
        return self.job.poll() is None

    def cancel(self) -> None:
        self.job.cancel()

    def status(self) -> str:
        return "working"

    @property
    def alive(self) -> bool:
        return self.job.poll() is None


def _until(controller: PanelController, seconds: float = 20.0) -> Event:
    deadline = time.monotonic() + seconds
    while (event := controller.tick()) is Event.PROGRESS and time.monotonic() < deadline:
        time.sleep(0.05)
    return event


def test_buttons_in_each_state():
    panel = PanelController()
    idle = panel.buttons(READY)
    assert (idle.apply_text, idle.apply_enabled, idle.segment_enabled, idle.inputs_enabled) == ("Apply", True, True, True)
    assert not panel.buttons(Inputs(has_input=True)).apply_enabled, "no attack ticked"
    assert not panel.buttons(Inputs(has_input=True, has_attack=True, console_busy=True)).apply_enabled
    assert "not installed" in panel.buttons(Inputs(True, True, missing_model="freqadv models --download x")).apply_tip
    expected = {State.RUNNING: ("Cancel", True), State.INSTALLING: ("Installing...", False),
                State.LOADING: ("Loading...", False), State.CANCELLING: ("Cancelling...", False)}
    for state, (text, enabled) in expected.items():
        panel.state = state
        buttons = panel.buttons(READY)
        assert (buttons.apply_text, buttons.apply_enabled) == (text, enabled), state
        assert not buttons.segment_enabled and not buttons.inputs_enabled and buttons.show_progress, state


def test_apply_while_results_load_starts_nothing():
    """Item 6: the engine ended, its results load (Qt events are processed meanwhile): a click
    on Apply then is ignored and the button is disabled until loading is done."""
    panel = PanelController()
    job = ProcessJob(0.2)
    panel.start(job)
    assert panel.state is State.RUNNING and panel.buttons(READY).apply_text == "Cancel"
    assert _until(panel) is Event.LOAD and panel.state is State.LOADING
    assert panel.job is job, "the run is held until it is loaded"
    assert not panel.buttons(READY).apply_enabled
    assert panel.apply_pressed() == "ignored" and panel.state is State.LOADING
    with pytest.raises(RuntimeError, match="one job at a time"):
        panel.start(ProcessJob(0.1))
    panel.loaded()
    assert panel.state is State.IDLE and panel.buttons(READY).apply_enabled and panel.apply_pressed() == "start"


def test_cancel_ends_a_run_and_the_scene_is_left_alone():
    panel = PanelController()
    job = ProcessJob(60)
    panel.start(job)
    assert panel.apply_pressed() == "cancelled"
    assert not job.alive, "the child process tree was ended"
    assert panel.state is State.CANCELLING and not panel.buttons(READY).apply_enabled
    assert _until(panel) is Event.CANCELLED and panel.state is State.IDLE


def test_scene_close_never_kills_an_install():
    """Item 5: closing the scene while pip runs leaves pip running to its end; Cancel and
    Apply cannot stop it either."""
    panel = PanelController()
    job = ProcessJob(1.0)
    panel.start(job, kind="install")
    assert panel.scene_closing() == "kept"
    assert panel.cancel() is False and panel.apply_pressed() == "ignored"
    assert job.alive and panel.state is State.INSTALLING
    assert panel.shutdown() == "wait" and job.alive, "quitting Slicer waits for pip too"
    assert _until(panel) is Event.INSTALLED and panel.last_job is job
    assert job.job.poll() == 0, "pip's stand-in ran to its end"
    assert panel.state is State.IDLE


def test_scene_close_cancels_a_run_and_drops_results_that_are_loading():
    panel = PanelController()
    running = ProcessJob(60)
    panel.start(running)
    assert panel.scene_closing() == "cancelled" and not running.alive
    assert _until(panel) is Event.CANCELLED
    finished = ProcessJob(0.1)
    panel.start(finished)
    assert _until(panel) is Event.LOAD
    assert panel.scene_closing() == "discard", "loading now: the results are dropped when it ends"
    panel.loaded()
    assert panel.state is State.IDLE
    ended = ProcessJob(0.3)  # the scene closed while it ran, after a cancel that raced its end
    panel.start(ended)
    panel.scene_closed = True
    assert _until(panel) is Event.DISCARD


def test_a_job_that_cannot_start_leaves_the_panel_idle(tmp_path):
    panel = PanelController()
    broken = ProcessJob(0)
    broken.job.command = [str(tmp_path / "no-such-python")]
    with pytest.raises(OSError):
        panel.start(broken)
    assert panel.state is State.IDLE and panel.job is None


def test_a_blocking_install_is_busy_while_it_runs():
    """Slicer's installers block in start() and process events meanwhile: a click on Apply then
    must find the panel installing, not idle."""
    panel = PanelController()
    seen = []

    class BlockingInstall:
        def start(self):
            seen.append((panel.state, panel.apply_pressed(), panel.buttons(READY).apply_enabled))

        def poll(self):
            return False

    panel.start(BlockingInstall(), kind="install")
    assert seen == [(State.INSTALLING, "ignored", False)]
    assert panel.tick() is Event.INSTALLED and panel.state is State.IDLE
