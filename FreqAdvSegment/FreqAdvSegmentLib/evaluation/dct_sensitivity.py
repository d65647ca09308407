"""Sensitivity per 3D-DCT coefficient level of VAFA's blocks: the Fourier map in VAFA's own basis.

VAFA (attacks/vafa.py) cuts the volume into b^3 blocks (8^3 by default), takes each block's 3D
DCT and quantises the coefficients. Here the CT is perturbed with Gaussian noise of a fixed RMS in
HU that lives in one *level* of every block's DCT: the coefficients (u, v, w) with u + v + w = L
(JPEG's zig-zag diagonals, in 3D; L = 0 is each block's mean, L = 3(b-1) its finest checkerboard),
and each organ's Dice drop is measured. Levels rather than the b^3 single indices keep it to
3b - 2 predictions (22 for 8^3 blocks) instead of 512.

Grid: hu [H, W, D] on the model grid; blocks start at voxel 0 as VAFA's do (a partial block at a
far edge is cut off, so there the noise is not exactly one level's).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from ..attacks.frequency import blockwise_idct3, padded_shape
from .fourier import dice_per_label


@dataclass(frozen=True)
class DctRow:
    """One DCT level and one organ ("mean": over the organs present in the reference)."""

    level: int  # u + v + w
    coefficients: int  # how many (u, v, w) of a block have this level
    organ: str
    dice: float  # mean over seeds
    dice_drop: float
    rms_hu: float


def level_mask(block: int, level: int) -> torch.Tensor:
    """Bool [b, b, b]: the DCT indices (u, v, w) with u + v + w == level."""
    i = torch.arange(block)
    return (i[:, None, None] + i[None, :, None] + i[None, None, :]) == level


def dct_level_noise(shape: Sequence[int], block: int, level: int, rms_hu: float, generator: torch.Generator) -> torch.Tensor:
    """Noise [H, W, D] (float32, HU), RMS exactly ``rms_hu``, whose blockwise DCT is zero outside ``level``."""
    nh, nw, nd = (p // block for p in padded_shape(tuple(int(s) for s in shape), block))
    coeffs = torch.randn((1, 1, nh, nw, nd, block, block, block), generator=generator, dtype=torch.float64)
    noise = blockwise_idct3(coeffs * level_mask(block, level), tuple(int(s) for s in shape))[0, 0]
    return (noise * (rms_hu / noise.pow(2).mean().sqrt())).float()


def dct_map(
    predict: Callable[[torch.Tensor], torch.Tensor],
    hu: torch.Tensor,
    window: tuple[float, float],
    reference: torch.Tensor,
    label_names: Sequence[str],
    block: int = 8,
    rms_hu: float = 20.0,
    seeds: Sequence[int] = (0,),
    progress: Callable[[int, int], None] | None = None,
) -> list[DctRow]:
    """Dice drop per DCT level of ``block``^3 blocks; arguments as ``fourier.fourier_map``."""
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
    levels = range(3 * block - 2)
    total, done, rows = 1 + len(levels) * len(seeds), 1, []
    if progress:
        progress(done, total)
    for level in levels:
        dices = []
        for seed in seeds:
            dices.append(dice_of(hu + dct_level_noise(hu.shape, block, level, rms_hu, torch.Generator().manual_seed(int(seed)))))
            done += 1
            if progress:
                progress(done, total)
        dice = np.mean(dices, axis=0)
        count = int(level_mask(block, level).sum())
        rows += [DctRow(level, count, label_names[c], float(dice[c]), float(clean[c] - dice[c]), rms_hu) for c in organs]
        if organs:
            rows.append(DctRow(level, count, "mean", float(np.mean(dice[organs])),
                               float(np.mean(clean[organs]) - np.mean(dice[organs])), rms_hu))
    return rows


def dct_sentence(rows: Sequence[DctRow], block: int) -> str:
    """One sentence naming the most damaging DCT level."""
    means = [r for r in rows if r.organ == "mean"]
    if not means:
        return "no organ was in the reference, so no DCT sensitivity was measured"
    worst = max(means, key=lambda r: r.dice_drop)
    return (f"the most damaging {block}^3-block DCT level is u+v+w={worst.level} "
            f"(mean Dice drop {worst.dice_drop:.3f} at {worst.rms_hu:.1f} HU RMS noise)")


def dct_csv(rows: Sequence[DctRow]) -> str:
    """dct.csv's text: level, coefficients, organ, dice, dice_drop, rms_hu."""
    out = io.StringIO()
    writer = csv.DictWriter(out, [f.name for f in fields(DctRow)], lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in asdict(r).items()})
    return out.getvalue()


def job_dct_map(job, block: int = 8, rms_hu: float = 20.0, seeds: Sequence[int] = (0,),
                progress: Callable[[int, int], None] | None = None) -> list[DctRow]:
    """:func:`dct_map` of a started job, as ``fourier.job_fourier_map``."""
    from .fourier import job_predictor

    predict, hu, reference = job_predictor(job)
    return dct_map(predict, hu, job.ctx.window, reference, job.loaded.spec.label_names, block, rms_hu, seeds, progress)
