"""report.json and report.html with PNG figures: what broke, where, and by how much.

Figures (in ``figures/``):
- ``<attack>_slices.png``: clean and adversarial slices with segmentation overlays, the
  perturbation in HU (diverging colour map centred at zero) and the voxels whose label flipped,
  on the axial and coronal slices where the attack changed the most;
- ``dice.png``: per-organ Dice (and HD95) clean vs under each attack;
- ``spectrum.png``: share of each perturbation's energy per frequency band;
- ``history.png``: the attack loss (and VAFA's SSIM) per step;
- ``<attack>_changes.png``: where the labels changed, coloured by the organ lost and the organ
  gained (the same maps are written as ``<attack>/labels_lost`` and ``labels_gained`` volumes);
- ``curve/curve.png`` (when a robustness curve was run, e.g. by ``freqadv demo``).

Every attack's row carries its budget (the size of the change on the input's grid, inside the
body: L-inf and RMS in HU, PSNR, SSIM, and the attack's own strength parameter) and, in plain
words, a warning when the change would be visible.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers, CI or Slicer's child process
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from .. import __version__  # noqa: E402
from ..attacks.measures import METRIC_HELP, VISIBLE_HU, VISIBLE_SSIM  # noqa: E402
from ..job.records import AttackOutcome, JobResult  # noqa: E402
from ..organs import BTCV_COLORS  # noqa: E402
from .results import AttackEntry, ReportMetrics  # noqa: E402


def write_report(job: JobResult, folder: Path, files: dict[str, str], curve: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write report.json, report.html and figures/ for a finished :class:`JobResult`.

    ``curve``: what :func:`~.curve.write_curve_files` returned for ``folder / "curve"``, if a
    robustness curve was run; its sentence and figure go into the report."""
    (folder / "figures").mkdir(exist_ok=True)
    report = report_dict(job, files)
    figures = _figures(job, folder / "figures")
    if curve is not None:
        figures["robustness curve (Dice against SSIM and against the largest HU change)"] = "curve/curve.png"
        report["curve"] = {"summary": curve["sentence"], "csv": "curve/curve.csv", "html": "curve/curve.html",
                           "points": len(curve["points"])}
    report["figures"] = figures
    (folder / "report.json").write_text(json.dumps(_json_safe(report), indent=2), encoding="utf-8")
    (folder / "report.html").write_text(_html(report), encoding="utf-8")
    return report


def report_dict(job: JobResult, files: dict[str, str]) -> dict[str, Any]:
    """The JSON-ready summary of a job (numbers only, no arrays)."""
    spec = job.loaded.spec
    return {
        "freqadvsegment_version": __version__,
        "model": {"name": job.loaded.name, "spec": spec.to_dict()},
        "device": str(job.loaded.device),
        "options": vars(job.options),
        "input_grid": {"size": job.image.GetSize(), "spacing_mm": job.image.GetSpacing()},
        "model_grid": {"size": job.ctx.model.size, "spacing_mm": job.ctx.model.spacing},
        "reference": "ground truth" if job.ground_truth is not None else "clean prediction",
        "clean_vs_ground_truth": None if job.clean_metrics is None else job.clean_metrics.to_json(),
        "attacks": {o.request.label: attack_entry(o).to_json() for o in job.outcomes},
        "notes": list(job.notes),
        "files": files,
    }


def attack_entry(outcome: AttackOutcome) -> AttackEntry:
    """An attack's report entry (report.json's ``attacks[label]``)."""
    return AttackEntry(outcome.request.method, outcome.request.params, outcome.seconds, outcome.metrics,
                       outcome.result.history)


def _json_safe(value: Any) -> Any:
    """NaN/inf become null (strict JSON); tuples become lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


# --- figures ------------------------------------------------------------------------------------


def _label_cmap(n: int) -> ListedColormap:
    colors = [(0, 0, 0, 0)] + [(*(c / 255 for c in BTCV_COLORS[i % len(BTCV_COLORS)]), 0.55) for i in range(1, n)]
    return ListedColormap(colors)


def _axial(vol: np.ndarray, k: int) -> np.ndarray:
    """Axial slice in radiological display (patient right on screen left, anterior up) of a RAS
    [H=x, W=y, D=z] volume."""
    return vol[::-1, ::-1, k].T


def _coronal(vol: np.ndarray, j: int) -> np.ndarray:
    """Coronal slice (superior up, patient right on screen left) of a RAS [x, y, z] volume."""
    return vol[::-1, j, ::-1].T


def _most_changed(changed: np.ndarray, foreground: np.ndarray, axis: int) -> int:
    """Index along ``axis`` where most labels flipped (else the foreground's centre)."""
    others = tuple(a for a in range(3) if a != axis)
    counts = changed.sum(axis=others)
    if counts.max() > 0:
        return int(counts.argmax())
    fg = foreground.sum(axis=others)
    return int(np.round((np.arange(len(fg)) * fg).sum() / max(fg.sum(), 1))) if fg.sum() else len(fg) // 2


def _figures(job: JobResult, folder: Path) -> dict[str, str]:
    figures = {}
    for outcome in job.outcomes:
        name = f"{outcome.request.label}_slices.png"
        _slices_figure(job, outcome, folder / name)
        figures[f"{outcome.request.label} slices"] = f"figures/{name}"
        name = f"{outcome.request.label}_changes.png"
        _changes_figure(job, outcome, folder / name)
        figures[f"{outcome.request.label}: where the labels changed (organ lost, organ gained)"] = f"figures/{name}"
    if job.outcomes:
        _dice_figure(job, folder / "dice.png")
        _spectrum_figure(job, folder / "spectrum.png")
        _history_figure(job, folder / "history.png")
        figures.update(dice="figures/dice.png", spectrum="figures/spectrum.png", history="figures/history.png")
    return figures


def _slices_figure(job: JobResult, outcome: AttackOutcome, path: Path) -> None:
    x = job.x[0, 0].cpu().numpy()
    adv = outcome.result.adv[0, 0].cpu().numpy()
    clean_pred = job.clean_pred[0, 0].cpu().numpy()
    adv_pred = outcome.adv_pred[0, 0].cpu().numpy()
    a_min, a_max = job.ctx.window
    delta_hu = (adv - x) * (a_max - a_min)
    changed = clean_pred != adv_pred
    n = len(job.loaded.spec.label_names)
    cmap = _label_cmap(n)
    spacing = job.ctx.model.spacing
    # A robust colour limit: a few large changes at air/bone edges would wash out the rest.
    lim = max(float(np.percentile(np.abs(delta_hu), 99.5)), 1e-6)
    views = [("axial", _axial, 2, spacing[1] / spacing[0]), ("coronal", _coronal, 1, spacing[2] / spacing[0])]
    fig, axes = plt.subplots(2, 4, figsize=(16, 8.5))
    for row, (view, cut, axis, aspect) in enumerate(views):
        index = _most_changed(changed, clean_pred > 0, axis)
        panels = [
            ("clean + segmentation", cut(x, index), cut(clean_pred, index)),
            (f"{outcome.request.label} adversarial + segmentation", cut(adv, index), cut(adv_pred, index)),
        ]
        for col, (title, img, seg) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(img, cmap="gray", vmin=0, vmax=1, aspect=aspect)
            ax.imshow(seg, cmap=cmap, vmin=0, vmax=n - 1, interpolation="nearest", aspect=aspect)
            ax.set_title(f"{title}\n{view} slice {index}", fontsize=9)
        ax = axes[row, 2]
        im = ax.imshow(cut(delta_hu, index), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect=aspect)
        ax.set_title(f"perturbation (HU)\n{view} slice {index}", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
        ax = axes[row, 3]
        ax.imshow(cut(x, index), cmap="gray", vmin=0, vmax=1, aspect=aspect)
        ax.imshow(np.ma.masked_where(~cut(changed, index), cut(changed, index)), cmap="autumn", aspect=aspect)
        ax.set_title(f"labels that flipped ({int(changed.sum())} voxels in all)\n{view} slice {index}", fontsize=9)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(f"{outcome.request.label}: R on screen left (radiological view)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _changes_figure(job: JobResult, outcome: AttackOutcome, path: Path) -> None:
    """The label-change map: changed voxels coloured by the organ lost (left) and gained (right)."""
    x = job.x[0, 0].cpu().numpy()
    clean, adv = job.clean_pred[0, 0].cpu().numpy(), outcome.adv_pred[0, 0].cpu().numpy()
    changed = clean != adv
    n = len(job.loaded.spec.label_names)
    cmap = _label_cmap(n).with_extremes(bad=(0, 0, 0, 0))
    spacing = job.ctx.model.spacing
    views = [("axial", _axial, 2, spacing[1] / spacing[0]), ("coronal", _coronal, 1, spacing[2] / spacing[0])]
    fig, axes = plt.subplots(2, 2, figsize=(9, 8.5))
    for row, (view, cut, axis, aspect) in enumerate(views):
        index = _most_changed(changed, clean > 0, axis)
        for col, (what, labels) in enumerate((("lost", clean), ("gained", adv))):
            ax = axes[row, col]
            ax.imshow(cut(x, index), cmap="gray", vmin=0, vmax=1, aspect=aspect)
            shown = np.ma.masked_where(~cut(changed, index), cut(labels, index))
            ax.imshow(shown, cmap=cmap, vmin=0, vmax=n - 1, interpolation="nearest", aspect=aspect)
            ax.set_title(f"organ {what} where labels changed\n{view} slice {index}", fontsize=9)
            ax.axis("off")
    changes = outcome.metrics.label_changes
    worst = sorted(changes.items(), key=lambda kv: -(kv[1].lost + kv[1].gained))[:4]
    text = "; ".join(f"{k}: -{v.lost} +{v.gained}" for k, v in worst) or "no label changed"
    fig.suptitle(f"{outcome.request.label}: {text} voxels (input grid)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _organ_rows(job: JobResult) -> tuple[list[str], dict[str, list[float]], dict[str, list[float]]]:
    """Organ names present in the reference, with Dice and HD95 per condition."""
    first = job.outcomes[0].metrics.vs_reference.per_class
    organs = [name for name, m in first.items() if m.ref_voxels > 0]
    dice, hd = {}, {}
    if job.clean_metrics is not None:
        dice["clean"] = [job.clean_metrics.per_class[o].dice for o in organs]
        hd["clean"] = [job.clean_metrics.per_class[o].hd95_mm for o in organs]
    for outcome in job.outcomes:
        per = outcome.metrics.vs_reference.per_class
        dice[outcome.request.label] = [per[o].dice for o in organs]
        hd[outcome.request.label] = [per[o].hd95_mm for o in organs]
    return organs, dice, hd


def _dice_figure(job: JobResult, path: Path) -> None:
    organs, dice, hd = _organ_rows(job)
    fig, axes = plt.subplots(2, 1, figsize=(max(8, len(organs) * 0.9), 8), sharex=True)
    width = 0.8 / max(len(dice), 1)
    for i, name in enumerate(dice):
        pos = np.arange(len(organs)) + i * width
        axes[0].bar(pos, np.nan_to_num(dice[name]), width, label=name)
        axes[1].bar(pos, np.nan_to_num(hd[name]), width, label=name)
    reference = "ground truth" if job.ground_truth is not None else "the clean prediction"
    axes[0].set_ylabel(f"Dice vs {reference}")
    axes[0].set_ylim(0, 1)
    axes[1].set_ylabel("HD95 (mm)")
    axes[0].legend(fontsize=8)
    axes[1].set_xticks(np.arange(len(organs)) + 0.4 - width / 2)
    axes[1].set_xticklabels(organs, rotation=40, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _spectrum_figure(job: JobResult, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    bands = len(job.outcomes[0].metrics.perturbation.band_energy)
    width = 0.8 / len(job.outcomes)
    for i, outcome in enumerate(job.outcomes):
        ax.bar(np.arange(bands) + i * width, outcome.metrics.perturbation.band_energy, width, label=outcome.request.label)
    ax.set_xticks(np.arange(bands) + 0.4 - width / 2)
    ax.set_xticklabels([f"{b / bands:.2f}-{(b + 1) / bands:.2f}" for b in range(bands)])
    ax.set_xlabel("radial frequency band (fraction of the highest)")
    ax.set_ylabel("share of perturbation energy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _history_figure(job: JobResult, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for outcome in job.outcomes:
        hist = outcome.result.history
        if len(hist) > 1:
            ax.plot([h["step"] for h in hist], [h["loss"] for h in hist], marker=".", label=f"{outcome.request.label} loss")
            if "ssim" in hist[0]:
                ax.plot([h["step"] for h in hist], [h["ssim"] for h in hist], ls="--", label=f"{outcome.request.label} SSIM")
    ax.set_xlabel("attack step")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "single-step attacks: no history", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --- HTML ---------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _summary_rows(report: ReportMetrics) -> str:
    rows = []
    clean = report.clean
    if clean is not None:
        rows.append(f"<tr><td>clean</td><td>{_fmt(clean.mean_dice)}</td><td>{_fmt(clean.mean_hd95_mm, 1)}</td>" + "<td>–</td>" * 6 + "</tr>")
    for name, entry in report.attacks.items():
        a = entry.metrics
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{_fmt(a.vs_reference.mean_dice)}</td>"
            f"<td>{_fmt(a.vs_reference.mean_hd95_mm, 1)}</td><td>{_fmt(a.vs_clean_prediction.mean_dice)}</td>"
            f"<td>{_fmt(100 * a.flip_rate, 2)}</td><td>{_fmt(a.perturbation_hu_linf, 1)}</td>"
            f"<td>{_fmt(a.perturbation.psnr_db, 1)}</td><td>{_fmt(a.perturbation.ssim, 4)}</td><td>{_fmt(entry.seconds, 1)}</td></tr>"
        )
    return "\n".join(rows)


def _organ_table(report: ReportMetrics) -> str:
    attacks = report.attacks
    if not attacks:
        return ""
    names = list(attacks)
    head = "".join(f"<th>{html.escape(n)} Dice</th>" for n in names)
    clean = report.clean
    head = ("<th>clean Dice</th>" if clean else "") + head
    rows = []
    for organ, m in attacks[names[0]].metrics.vs_reference.per_class.items():
        cells = f"<td>{_fmt(clean.per_class[organ].dice)}</td>" if clean else ""
        cells += "".join(f"<td>{_fmt(attacks[n].metrics.vs_reference.per_class[organ].dice)}</td>" for n in names)
        rows.append(f"<tr><td>{html.escape(organ)}</td><td>{m.ref_voxels}</td>{cells}</tr>")
    return f"<table><tr><th>organ</th><th>reference voxels</th>{head}</tr>{''.join(rows)}</table>"


def _budget_table(report: ReportMetrics) -> str:
    rows = []
    for name, entry in report.attacks.items():
        b, st = entry.metrics.budget, entry.metrics.strength
        visible = "<b style='color:#b00'>yes</b>" if entry.metrics.visible else "no"
        settings = ", ".join(f"{k}={_fmt(v, 4)}" for k, v in entry.params.items()) or "defaults"
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{html.escape(entry.method)}: {settings}</td><td>{html.escape(st.text if st else '–')}</td>"
            f"<td>{_fmt(b.linf_hu, 1)}</td><td>{_fmt(b.rms_hu, 2)}</td><td>{_fmt(b.psnr_db, 1)}</td>"
            f"<td>{_fmt(b.ssim, 3)}</td><td>{visible}</td></tr>"
        )
    if not rows:
        return ""
    return ("<table id='budgets'><tr><th>attack</th><th>settings</th><th>strength</th><th>max |change| (HU)</th><th>RMS change (HU)</th>"
            f"<th>PSNR (dB)</th><th>SSIM</th><th>visible?</th></tr>{''.join(rows)}</table>")


def _metric_help() -> str:
    items = dict(METRIC_HELP)
    items["visible?"] = f"yes when the largest change exceeds {VISIBLE_HU:g} HU or SSIM is under {VISIBLE_SSIM:g}"
    items["Dice"] = "overlap of an organ with the reference, 2|A∩B| / (|A| + |B|): 1 is perfect, 0 no overlap"
    items["HD95"] = "95th-percentile distance between the two organ surfaces, in mm: how far off the boundary is"
    return "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in items.items())


def _warnings(report: ReportMetrics) -> str:
    lines = [f"<li><b>{html.escape(n)}</b>: {html.escape(e.metrics.visible)}</li>"
             for n, e in report.attacks.items() if e.metrics.visible]
    return f"<ul id='visible' style='color:#b00'>{''.join(lines)}</ul>" if lines else ""


def _drop_tables(report: ReportMetrics) -> str:
    out = []
    for name, entry in report.attacks.items():
        changes = entry.metrics.label_changes
        rows = "".join(
            f"<tr><td>{html.escape(r.organ)}</td><td>{_fmt(r.clean_dice)}</td><td>{_fmt(r.dice)}</td>"
            f"<td>{_fmt(r.dice_drop)}</td><td>{_fmt(r.clean_hd95_mm, 1)}</td><td>{_fmt(r.hd95_mm, 1)}</td>"
            f"<td>{_fmt(r.hd95_increase_mm, 1)}</td><td>{changes[r.organ].lost if r.organ in changes else 0}</td>"
            f"<td>{changes[r.organ].gained if r.organ in changes else 0}</td></tr>"
            for r in entry.metrics.organ_drops
        )
        out.append(f"<h3>{html.escape(name)}</h3><table class='drops'><tr><th>organ</th><th>clean Dice</th><th>attacked Dice</th>"
                   "<th>Dice drop</th><th>clean HD95 (mm)</th><th>attacked HD95 (mm)</th><th>HD95 increase (mm)</th>"
                   f"<th>voxels lost</th><th>voxels gained</th></tr>{rows}</table>")
    return "".join(out)


def _curve_section(report: dict[str, Any]) -> str:
    curve = report.get("curve")
    if not curve:
        return ""
    return (f"<h2>Robustness curve</h2><p id='curve-summary'><b>{html.escape(curve['summary'])}</b>. "
            f"{curve['points']} points; <a href='{curve['html']}'>curve page</a>, <a href='{curve['csv']}'>curve.csv</a>.</p>")


def _html(report: dict[str, Any]) -> str:
    metrics = ReportMetrics.from_json(report)
    figures = "".join(
        f"<figure><img src='{html.escape(src)}' alt='{html.escape(title)}'><figcaption>{html.escape(title)}</figcaption></figure>"
        for title, src in report["figures"].items()
    )
    files = "".join(f"<li><a href='{html.escape(f)}'>{html.escape(f)}</a></li>" for f in report["files"].values())
    ref = html.escape(report["reference"])
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>FreqAdvSegment report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}} td:first-child{{text-align:left}}
img{{max-width:100%}} figure{{margin:1em 0}}</style></head><body>
<h1>FreqAdvSegment report</h1>
<p>Model <b>{html.escape(report['model']['name'])}</b> ({html.escape(report['model']['spec']['arch'])}) on {html.escape(report['device'])};
input grid {html.escape(str(report['input_grid']['size']))} at {html.escape(_spacing(report['input_grid']['spacing_mm']))} mm,
model grid {html.escape(str(report['model_grid']['size']))} at {html.escape(_spacing(report['model_grid']['spacing_mm']))} mm.
Metrics are on the input's grid, against the <b>{ref}</b>; means exclude background unless asked.</p>
{''.join(f"<p class='note'><b>{html.escape(n)}</b></p>" for n in report.get("notes", []))}
<h2>Summary</h2>
<table id="summary"><tr><th>condition</th><th>mean Dice vs {ref}</th><th>mean HD95 (mm)</th><th>Dice vs clean prediction</th>
<th>labels flipped (%)</th><th>L-inf (HU)</th><th>PSNR (dB)</th><th>SSIM</th><th>seconds</th></tr>
{_summary_rows(metrics)}</table>
<h2>Budgets: how large each change is</h2>
<p>Measured on the input's own grid, inside the patient's body (a mask from the CT), so that the air
around the patient does not make a change look smaller or larger. Compare attacks at equal budget:
a larger Dice drop bought with a larger, visible change is not a stronger attack.</p>
{_budget_table(metrics)}
<ul>{_metric_help()}</ul>
{_warnings(metrics)}
<h2>Per organ</h2>{_organ_table(metrics)}
<h2>Where it broke: per-organ drops, worst first</h2>{_drop_tables(metrics)}
{_curve_section(report)}
<h2>Figures</h2>{figures}
<h2>Files</h2><ul>{files}</ul>
<p style="color:#777">freqadvsegment {html.escape(report['freqadvsegment_version'])}</p>
</body></html>
"""


def _spacing(spacing) -> str:
    return " x ".join(f"{s:.2f}" for s in spacing)
