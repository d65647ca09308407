"""The web app: a trame server, a trame-slicer scene and views, and the actions of the page.

One app is one session: trame shares one state among the tabs connected to the server, so
"one running job per session" is one job per ``freqadv serve`` process. Each action below is
a trame trigger; any error it meets becomes ``fa_error`` on the page instead of a dead page.

    app = FreqAdvWebApp(ServeConfig(port=0))
    app.start()                              # blocking; serves http://127.0.0.1:<port>/
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..attacks import registry
from ..files.images import read_image
from ..mrml.engine_process import EngineError
from .downloads import ARCHIVE_NAME, attachment_name, list_downloads
from .labels_check import check_labels
from .jobs import FAILED, JobBusy, JobRequest, JobRunner
from .metrics import page_metrics
from .params import (DEVICES, attack_items, default_values, form_requests, model_items, preset_key,
                     shown_values)
from .routes import DOWNLOAD_PREFIX, install_routes
from .uploads import Limits, UploadStore
from .viewer import CT_PRESETS, SceneViewer, comparison_layout, node_ids

log = logging.getLogger(__name__)

TITLE = "FreqAdvSegment: adversarial attacks on CT segmentation"
LAYOUT_ID = "FreqAdvComparison"
POLL_SECONDS = 0.3


@dataclass
class ServeConfig:
    """How ``freqadv serve`` runs. Loopback only unless ``host`` says otherwise."""

    host: str = "127.0.0.1"
    port: int = 8080
    work_dir: Path | None = None  # None: a temporary folder, removed on exit
    limits: Limits = field(default_factory=Limits)
    default_method: str = "vafa"
    default_model: str = "demo-unet"
    default_device: str = "auto"


class FreqAdvWebApp:
    """The page's server side (see the module docstring)."""

    def __init__(self, config: ServeConfig, server: Any = None) -> None:
        from trame.app import get_server
        from trame_slicer import module as trame_slicer_module
        from trame_slicer.core import LayoutManager, SlicerApp

        self.config = config
        self.server = server or get_server("freqadv", client_type="vue3")
        self.server.enable_module(trame_slicer_module)
        self._own_work_dir = config.work_dir is None
        self.work_dir = Path(config.work_dir or tempfile.mkdtemp(prefix="freqadv-web-"))
        self.token = secrets.token_urlsafe(24)  # for uploads; the page reads it from the state
        self.uploads = UploadStore(self.work_dir / "uploads", config.limits)
        self.jobs = JobRunner(self.work_dir / "jobs")
        self.slicer = SlicerApp()
        self._register_views()
        self.layout_manager = LayoutManager(self.slicer.scene, self.slicer.view_manager, self.server)
        self.layout_manager.register_layout(LAYOUT_ID, comparison_layout())
        self.layout_manager.set_layout(LAYOUT_ID)
        self.viewer = SceneViewer(self.slicer.scene, self.slicer.view_manager)
        self.viewer.link_slice_sliders(self.slicer.app_logic)
        self._watcher: asyncio.Task | None = None
        self._init_state()
        self._watch_state()
        self._build_page()
        self.viewer.decorate_views()
        self._follow_slices()
        self.viewer.mark_baseline()
        self.server.controller.on_server_bind.add(lambda ws: install_routes(ws.app, self, config.host))

    @property
    def state(self) -> Any:
        return self.server.state

    def start(self, **kwargs: Any) -> None:
        """Serve until interrupted (blocking); cleans up the job and the work folder after."""
        try:
            self.server.start(host=self.config.host, port=self.config.port, open_browser=False, timeout=0, **kwargs)
        finally:
            self.close()

    def close(self) -> None:
        self.jobs.close()
        self.uploads.discard_all()
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    # --- setup ---------------------------------------------------------------------------------

    def _register_views(self) -> None:
        from trame_slicer.app.ui import create_vertical_slice_view_gutter_ui, create_vertical_view_gutter_ui
        from trame_slicer.rca_view import register_rca_factories

        from .layout import view_title

        def slice_ui(server: Any, view_id: str, view: Any) -> None:
            create_vertical_slice_view_gutter_ui(server, view_id, view)
            view_title(server, view_id, view)

        def threed_ui(server: Any, view_id: str, view: Any) -> None:
            create_vertical_view_gutter_ui(server, view_id, view)
            view_title(server, view_id, view)

        register_rca_factories(self.slicer.view_manager, self.server,
                               slice_view_ui_f=slice_ui, three_d_view_ui_f=threed_ui)

    def _init_state(self) -> None:
        limits = self.config.limits
        # The server's own list: a job may use only these, whatever the client's state says.
        self.model_choices = model_items()
        self.state.update({
            "trame__title": "FreqAdvSegment",
            "fa_upload_token": self.token,
            "fa_max_upload_bytes": limits.max_bytes,
            "fa_max_upload_mb": round(limits.max_bytes / (1024 * 1024)),
            "fa_models": [dict(m) for m in self.model_choices], "fa_model": self.config.default_model,
            "fa_devices": list(DEVICES), "fa_device": self.config.default_device,
            "fa_attacks": attack_items(), "fa_chosen": [self.config.default_method],
            "fa_input_info": "", "fa_loading": False, "fa_upload_key": 0, "fa_perturbation_hu": None,
            "fa_running": False, "fa_progress": None, "fa_phase": "idle", "fa_status": "load a volume",
            "fa_error": "", "fa_notice": "", "fa_metrics": None, "fa_downloads": [], "fa_archive": None,
            "fa_shown_attack": None, "fa_legend": [], "fa_changed": {}, "fa_has_truth": False,
            "fa_show_truth": False, "fa_window_preset": "abdomen", "fa_window": CT_PRESETS["abdomen"][0],
            "fa_level": CT_PRESETS["abdomen"][1], "fa_window_presets": list(CT_PRESETS), "fa_slice_mm": None,
            "fa_run_title": "", "fa_probe": "",
            **default_values(),
        })

    def _watch_state(self) -> None:
        """Page controls whose change the server acts on at once (not only at Run)."""
        state = self.state
        for item in state.fa_attacks:
            state.change(preset_key(item["value"]))(functools.partial(self._preset_chosen, item["value"]))
        state.change("fa_shown_attack")(lambda fa_shown_attack, **_: self._show_attack(fa_shown_attack))
        state.change("fa_show_truth")(lambda fa_show_truth, **_: self.viewer.set_ground_truth_visible(fa_show_truth))
        state.change("fa_window_preset")(self._window_preset_chosen)
        state.change("fa_window", "fa_level")(self._window_changed)

    def _preset_chosen(self, attack: str, **changed: Any) -> None:
        """A preset fills its attack's fields with its values (the user may then change them)."""
        preset = changed.get(preset_key(attack)) or None
        try:
            self.state.update(shown_values(attack, preset))
        except ValueError as err:
            self.state.fa_error = str(err)

    def _window_preset_chosen(self, fa_window_preset: str, **_: Any) -> None:
        if fa_window_preset in CT_PRESETS:
            self.state.fa_window, self.state.fa_level = CT_PRESETS[fa_window_preset]

    def _window_changed(self, fa_window: Any, fa_level: Any, **_: Any) -> None:
        try:
            window, level = float(fa_window), float(fa_level)
        except (TypeError, ValueError):
            return  # a half-typed number: keep the last window
        if window > 0:
            self.viewer.set_window(window, level)

    def _show_attack(self, label: str | None) -> None:
        if label and self.viewer.results is not None and label in self.viewer.results.attacks:
            self.viewer.show_attack(label)
            nodes = self.viewer.results.attack_nodes(label)
            self.state.fa_perturbation_hu = round(nodes.perturbation_limit_hu, 1)

    def _follow_slices(self) -> None:
        """The clean view's slice position (mm, superior +) for the page; the others are linked."""
        views = {v.get_singleton_tag(): v for v in self.slicer.view_manager.get_slice_views()}
        view = views.get("Red")
        if view is None:
            return
        node = view.get_view_node()

        def update(*_: Any) -> None:
            self.state.fa_slice_mm = round(node.GetSliceOffset(), 1) if self.viewer.input else None

        node.AddObserver("ModifiedEvent", update)
        for slice_view in views.values():
            # Before Slicer's interactor style, which consumes (aborts) the mouse moves it handles.
            slice_view.interactor().AddObserver("MouseMoveEvent", functools.partial(self._probe, slice_view), 10.0)

    def _probe(self, view: Any, interactor: Any, _event: str) -> None:
        """The HU readout: the clean (and shown adversarial) CT's voxel under the mouse."""
        from .hu_readout import readout, slice_point, voxel_value

        if self.viewer.input is None:
            return
        ras = slice_point(view.get_view_node(), *interactor.GetEventPosition())
        values = {"clean": voxel_value(self.viewer.input.volume, ras)}
        if self.viewer.results is not None and self.viewer.attack:
            values[self.viewer.attack] = voxel_value(self.viewer.results.attack_nodes(self.viewer.attack).adversarial_volume, ras)
        self.state.fa_probe = readout(ras, values)
        self.state.flush()

    def _build_page(self) -> None:
        from .layout import build_page

        actions: dict[str, Callable[..., Any]] = {
            "sample": self.load_sample, "uploaded": self.load_upload, "uploaded_labels": self.load_labels,
            "run": self.run, "segment": self.segment, "cancel": self.cancel,
        }
        triggers = {name: self.server.trigger_name(_reporting_errors(self, fn)) for name, fn in actions.items()}
        self.page = build_page(self.server, self.layout_manager, triggers, TITLE)

    # --- actions (trame triggers) --------------------------------------------------------------

    def load_sample(self) -> None:
        """Show the shipped sample CT, with its labels as the reference the engine measures against."""
        from ..samples.sample_data import sample_ct_path, sample_labels_path

        self._refuse_while_running("load another volume")
        loaded = self.viewer.load_input(read_image(sample_ct_path()), "sample CT", read_image(sample_labels_path()))
        self._input_loaded(f"sample CT (patient A), {_grid(loaded.size)}, with reference labels")

    def load_upload(self, reply: dict[str, Any]) -> None:
        """After the browser's POST: show the uploaded volume, or say why it was refused."""
        self.state.fa_loading = False
        self.state.fa_upload_key += 1  # empties the file field, whatever happens next
        reply = reply if isinstance(reply, dict) else {}
        if "id" not in reply:
            raise ValueError(reply.get("error") or "the upload failed")
        self._refuse_while_running("load another volume")
        stored = self.uploads.get(str(reply["id"]))
        try:
            image = read_image(stored.path)
        except ValueError as err:  # name the user's file, not where the server keeps it
            raise ValueError(str(err).replace(str(stored.path), stored.name)) from None
        loaded = self.viewer.load_input(image, stored.name)
        self._input_loaded(f"{stored.name}, {_grid(loaded.size)}")

    def load_labels(self, reply: dict[str, Any]) -> None:
        """After the browser's POST: the uploaded label map becomes the reference of the volume on
        show (checked to be on its grid, with the model's label values)."""
        self.state.fa_loading = False
        self.state.fa_upload_key += 1
        reply = reply if isinstance(reply, dict) else {}
        if "id" not in reply:
            raise ValueError(reply.get("error") or "the upload failed")
        self._refuse_while_running("load other labels")
        if self.viewer.input is None:
            raise ValueError("load the CT first, then its labels")
        stored = self.uploads.get(str(reply["id"]))
        labels = read_image(stored.path)
        check_labels(labels, self.viewer.input.volume)
        self.viewer.set_ground_truth(labels)
        self._input_loaded(f"{self.viewer.input.name}, {_grid(self.viewer.input.size)}, with labels {stored.name}")

    def segment(self) -> None:
        """Segment the volume on show with the model, no attack (to check the model first)."""
        self.run(segment_only=True)

    def run(self, segment_only: bool = False) -> None:
        """Start the chosen attacks on the volume on show; a second run while one runs is refused."""
        if self.viewer.input is None:
            raise ValueError("load a volume first (upload one, or the sample CT)")
        request = self._job_request(segment_only)
        if self.jobs.running:  # before anything on show changes
            raise JobBusy(self.jobs.busy_message())
        # The previous results stay on show (and downloadable) until this run succeeds.
        self.state.update({"fa_error": "", "fa_notice": "", "fa_run_title": request.title})
        self.jobs.start(self.slicer.scene, self.viewer.input.volume, request, self.viewer.input.ground_truth)
        self._publish_job()
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.ensure_future(self._watch_job())

    def cancel(self) -> None:
        """Kill the running job; the page keeps the input and the previous results, if any."""
        if not self.jobs.cancel():
            self.state.fa_notice = "No job is running."
        self._publish_job()

    # --- job follow-up -------------------------------------------------------------------------

    async def _watch_job(self) -> None:
        while self.jobs.poll():
            with self.state:
                self._publish_job()
            await asyncio.sleep(POLL_SECONDS)
        before = set(node_ids(self.slicer.scene))
        results = self.jobs.collect()
        with self.state:
            if results is not None:
                self._show_results(results, set(node_ids(self.slicer.scene)) - before)
            elif self.jobs.phase == FAILED:
                self.state.fa_error = public_message(f"The job failed: {self.jobs.message}")
            self._publish_job()

    def _show_results(self, results: Any, new_nodes: set[str] | None = None) -> None:
        if not hasattr(results, "attacks"):  # a segment-only run: one segmentation node
            self.viewer.show_segmentation(results, new_nodes)
            self.state.update({"fa_metrics": None, "fa_shown_attack": None, "fa_changed": {},
                               "fa_perturbation_hu": None, "fa_legend": self.viewer.segment_labels()})
            self.state.fa_downloads, self.state.fa_archive = self._download_items()
            return
        try:
            self.viewer.show_results(results, new_nodes)
            metrics = page_metrics(results.report)
            first = metrics["attacks"][0]["label"]
            self.state.update({
                "fa_metrics": metrics, "fa_shown_attack": first, "fa_changed": dict(self.viewer.changed),
                "fa_legend": self.viewer.segment_labels(),
                "fa_perturbation_hu": round(results.attack_nodes(first).perturbation_limit_hu, 1),
            })
            self.viewer.set_ground_truth_visible(self.state.fa_show_truth)
        except Exception as err:  # results that cannot be shown must not take the page down
            log.exception("showing the results failed")
            self.state.fa_error = f"The job finished but its results could not be shown: {err}"
        self.state.fa_downloads, self.state.fa_archive = self._download_items()

    def _publish_job(self) -> None:
        fraction, phase = self.jobs.fraction, self.jobs.phase
        # The status chip is one line; a failure's full text goes to fa_error.
        status = "failed: see the message on the left" if phase == FAILED else self.jobs.message or "ready"
        self.state.update({
            "fa_running": self.jobs.running, "fa_phase": phase, "fa_status": status,
            "fa_progress": None if fraction is None else round(100 * fraction, 1),
        })

    def _download_items(self) -> tuple[list[dict[str, str]], dict[str, str] | None]:
        """(the single files, the one zip that holds them all) of the last finished job."""
        folder, token = self.jobs.results_folder, self.jobs.token
        if folder is None or token is None:
            return [], None
        # Relative URLs, so the page also works behind a reverse proxy's path prefix.
        prefix = f"{DOWNLOAD_PREFIX.lstrip('/')}/{token}"
        files = [{"name": f, "file": attachment_name(f), "url": f"{prefix}/{f}"} for f in list_downloads(folder)]
        archive = {"name": "all results (zip: report with figures, volumes, scene.mrb)", "file": ARCHIVE_NAME,
                   "url": f"{prefix}/{ARCHIVE_NAME}"}
        return files, archive

    # --- helpers -------------------------------------------------------------------------------

    def _job_request(self, segment_only: bool = False) -> JobRequest:
        state = self.state
        allowed = {m["value"] for m in self.model_choices if not m["props"]["disabled"]}
        if not isinstance(state.fa_model, str) or state.fa_model not in allowed:
            raise ValueError("the chosen model is not available on this server; pick one of the installed models")
        if state.fa_device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}")
        if segment_only:
            return JobRequest((), state.fa_model, state.fa_device, kind="segment")
        requests = form_requests(state.fa_chosen, {k: state[k] for k in default_values()})
        for text in requests:
            registry.parse_request(text)  # an unknown attack or parameter fails here, by name
        return JobRequest(tuple(requests), state.fa_model, state.fa_device)

    def _refuse_while_running(self, action: str) -> None:
        if self.jobs.running:
            raise JobBusy(f"A job is running: cancel it before you {action}.")

    def _input_loaded(self, info: str) -> None:
        self.jobs.close()  # the previous results (and their downloads) belong to the old input
        self.state.update({
            "fa_input_info": info, "fa_metrics": None, "fa_downloads": [], "fa_archive": None,
            "fa_perturbation_hu": None, "fa_shown_attack": None, "fa_legend": [], "fa_changed": {},
            "fa_has_truth": self.viewer.input is not None and self.viewer.input.ground_truth is not None,
            "fa_error": "", "fa_notice": "", "fa_phase": "idle", "fa_status": "ready: choose attacks and press Run",
        })
        self.viewer.set_window(self.state.fa_window, self.state.fa_level)


def _reporting_errors(app: FreqAdvWebApp, action: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``action``; a refusal becomes ``fa_notice``, any other error ``fa_error``."""

    @functools.wraps(action)
    def wrapper(*args: Any) -> None:
        try:
            action(*args)
        except JobBusy as busy:
            app.state.fa_notice = str(busy)
        except (ValueError, KeyError, FileNotFoundError, EngineError) as err:
            app.state.fa_error = public_message(str(err).strip("'\""))
        except Exception as err:  # unexpected: keep the page alive, keep the traceback in the log
            log.exception("action %s failed", action.__name__)
            app.state.fa_error = public_message(f"{action.__name__} failed: {err}")
        finally:
            app.state.fa_loading = False

    return wrapper


_SERVER_PATH = re.compile(r"(?:[A-Za-z]:)?[/\\](?:[^\s'\"/\\]+[/\\])+([^\s'\"/\\]*)")


def public_message(text: str) -> str:
    """``text`` without server paths: each absolute path is cut to its last part (a file name the
    server chose, or the folder's name), so errors do not show the server's layout."""
    return _SERVER_PATH.sub(lambda m: m.group(1) or "(folder)", text)


def _grid(size: tuple[int, ...]) -> str:
    return " x ".join(str(n) for n in size) + " voxels"
