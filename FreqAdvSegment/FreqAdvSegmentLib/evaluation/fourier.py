"""A 3D Fourier sensitivity map of a segmentation model (Yin et al. 2019, "A Fourier perspective
on model robustness", taken from 2D classification to 3D segmentation).

The model-grid CT is perturbed with Gaussian noise of a fixed RMS in HU whose spectrum lies in one
band: a radial shell of spatial frequency (cycles/mm, on the grid's own voxel spacing) crossed with
an orientation, *in-plane* (the frequency vector is closer to the axial plane: ``|f_D| <= |f_HW|``)
or *through-plane* (``|f_D| > |f_HW|``). For every band the Dice of each organ against the
reference (the ground truth, else the clean prediction) is measured; the drop from the clean Dice
says how much the model relies on that band. A model that blurs its input ignores the high bands.

Grid: tensors are [H, W, D] (the pipeline's RAS model grid: H, W in-plane, D axial) with
``spacing_mm`` their voxel sides. Noise is added to the *unclipped* HU and windowed afterwards, as
the corruptions do, so noise in air (far below the window) stays invisible as it would on a scan.

    bands = default_bands((1.5, 1.5, 2.0), n_shells=6)
    rows = fourier_map(predict, hu, window, spacing, reference, label_names, bands, rms_hu=20.0)
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

ORIENTATIONS = ("in-plane", "through-plane")

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Band:
    """One cell of the map: frequencies with ``f_low <= |f| < f_high`` (cycles/mm, |f| > 0) of one
    orientation ("in-plane" or "through-plane"); ``index`` numbers the shell from the lowest."""

    index: int
    f_low: float
    f_high: float
    orientation: str

    @property
    def name(self) -> str:
        return f"{self.f_low:.3f}-{self.f_high:.3f}"


@dataclass(frozen=True)
class FourierRow:
    """One band and one organ ("mean": the mean over organs present in the reference)."""

    band: int
    orientation: str
    f_low: float
    f_high: float
    organ: str
    dice: float  # mean over seeds
    dice_drop: float  # clean Dice minus ``dice``
    rms_hu: float  # RMS of the added noise (HU), measured


def default_bands(spacing_mm: Sequence[float], n_shells: int = 6) -> list[Band]:
    """``n_shells`` equal-width radial shells from 0 to the Nyquist frequency of the finest axis
    (0.5 / min spacing, cycles/mm), each in both orientations."""
    if n_shells < 1:
        raise ValueError(f"the number of frequency shells must be >= 1, got {n_shells}")
    edges = np.linspace(0.0, 0.5 / min(float(s) for s in spacing_mm), n_shells + 1)
    return [Band(i, float(edges[i]), float(edges[i + 1]), o) for i in range(n_shells) for o in ORIENTATIONS]


def frequency_axes(shape: Sequence[int], spacing_mm: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """(|f|, |f_in-plane|) in cycles/mm on the FFT grid of a volume [H, W, D]; both [H, W, D]."""
    fh, fw, fd = (torch.fft.fftfreq(int(n), d=float(s), dtype=torch.float64) for n, s in zip(shape, spacing_mm))
    in_plane = torch.sqrt(fh[:, None, None] ** 2 + fw[None, :, None] ** 2).expand(*shape)
    radial = torch.sqrt(in_plane**2 + fd[None, None, :] ** 2)
    return radial, in_plane


def band_mask(shape: Sequence[int], spacing_mm: Sequence[float], band: Band) -> torch.Tensor:
    """Bool [H, W, D]: the FFT bins of ``band`` (symmetric under f -> -f, so noise made from it is real)."""
    if band.orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {ORIENTATIONS}, got {band.orientation!r}")
    radial, in_plane = frequency_axes(shape, spacing_mm)
    through = radial**2 - in_plane**2  # f_D^2
    shell = (radial >= band.f_low) & (radial < band.f_high) & (radial > 0)  # no DC: that is an HU offset
    side = through <= in_plane**2 if band.orientation == "in-plane" else through > in_plane**2
    return shell & side


def band_noise(
    shape: Sequence[int], spacing_mm: Sequence[float], band: Band, rms_hu: float, generator: torch.Generator
) -> torch.Tensor | None:
    """Gaussian noise [H, W, D] (float32, HU) with its spectrum inside ``band`` and RMS exactly
    ``rms_hu``; None when the grid has no frequency in the band (e.g. a thin volume's low
    through-plane shell)."""
    mask = band_mask(shape, spacing_mm, band)
    if not bool(mask.any()):
        return None
    white = torch.randn(tuple(shape), generator=generator, dtype=torch.float64)
    noise = torch.fft.ifftn(torch.fft.fftn(white) * mask).real
    rms = noise.pow(2).mean().sqrt()
    return (noise * (rms_hu / rms)).float()


def dice_per_label(pred: torch.Tensor, ref: torch.Tensor, n_labels: int) -> np.ndarray:
    """Dice of every label 0..n_labels-1 of two label maps (same shape); NaN where a label is in
    neither, 0 where it is in only one."""
    p = pred.reshape(-1).long().cpu().numpy()
    r = ref.reshape(-1).long().cpu().numpy()
    joint = np.bincount(r * n_labels + p, minlength=n_labels * n_labels).reshape(n_labels, n_labels)
    both = np.diag(joint).astype(np.float64)
    total = joint.sum(0) + joint.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 2.0 * both / total, np.nan)


def fourier_map(
    predict: Callable[[torch.Tensor], torch.Tensor],
    hu: torch.Tensor,
    window: tuple[float, float],
    spacing_mm: Sequence[float],
    reference: torch.Tensor,
    label_names: Sequence[str],
    bands: Sequence[Band],
    rms_hu: float = 20.0,
    seeds: Sequence[int] = (0,),
    progress: Progress | None = None,
) -> list[FourierRow]:
    """Dice drop per band and per organ.

    Args:
        predict: model input [1, 1, H, W, D] in [0, 1] -> labels [1, 1, H, W, D] (or [H, W, D]).
        hu: unclipped HU on the model grid, [H, W, D]; the model's input is its windowing.
        window: (a_min, a_max) HU of the model's intensity window.
        spacing_mm: voxel sides (mm) of H, W, D.
        reference: labels [H, W, D] Dice is measured against (ground truth or clean prediction).
        label_names: name per label value; 0 (background) is not reported.
        bands: the cells of the map (see :func:`default_bands`); empty ones on this grid are left out.
        rms_hu: RMS of the noise added in every band (HU).
        seeds: one noise draw per seed; Dice is their mean.
        progress: called (done, total) after every prediction.

    Returns:
        For every band present on the grid: one row per organ present in the reference, then "mean".
    """
    if not rms_hu > 0:
        raise ValueError(f"the noise RMS must be a positive number of HU, got {rms_hu}")
    hu = torch.as_tensor(hu, dtype=torch.float32).cpu()
    reference = torch.as_tensor(reference).reshape(hu.shape)
    a_min, a_max = window
    n = len(label_names)

    def dice_of(volume_hu: torch.Tensor) -> np.ndarray:
        x = ((volume_hu - a_min) / (a_max - a_min)).clamp(0.0, 1.0)[None, None]
        with torch.no_grad():
            return dice_per_label(predict(x), reference, n)

    clean = dice_of(hu)
    organs = [c for c in range(1, n) if bool((reference == c).any())]
    total, done, rows = 1 + len(bands) * len(seeds), 1, []
    if progress:
        progress(done, total)
    for band in bands:
        dices, rms = [], []
        for seed in seeds:
            noise = band_noise(hu.shape, spacing_mm, band, rms_hu, torch.Generator().manual_seed(int(seed)))
            done += 1
            if noise is not None:
                dices.append(dice_of(hu + noise))
                rms.append(float(noise.pow(2).mean().sqrt()))
            if progress:
                progress(done, total)
        if dices:
            rows += _band_rows(band, np.mean(dices, axis=0), clean, organs, label_names, float(np.mean(rms)))
    return rows


def _band_rows(band: Band, dice: np.ndarray, clean: np.ndarray, organs: list[int],
               label_names: Sequence[str], rms: float) -> list[FourierRow]:
    def row(organ: str, d: float, c: float) -> FourierRow:
        return FourierRow(band.index, band.orientation, band.f_low, band.f_high, organ, d, c - d, rms)

    rows = [row(label_names[c], float(dice[c]), float(clean[c])) for c in organs]
    if organs:
        rows.append(row("mean", float(np.mean(dice[organs])), float(np.mean(clean[organs]))))
    return rows


def most_damaging(rows: Sequence[FourierRow]) -> FourierRow | None:
    """The "mean" row with the largest Dice drop."""
    means = [r for r in rows if r.organ == "mean"]
    return max(means, key=lambda r: r.dice_drop) if means else None


def summary_sentence(rows: Sequence[FourierRow]) -> str:
    """One sentence naming the most damaging band."""
    worst = most_damaging(rows)
    if worst is None:
        return "no organ was in the reference, so no Dice drop was measured"
    return (f"the most damaging band is {worst.f_low:.3f}-{worst.f_high:.3f} cycles/mm {worst.orientation} "
            f"(mean Dice drop {worst.dice_drop:.3f} at {worst.rms_hu:.1f} HU RMS noise)")


def fourier_csv(rows: Sequence[FourierRow]) -> str:
    """fourier.csv's text: band, orientation, f_low, f_high (cycles/mm), organ, dice, dice_drop, rms_hu."""
    out = io.StringIO()
    writer = csv.DictWriter(out, [f.name for f in fields(FourierRow)], lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in asdict(r).items()})
    return out.getvalue()


def fourier_figure(rows: Sequence[FourierRow], path: Path) -> None:
    """fourier.png: the mean Dice drop as bands x orientation, and per organ (organs x band cells)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = sorted({(r.band, r.orientation, r.f_low, r.f_high) for r in rows}, key=lambda c: (ORIENTATIONS.index(c[1]), c[0]))
    shells = sorted({(r.band, r.f_low, r.f_high) for r in rows})
    organs = list(dict.fromkeys(r.organ for r in rows if r.organ != "mean"))
    drop = {(r.band, r.orientation, r.organ): r.dice_drop for r in rows}
    mean = np.array([[drop.get((b, o, "mean"), np.nan) for o in ORIENTATIONS] for b, *_ in shells])
    per_organ = np.array([[drop.get((b, o, organ), np.nan) for b, o, *_ in cells] for organ in organs]).reshape(len(organs), len(cells))
    top = float(np.nanmax(np.abs(np.r_[mean.ravel(), per_organ.ravel(), 1e-3])))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(4 + 0.5 * len(cells), 1.5 + 0.35 * max(len(shells), len(organs), 4)),
                                   gridspec_kw={"width_ratios": [1, max(len(cells) / 2, 1)]})
    style = {"cmap": "RdBu_r", "vmin": -top, "vmax": top, "aspect": "auto"}
    ax1.imshow(mean, **style)
    ax1.set_xticks(range(2), ["in-plane", "through-\nplane"], fontsize=8)
    ax1.set_yticks(range(len(shells)), [f"{lo:.3f}-{hi:.3f}" for _, lo, hi in shells])
    ax1.set_ylabel("radial frequency (cycles/mm)")
    ax1.set_title("mean Dice drop")
    image = ax2.imshow(per_organ, **style)
    ax2.set_xticks(range(len(cells)), [f"{'IP' if o == 'in-plane' else 'TP'} {lo:.2f}-{hi:.2f}" for _, o, lo, hi in cells],
                   rotation=60, ha="right", fontsize=7)
    ax2.set_yticks(range(len(organs)), organs, fontsize=7)
    ax2.set_title("Dice drop per organ (IP in-plane, TP through-plane)")
    fig.colorbar(image, ax=ax2, label="Dice drop")
    fig.suptitle(f"Fourier sensitivity, {rows[0].rms_hu:.1f} HU RMS band-limited noise" if rows else "Fourier sensitivity")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_fourier_files(rows: Sequence[FourierRow], folder: Path) -> None:
    """fourier.csv and fourier.png in ``folder`` (the caller makes the folder atomic)."""
    (folder / "fourier.csv").write_text(fourier_csv(rows), encoding="utf-8")
    fourier_figure(rows, folder / "fourier.png")


def job_predictor(job) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor, torch.Tensor]:
    """(predict, unclipped HU [H, W, D], reference labels [H, W, D]) of a started job
    (``job.pipeline.start_job``): its model with its sliding window; the reference is its ground
    truth, else its clean prediction."""
    from ..job.inference import segment
    from ..job.pipeline import model_grid_hu, window_settings

    loaded, options = job.loaded, job.options
    overlap, batch, mode = window_settings(options, loaded)
    roi = tuple(options.roi_size or loaded.spec.roi_size)

    def predict(x: torch.Tensor) -> torch.Tensor:
        return segment(loaded.model, x.to(loaded.device), roi, overlap, batch, options.amp, mode).cpu()

    reference = job.gt_model if job.gt_model is not None else job.clean_pred
    return predict, torch.from_numpy(model_grid_hu(job)), reference.cpu()[0, 0]


def job_fourier_map(job, bands: Sequence[Band], rms_hu: float = 20.0, seeds: Sequence[int] = (0,),
                    progress: Progress | None = None) -> list[FourierRow]:
    """:func:`fourier_map` of a started job (see :func:`job_predictor`)."""
    predict, hu, reference = job_predictor(job)
    return fourier_map(predict, hu, job.ctx.window, job.ctx.model.spacing, reference, job.loaded.spec.label_names,
                       bands, rms_hu, seeds, progress)
