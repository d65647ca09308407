"""What the run commands show on the terminal: progress bars, the summary lines, warnings."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from ..job.progress import JsonProgress, json_requested

if TYPE_CHECKING:
    from ..evaluation.results import AttackMetrics


class BarProgress:
    """One tqdm bar per stage (segment, vafa, pgd, ...); JSON lines instead when the caller set
    FREQADV_PROGRESS=json (see job/progress.py)."""

    def __init__(self) -> None:
        self.bars: dict[str, tqdm] = {}
        self.json = JsonProgress() if json_requested() else None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.json is not None:
            return self.json(stage, done, total)
        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=f"{stage:>8s}", unit="step", leave=True, file=sys.stderr)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()


def warn_if_not_ct(args: argparse.Namespace, image: Any, loaded: Any) -> None:
    """A CT model on an image that does not look like a CT in HU: say so, then go on."""
    from ..job.modality import ct_warning  # SimpleITK: loaded when a command runs, not for --help

    message = ct_warning(image, loaded.spec)
    if message:
        print(f"freqadv {args.command}: warning: {message}", file=sys.stderr)


def print_summary(job: Any) -> None:
    """One line per condition: Dice, then the size of the change that bought it; warnings last."""
    ref = "ground truth" if job.ground_truth is not None else "clean prediction"
    if job.clean_metrics is not None:
        print(f"clean      mean Dice vs {ref}: {job.clean_metrics.mean_dice:.3f}")
    for o in job.outcomes:
        m = o.metrics
        print(f"{o.request.label:<10s} mean Dice vs {ref}: {m.vs_reference.mean_dice:.3f}  "
              f"(vs clean prediction {m.vs_clean_prediction.mean_dice:.3f}, "
              f"{100 * m.flip_rate:.2f}% labels flipped, {o.seconds:.1f} s)")
        print(f"{'':<10s} budget: {budget_text(m)}")
    for o in job.outcomes:
        if o.metrics.visible:
            print(f"warning: {o.request.label}: {o.metrics.visible}")


def budget_text(metrics: AttackMetrics) -> str:
    """The perturbation's size inside the body, in one line."""
    b, st = metrics.budget, metrics.strength
    strength = f"{st.text}; " if st else ""
    return (f"{strength}inside the body: max {b.linf_hu:.1f} HU, RMS {b.rms_hu:.1f} HU, "
            f"PSNR {b.psnr_db:.1f} dB, SSIM {b.ssim:.3f}")
