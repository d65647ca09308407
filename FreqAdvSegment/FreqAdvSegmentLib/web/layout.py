"""The page: controls on the left, the comparison views in the middle, results on the right.

Only layout lives here: every button calls a method of :class:`~.app.FreqAdvWebApp` by trame
trigger, and every value shown is a state variable the app sets (all named ``fa_*``). Element ids
(``fa-run``, ``fa-metrics-table``, ``fa-legend``...) are what the browser test and any automation
use to find things.

Two rules keep clicks from getting lost: no field shows a hint or message below itself (a hint
that appears on focus and vanishes on blur moves everything under it between a button's press
and its release, and the click never fires); the help is the field's tooltip instead. And below
1200 px the side panels become drawers opened from the app bar, so the views keep the width.
"""

from __future__ import annotations

from typing import Any

from trame.ui.vuetify3 import VAppLayout
from trame.widgets import client, html
from trame.widgets import vuetify3 as v3

from ..attacks import registry
from ..mrml.display import diverging_table
from .params import attack_fields, preset_key
from .viewer import RESULT_VIEWS, SLICE_VIEWS, VIEW_TITLES

NARROW_PX = 1200
ACCEPT = ".nii,.nii.gz,.nrrd,.gz,.zip"  # what the file pickers offer (the server checks again)  # below this the side panels are drawers over the views

STYLE = """
html { overflow-y: auto; }
.fa-title { position: absolute; top: 4px; right: 8px; color: #eee; font: 12px sans-serif;
            background: rgba(0,0,0,.55); padding: 1px 6px; border-radius: 3px; pointer-events: none; z-index: 2; }
.fa-orient { position: absolute; color: #ffd54f; font: bold 12px sans-serif; pointer-events: none; z-index: 2;
             text-shadow: 0 0 3px #000; }
.fa-slice-mm { position: absolute; top: 24px; right: 8px; color: #eee; font: 11px sans-serif;
               background: rgba(0,0,0,.55); padding: 0 4px; pointer-events: none; z-index: 2; }
.fa-empty { position: absolute; top: 45%; width: 100%; text-align: center; color: #aaa; font: 13px sans-serif;
            pointer-events: none; z-index: 2; }
.fa-table td, .fa-table th { padding: 2px 5px !important; font-size: 12px; height: 22px !important; }
.fa-mean td { font-weight: bold; border-top: 1px solid #888; }
.fa-bar-row { display: flex; align-items: center; font-size: 11px; margin: 2px 0; }
.fa-bar-label { width: 140px; overflow: hidden; white-space: nowrap; text-overflow: ellipsis; }
.fa-bar-track { flex: 1; background: #333; position: relative; height: 14px; }
.fa-bar { position: absolute; left: 0; height: 7px; }
.fa-bar-clean { top: 0; background: #9e9e9e; }
.fa-bar-attack { top: 7px; background: #d62728; }
.fa-key span.fa-swatch { display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 10px; }
.fa-organ { display: inline-flex; align-items: center; margin: 1px 8px 1px 0; font-size: 11px; }
.fa-organ .fa-swatch { display: inline-block; width: 12px; height: 12px; margin-right: 4px; border: 1px solid #000; }
.fa-colormap { height: 10px; border: 1px solid #555; }
.fa-budget span { display: inline-block; margin-right: 10px; font-size: 12px; }
.fa-attack-box { border: 1px solid #444; border-radius: 4px; padding: 6px; }
"""

# Uploads go by HTTP POST (routes.py), not over the websocket: the server can then refuse a
# wrong type or size before a byte is stored. This checks the same first, to answer at once.
UPLOAD_JS = r"""
window.freqadvUpload = async function (file, token, maxBytes, triggerName) {
  if (!file) { return; }
  const reply = (r) => trame.trigger(triggerName, [r]);
  if (!/\.(nii|nii\.gz|nrrd|zip)$/i.test(file.name)) {
    return reply({ error: file.name + ' is not a NIfTI (.nii, .nii.gz) or NRRD (.nrrd) volume, ' +
                   'nor a .zip of one DICOM series' });
  }
  if (file.size > maxBytes) {
    return reply({ error: file.name + ' is ' + (file.size / 1048576).toFixed(1) +
                   ' MB; uploads are limited to ' + (maxBytes / 1048576).toFixed(0) + ' MB' });
  }
  try {
    const response = await fetch('freqadv/upload?name=' + encodeURIComponent(file.name), {
      method: 'POST', body: file,
      headers: { 'X-FreqAdv-Token': token, 'Content-Type': 'application/octet-stream' },
    });
    return reply(await response.json());
  } catch (err) {
    return reply({ error: 'the upload failed: ' + err });
  }
};
"""

# The attack on show, as a template expression (its metrics entry).
SHOWN = "(fa_metrics.attacks.find(a => a.label === fa_shown_attack) || fa_metrics.attacks[0])"


def build_page(server: Any, layout_manager: Any, triggers: dict[str, str], title: str) -> VAppLayout:
    """The whole page; ``triggers`` maps actions (run, cancel, sample, uploaded...) to the trame
    trigger names the app registered."""
    with VAppLayout(server, full_height=True, theme="dark") as page:
        client.Style(STYLE)
        client.Script(UPLOAD_JS)
        with v3.VAppBar(density="compact"):
            v3.VAppBarNavIcon(id="fa-open-controls", click="fa_left = !fa_left", title="controls")
            v3.VToolbarTitle(title, classes="text-body-1")
            v3.VChip("{{ fa_status }}", id="fa-status", size="small", classes="mr-2",
                     color=("fa_phase === 'failed' ? 'error' : fa_phase === 'done' ? 'success' : 'default'",))
            v3.VBtn(icon="mdi-table", id="fa-open-results", click="fa_right = !fa_right", title="results")
        with v3.VNavigationDrawer(v_model=("fa_left", None), width=330, location="left", mobile_breakpoint=(str(NARROW_PX),),
                                  id="fa-controls-panel"):
            _controls(triggers)
        with v3.VNavigationDrawer(v_model=("fa_right", None), width=420, location="right", mobile_breakpoint=(str(NARROW_PX),),
                                  id="fa-results-panel"):
            _metrics_panel()
        with v3.VMain(), html.Div(id="fa-views", style="height: calc(100vh - 48px); display: flex;"):
            layout_manager.initialize_layout_grid(page)
    return page


def view_title(_server: Any, _view_id: str, view: Any) -> None:
    """Overlays naming what a view shows, and for slice views the patient's directions and the
    slice position (the views are otherwise alike at a glance)."""
    html.Div(VIEW_TITLES.get(view.name, view.name), classes="fa-title")
    if view.name not in SLICE_VIEWS:
        return
    # Axial slices in the radiological convention Slicer uses: patient right on the left.
    for letter, where in (("R", "left: 6px; top: 48%;"), ("L", "right: 22px; top: 48%;"),
                          ("A", "left: 48%; top: 24px;"), ("P", "left: 48%; bottom: 40px;")):
        html.Div(letter, classes="fa-orient", style=where)
    html.Div("S {{ fa_slice_mm }} mm", v_if="fa_slice_mm !== null", classes="fa-slice-mm")
    if view.name in RESULT_VIEWS:
        html.Div("no attack result yet", v_if="!fa_metrics", classes="fa-empty")


# --- left: controls ------------------------------------------------------------------------------


def _controls(triggers: dict[str, str]) -> None:
    # No horizontal scrolling: a row too wide must wrap, not shift the whole panel sideways.
    with html.Div(classes="pa-3 d-flex flex-column ga-2", style="overflow-x: hidden; max-width: 100%;"):
        _input_section(triggers)
        v3.VDivider()
        _model_section()
        _attack_section()
        v3.VDivider()
        _run_section(triggers)
        _messages()
        _downloads()
        v3.VDivider()
        _view_section()


def _input_section(triggers: dict[str, str]) -> None:
    html.Div("1. Volume", classes="text-subtitle-2")
    v3.VFileInput(
        key=("fa_upload_key",),  # the server bumps it to empty the field once a file is handled
        id="fa-upload", label=("`Upload CT (.nii, .nii.gz, .nrrd, DICOM .zip; up to ${fa_max_upload_mb} MB)`",),
        # trame's VFileInput drops `accept` unless it is declared as an extra property.
        __properties=["accept"], accept=ACCEPT, density="compact", prepend_icon="mdi-upload",
        hide_details=True, disabled=("fa_running || fa_loading",),
        change=(f"fa_loading = true; window.freqadvUpload($event.target.files[0], fa_upload_token, "
                f"fa_max_upload_bytes, '{triggers['uploaded']}')"),
    )
    v3.VFileInput(
        key=("fa_upload_key",), id="fa-upload-labels", label="Upload its labels (optional: the reference)",
        __properties=["accept"], accept=ACCEPT, density="compact", prepend_icon="mdi-label-multiple",
        hide_details=True, disabled=("!fa_input_info || fa_running || fa_loading",),
        title="a label map on the CT's grid, with the model's label values (0 = background)",
        change=(f"fa_loading = true; window.freqadvUpload($event.target.files[0], fa_upload_token, "
                f"fa_max_upload_bytes, '{triggers['uploaded_labels']}')"),
    )
    v3.VBtn("Load the sample CT", id="fa-load-sample", prepend_icon="mdi-database", variant="tonal", size="small",
            click=f"trame.trigger('{triggers['sample']}')", disabled=("fa_running || fa_loading",))
    html.Div("{{ fa_input_info }}", id="fa-input-info", classes="text-caption")


def _model_section() -> None:
    html.Div("2. Model and attacks", classes="text-subtitle-2")
    with html.Div(classes="d-flex ga-2"):
        v3.VSelect(id="fa-model", label="model", v_model=("fa_model",), items=("fa_models",), density="compact",
                   hide_details=True, disabled=("fa_running",))
        v3.VSelect(id="fa-device", label="device", v_model=("fa_device",), items=("fa_devices",), density="compact",
                   hide_details=True, disabled=("fa_running",), style="max-width: 110px;")


def _attack_section() -> None:
    with v3.VChipGroup(v_model=("fa_chosen",), multiple=True, column=True, id="fa-attack-choice",
                       disabled=("fa_running",)):
        with v3.Template(v_for="a in fa_attacks", key="a.value"):
            v3.VChip("{{ a.title }}", value=("a.value",), id=("`fa-method-${a.value}`",), size="small",
                     filter=True, variant="outlined", title=("a.summary",))
    for spec in registry.specs():
        _attack_box(spec)


def _attack_box(spec: Any) -> None:
    """One chosen attack: its preset and its parameters (shown only while it is chosen)."""
    with html.Div(v_show=f"fa_chosen.includes('{spec.name}')", id=f"fa-attack-{spec.name}", classes="fa-attack-box"):
        html.Div(spec.title, classes="text-caption font-weight-bold", title=spec.summary)
        v3.VSelect(id=f"fa-preset-{spec.name}", label="preset", v_model=(preset_key(spec.name),),
                   items=(f"fa_attacks.find(a => a.value === '{spec.name}').presets",), density="compact",
                   hide_details=True, disabled=("fa_running",), classes="mb-1")
        with html.Div(classes="d-flex flex-wrap ga-1"):
            for field in attack_fields(spec):
                common = dict(id=f"fa-param-{spec.name}-{field.param.name}", label=field.label,
                              v_model=(field.key,), density="compact", hide_details=True,
                              disabled=("fa_running",), title=field.hint, style="flex: 1 1 90px; min-width: 90px;")
                if field.choices:
                    v3.VSelect(items=(repr(list(field.choices)),), **common)
                else:
                    v3.VTextField(**common)


def _run_section(triggers: dict[str, str]) -> None:
    with html.Div(classes="d-flex flex-wrap ga-2"):
        v3.VBtn("Run", id="fa-run", color="primary", size="small", prepend_icon="mdi-play",
                click=f"trame.trigger('{triggers['run']}')",
                disabled=("!fa_input_info || fa_loading || fa_running || !fa_chosen.length",))
        v3.VBtn("Segment", id="fa-segment", variant="tonal", size="small", prepend_icon="mdi-brain",
                click=f"trame.trigger('{triggers['segment']}')", title="segment only, no attack",
                disabled=("!fa_input_info || fa_loading || fa_running",))
        v3.VBtn("Cancel", id="fa-cancel", color="warning", size="small", prepend_icon="mdi-stop",
                click=f"trame.trigger('{triggers['cancel']}')", disabled=("!fa_running",))
    html.Div("{{ fa_run_title }}", v_if="fa_running", classes="text-caption")
    v3.VProgressLinear(id="fa-progress", v_show="fa_running", model_value=("fa_progress ?? 0",),
                       indeterminate=("fa_progress === null",), height=8, color="primary")


def _messages() -> None:
    v3.VAlert(id="fa-error", v_if="fa_error", type="error", density="compact", closable=True,
              text=("fa_error",), style="white-space: pre-wrap; font-size: 12px;",
              click_close="fa_error = ''")
    v3.VAlert(id="fa-notice", v_if="fa_notice", type="warning", density="compact", closable=True,
              text=("fa_notice",), click_close="fa_notice = ''")


def _downloads() -> None:
    with html.Div(id="fa-downloads", v_if="fa_archive", classes="text-caption"):
        v3.VBtn("Download all results", id="fa-download-all", href=("fa_archive.url",),
                download=("fa_archive.file",), prepend_icon="mdi-folder-zip", variant="tonal", size="small",
                title=("fa_archive.name",), block=True)
        with html.Details(classes="mt-1"):
            html.Summary("{{ fa_downloads.length }} single files")
            with html.Div(v_for="d in fa_downloads", key="d.url"):
                html.A("{{ d.name }}", href=("d.url",), download=("d.file",), classes="text-blue-lighten-2")


def _view_section() -> None:
    html.Div("3. View", classes="text-subtitle-2")
    with html.Div(classes="d-flex ga-2"):
        v3.VSelect(id="fa-window-preset", label="CT window", v_model=("fa_window_preset",),
                   items=("fa_window_presets",), density="compact", hide_details=True)
        v3.VTextField(id="fa-window", label="W (HU)", v_model=("fa_window",), density="compact", hide_details=True,
                      type="number", style="max-width: 80px;", title="window width in HU")
        v3.VTextField(id="fa-level", label="L (HU)", v_model=("fa_level",), density="compact", hide_details=True,
                      type="number", style="max-width: 80px;", title="window centre (level) in HU")
    html.Div("{{ fa_probe || 'move the mouse over a slice for the HU under it' }}", id="fa-probe",
             classes="text-caption")
    v3.VCheckbox(id="fa-show-truth", v_if="fa_has_truth", v_model=("fa_show_truth",), density="compact",
                 hide_details=True, label="outline the ground truth in the clean view")


# --- right: results ------------------------------------------------------------------------------


def _metrics_panel() -> None:
    with html.Div(id="fa-metrics", classes="pa-3"):
        html.Div("Results", classes="text-subtitle-2")
        html.Div("Run an attack to see what it broke.", v_if="!fa_metrics", classes="text-caption")
        with html.Div(v_if="fa_metrics"):
            with v3.VBtnToggle(v_model=("fa_shown_attack",), mandatory=True, density="compact", divided=True,
                               variant="outlined", id="fa-shown-attack", classes="flex-wrap mb-1",
                               style="height: auto;"):
                with v3.Template(v_for="a in fa_metrics.attacks", key="a.label"):
                    v3.VBtn("{{ a.label }}", value=("a.label",), id=("`fa-show-${a.label}`",), size="small")
            with html.Div(v_for=f"m in [{SHOWN}]", key="m.label"):
                with html.Div(id="fa-budget", classes="fa-budget"):
                    html.Span("{{ b.name }}: {{ b.value }}", v_for="b in m.budget", key="b.name", title=("b.help",))
                html.Div("{{ fa_changed[m.label] ?? 0 }} voxels changed label (red in 'where it broke')",
                         id="fa-changed", classes="text-caption")
                _perturbation_legend()
                _organ_legend()
                html.Div("vs the {{ fa_metrics.reference }}; change = {{ m.label }} − clean (negative = worse); "
                         "worst first", classes="text-caption mt-2")
                _metrics_table()
                html.Div("{{ fa_metrics.hd95_note }}.", classes="text-caption")
                _dice_chart()


def _organ_legend() -> None:
    """The segment colours, named: every segment of the segmentation on show."""
    with html.Div(id="fa-legend", classes="mt-2"):
        with html.Span(v_for="s in fa_legend", key="s.name", classes="fa-organ"):
            html.Span(classes="fa-swatch", style=("{ background: s.color }",))
            html.Span("{{ s.name }}", classes="fa-organ-name")


def _metrics_table() -> None:
    with v3.VTable(id="fa-metrics-table", density="compact", classes="fa-table"):
        with html.Thead(), html.Tr():
            html.Th("organ")
            html.Th("Dice clean", v_if="fa_metrics.has_clean")
            html.Th("Dice {{ m.label }}")
            html.Th("change")
            html.Th("HD95 clean (mm)", v_if="fa_metrics.has_clean")
            html.Th("HD95 {{ m.label }} (mm)")
        with html.Tbody(), html.Tr(v_for="row in m.rows", key="row.organ", title=("row.note",),
                                    classes=("row.is_mean ? 'fa-mean' : ''",)):
            html.Td("{{ row.organ }}{{ row.note && !row.is_mean ? ' *' : '' }}")
            html.Td("{{ row.dice_clean }}", v_if="fa_metrics.has_clean")
            html.Td("{{ row.dice_attack }}")
            html.Td("{{ row.dice_change }}", style=("row.change_style",), classes="fa-change")
            html.Td("{{ row.hd95_clean }}", v_if="fa_metrics.has_clean")
            html.Td("{{ row.hd95_attack }}")


def _perturbation_legend() -> None:
    """The perturbation view's colour scale, in HU (the slice views draw no legend of their own)."""
    with html.Div(id="fa-perturbation-legend", v_if="fa_perturbation_hu", classes="mt-1 text-caption"):
        html.Div("Perturbation (adversarial − clean) colours")
        html.Div(classes="fa-colormap", style=f"background: {colormap_css()};")
        with html.Div(classes="d-flex"):
            html.Span("−{{ fa_perturbation_hu }} HU (darker)")
            v3.VSpacer()
            html.Span("0")
            v3.VSpacer()
            html.Span("+{{ fa_perturbation_hu }} HU (brighter)")


def colormap_css(stops: int = 11) -> str:
    """The bridge's diverging colour table as a CSS gradient, so the legend matches the view."""
    table = diverging_table()
    rows = [table[round(i * (len(table) - 1) / (stops - 1))] for i in range(stops)]
    colors = ", ".join(f"rgb({r * 255:.0f}, {g * 255:.0f}, {b * 255:.0f})" for r, g, b, _ in rows)
    return f"linear-gradient(to right, {colors})"


def _dice_chart() -> None:
    with html.Div(id="fa-dice-chart", classes="mt-3"):
        with html.Div("Dice", classes="text-caption fa-key"):
            html.Span(classes="fa-swatch", style="background: #9e9e9e;")
            html.Span("clean")
            html.Span(classes="fa-swatch", style="background: #d62728;")
            html.Span("{{ m.label }}")
        with html.Div(v_for="row in m.rows", key="row.organ", classes="fa-bar-row"):
            html.Span("{{ row.organ }}", classes="fa-bar-label")
            with html.Div(classes="fa-bar-track"):
                html.Div(classes="fa-bar fa-bar-clean", style=("{ width: row.bar_clean + '%' }",))
                html.Div(classes="fa-bar fa-bar-attack", style=("{ width: row.bar_attack + '%' }",))
