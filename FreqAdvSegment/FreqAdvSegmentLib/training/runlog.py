"""The run's logs: CSV files always, TensorBoard event files when ``tensorboard`` is installed.

``train_log.csv``: one row per logged step (step, epoch, loss and its terms, lr, seconds).
``val_log.csv``: one row per validation (epoch, step, clean Dice, Dice under VAFA, best so far).
On resume the rows written after the checkpoint (work that was lost) are dropped first, so the
logs read as if the run had never stopped.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from ..files.atomic_file import replace_file

TRAIN_FIELDS = ("step", "epoch", "loss", "loss_clean", "loss_adv", "loss_fr", "lr", "seconds")
VAL_FIELDS = ("step", "epoch", "dice_clean", "dice_vafa", "metric", "best_metric", "best_step", "seconds")


class RunLog:
    """CSV (and optional TensorBoard) logging for rank 0; other ranks get ``None`` instead."""

    def __init__(self, folder: str | Path, resume_step: int | None, tensorboard: bool = True) -> None:
        self.folder = Path(folder)
        self.train_csv = self.folder / "train_log.csv"
        self.val_csv = self.folder / "val_log.csv"
        for path, fields in ((self.train_csv, TRAIN_FIELDS), (self.val_csv, VAL_FIELDS)):
            _truncate_after(path, fields, resume_step)
        self.writer = _tensorboard_writer(self.folder / "tensorboard") if tensorboard else None

    def train(self, row: dict[str, Any]) -> None:
        _append(self.train_csv, TRAIN_FIELDS, row)
        if self.writer is not None:
            for key in ("loss", "loss_clean", "loss_adv", "loss_fr", "lr"):
                if row.get(key) is not None:
                    self.writer.add_scalar(f"train/{key}", row[key], row["step"])

    def val(self, row: dict[str, Any]) -> None:
        _append(self.val_csv, VAL_FIELDS, row)
        if self.writer is not None:
            for key in ("dice_clean", "dice_vafa"):
                if row.get(key) is not None:
                    self.writer.add_scalar(f"val/{key}", row[key], row["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _tensorboard_writer(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional: pip install tensorboard
        return None
    return SummaryWriter(log_dir=str(folder))


def _append(path: Path, fields: tuple[str, ...], row: dict[str, Any]) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=fields, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({k: _cell(row.get(k)) for k in fields})


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


def _truncate_after(path: Path, fields: tuple[str, ...], step: int | None) -> None:
    """Keep only rows with step <= ``step`` (None: a new run, start the file afresh)."""
    if not path.exists():
        return
    if step is None:
        path.unlink()
        return
    with open(path, newline="") as file:
        rows = [r for r in csv.DictReader(file) if r.get("step", "").isdigit() and int(r["step"]) <= step]

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    replace_file(path, write)
