"""The page: controls on the left, the comparison views in the middle, metrics on the right.

Only layout lives here: every button calls a method of :class:`~.app.FreqAdvWebApp` by trame
trigger or controller, and every value shown is a state variable the app sets (all named
``fa_*``). Element ids (``fa-run``, ``fa-metrics-table``...) are what the browser test and any
automation use to find things.
"""

from __future__ import annotations

from typing import Any

from trame.ui.vuetify3 import VAppLayout
from trame.widgets import client, html
from trame.widgets import vuetify3 as v3

from ..mrml.display import diverging_table
from .params import FIELDS, state_key
from .viewer import VIEW_TITLES

STYLE = """
html { overflow-y: auto; }
.fa-title { position: absolute; top: 4px; right: 8px; color: #eee; font: 12px sans-serif;
            background: rgba(0,0,0,.45); padding: 1px 6px; border-radius: 3px; pointer-events: none; }
.fa-table td, .fa-table th { padding: 2px 6px !important; font-size: 12px; height: 22px !important; }
.fa-mean td { font-weight: bold; border-top: 1px solid #888; }
.fa-bar-row { display: flex; align-items: center; font-size: 11px; margin: 2px 0; }
.fa-bar-label { width: 150px; overflow: hidden; white-space: nowrap; text-overflow: ellipsis; }
.fa-bar-track { flex: 1; background: #333; position: relative; height: 14px; }
.fa-bar { position: absolute; left: 0; height: 7px; }
.fa-bar-clean { top: 0; background: #9e9e9e; }
.fa-bar-attack { top: 7px; background: #d62728; }
.fa-legend span { display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 10px; }
.fa-colormap { height: 10px; border: 1px solid #555; }
"""

# Uploads go by HTTP POST (routes.py), not over the websocket: the server can then refuse a
# wrong type or size before a byte is stored. This checks the same first, to answer at once.
UPLOAD_JS = r"""
window.freqadvUpload = async function (file, token, maxBytes, triggerName) {
  if (!file) { return; }
  const reply = (r) => trame.trigger(triggerName, [r]);
  if (!/\.(nii|nii\.gz|nrrd)$/i.test(file.name)) {
    return reply({ error: file.name + ' is not a NIfTI (.nii, .nii.gz) or NRRD (.nrrd) volume' });
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


def build_page(server: Any, layout_manager: Any, triggers: dict[str, str], title: str) -> VAppLayout:
    """The whole page; ``triggers`` maps actions (run, cancel, sample, uploaded...) to the trame
    trigger names the app registered."""
    with VAppLayout(server, full_height=True, theme="dark") as page:
        client.Style(STYLE)
        client.Script(UPLOAD_JS)
        with v3.VAppBar(density="compact"):
            v3.VToolbarTitle(title)
            v3.VChip("{{ fa_status }}", id="fa-status", size="small", classes="mr-4",
                     color=("fa_phase === 'failed' ? 'error' : fa_phase === 'done' ? 'success' : 'default'",))
        with v3.VNavigationDrawer(permanent=True, width=340, location="left"):
            _controls(triggers)
        with v3.VNavigationDrawer(permanent=True, width=430, location="right"):
            _metrics_panel()
        with v3.VMain(), html.Div(id="fa-views", style="height: calc(100vh - 48px); display: flex;"):
            layout_manager.initialize_layout_grid(page)
    return page


def view_title(_server: Any, _view_id: str, view: Any) -> None:
    """An overlay naming what a view shows (the views are otherwise alike at a glance)."""
    html.Div(VIEW_TITLES.get(view.name, view.name), classes="fa-title")


# --- left: controls ------------------------------------------------------------------------------


def _controls(triggers: dict[str, str]) -> None:
    with html.Div(classes="pa-3 d-flex flex-column ga-2"):
        _input_section(triggers)
        v3.VDivider()
        _model_section()
        _attack_section()
        v3.VDivider()
        _run_section(triggers)
        _messages()
        _downloads()


def _input_section(triggers: dict[str, str]) -> None:
    html.Div("1. Volume", classes="text-subtitle-2")
    v3.VFileInput(
        key=("fa_upload_key",),  # the server bumps it to empty the field once a file is handled
        id="fa-upload", label=("`Upload CT (.nii, .nii.gz, .nrrd; up to ${fa_max_upload_mb} MB)`",),
        accept=".nii,.gz,.nrrd", density="compact", prepend_icon="mdi-upload", hide_details=True,
        disabled=("fa_running || fa_loading",),
        change=(f"fa_loading = true; window.freqadvUpload($event.target.files[0], fa_upload_token, "
                f"fa_max_upload_bytes, '{triggers['uploaded']}')"),
    )
    v3.VBtn("Load the sample CT", id="fa-load-sample", prepend_icon="mdi-database", variant="tonal", size="small",
            click=f"trame.trigger('{triggers['sample']}')", disabled=("fa_running || fa_loading",))
    html.Div("{{ fa_input_info }}", id="fa-input-info", classes="text-caption")


def _model_section() -> None:
    html.Div("2. Model and attack", classes="text-subtitle-2")
    v3.VSelect(id="fa-model", label="model", v_model=("fa_model",), items=("fa_models",), density="compact",
               hide_details=True, disabled=("fa_running",))
    v3.VSelect(id="fa-device", label="device", v_model=("fa_device",), items=("fa_devices",), density="compact",
               hide_details=True, disabled=("fa_running",))


def _attack_section() -> None:
    with v3.VBtnToggle(v_model=("fa_method",), mandatory=True, density="compact", divided=True,
                       variant="outlined", disabled=("fa_running",), classes="flex-wrap", style="height: auto;"):
        with v3.Template(v_for="m in fa_methods", key="m.value"):
            v3.VBtn("{{ m.title }}", value=("m.value",), id=("`fa-method-${m.value}`",), size="small")
    for field in FIELDS:
        methods = ", ".join(f"'{m}'" for m in field.methods)
        v3.VTextField(
            id=f"fa-param-{field.key}", label=field.label, hint=field.hint, persistent_hint=False,
            v_model=(state_key(field),), type="number", density="compact", hide_details="auto",
            v_show=f"[{methods}].includes(fa_method)", disabled=("fa_running",),
        )


def _run_section(triggers: dict[str, str]) -> None:
    with html.Div(classes="d-flex ga-2"):
        v3.VBtn("Run", id="fa-run", color="primary", prepend_icon="mdi-play",
                click=f"trame.trigger('{triggers['run']}')", disabled=("!fa_input_info || fa_loading || fa_running",))
        v3.VBtn("Cancel", id="fa-cancel", color="warning", prepend_icon="mdi-stop",
                click=f"trame.trigger('{triggers['cancel']}')", disabled=("!fa_running",))
    v3.VProgressLinear(id="fa-progress", v_show="fa_running", model_value=("fa_progress ?? 0",),
                       indeterminate=("fa_progress === null",), height=8, color="primary")


def _messages() -> None:
    v3.VAlert(id="fa-error", v_if="fa_error", type="error", density="compact", closable=True,
              text=("fa_error",), style="white-space: pre-wrap; font-size: 12px;",
              click_close="fa_error = ''")
    v3.VAlert(id="fa-notice", v_if="fa_notice", type="warning", density="compact", closable=True,
              text=("fa_notice",), click_close="fa_notice = ''")


def _downloads() -> None:
    with html.Div(id="fa-downloads", v_if="fa_downloads.length", classes="text-caption"):
        html.Div("Downloads", classes="text-subtitle-2")
        with html.Div(v_for="d in fa_downloads", key="d.url"):
            html.A("{{ d.name }}", href=("d.url",), download=("d.file",), classes="text-blue-lighten-2")


# --- right: metrics ------------------------------------------------------------------------------


def _metrics_panel() -> None:
    with html.Div(id="fa-metrics", classes="pa-3"):
        html.Div("Per-organ Dice / HD95", classes="text-subtitle-2")
        html.Div("Run an attack to see what it broke.", v_if="!fa_metrics", classes="text-caption")
        with html.Div(v_if="fa_metrics"):
            html.Div("vs the {{ fa_metrics.reference }}; drop = clean − {{ fa_metrics.attack }}",
                     classes="text-caption")
            _metrics_table()
            _dice_chart()
        _perturbation_legend()


def _metrics_table() -> None:
    with v3.VTable(id="fa-metrics-table", density="compact", classes="fa-table"):
        with html.Thead(), html.Tr():
            for heading in ("organ", "Dice clean", "Dice {{ fa_metrics.attack }}", "drop", "HD95 clean (mm)",
                            "HD95 {{ fa_metrics.attack }} (mm)"):
                html.Th(heading)
        with html.Tbody(), html.Tr(v_for="row in fa_metrics.rows", key="row.organ",
                                    classes=("row.is_mean ? 'fa-mean' : ''",)):
            for cell in ("organ", "dice_clean", "dice_attack", "dice_drop", "hd95_clean", "hd95_attack"):
                html.Td(f"{{{{ row.{cell} }}}}")


def _perturbation_legend() -> None:
    """The perturbation view's colour scale, in HU (the slice views draw no legend of their own)."""
    with html.Div(id="fa-perturbation-legend", v_if="fa_perturbation_hu", classes="mt-4 text-caption"):
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
        with html.Div("Dice", classes="text-caption fa-legend"):
            html.Span(style="background: #9e9e9e;")
            html.Span("clean", style="width: auto; margin: 0;")
            html.Span(style="background: #d62728;")
            html.Span("{{ fa_metrics.attack }}", style="width: auto; margin: 0;")
        with html.Div(v_for="row in fa_metrics.rows", key="row.organ", classes="fa-bar-row"):
            html.Span("{{ row.organ }}", classes="fa-bar-label")
            with html.Div(classes="fa-bar-track"):
                html.Div(classes="fa-bar fa-bar-clean", style=("{ width: row.bar_clean + '%' }",))
                html.Div(classes="fa-bar fa-bar-attack", style=("{ width: row.bar_attack + '%' }",))
