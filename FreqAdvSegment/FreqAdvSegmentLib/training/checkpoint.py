"""Training checkpoints: everything a killed run needs to continue exactly where it stopped.

A checkpoint is one PyTorch file, written atomically (temporary sibling, fsync, rename) and
readable with ``torch.load(weights_only=True)``: only tensors and plain Python values, never
pickled objects. It holds

    format, version            "freqadv-train-checkpoint", CHECKPOINT_VERSION
    model                      the network's state dict (no DDP "module." prefix)
    optimizer, scheduler, scaler   their state dicts
    epoch, step, batch_in_epoch    where the run was (global optimiser steps done; batches of
                                   the current epoch done)
    rng                        per rank: torch, numpy, python and CUDA generator states, as tensors
    best                       {"metric": float or None, "step": int or None}
    config, spec               the run's TrainConfig and ModelSpec as JSON text
    world_size                 the number of processes that wrote it

A corrupt file, a model-weights file or any other foreign file gets a :class:`CheckpointError`
that says what it is and what to do.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..files.atomic_file import replace_file

CHECKPOINT_FORMAT = "freqadv-train-checkpoint"
CHECKPOINT_VERSION = 1
REQUIRED_KEYS = ("model", "optimizer", "scheduler", "scaler", "epoch", "step", "batch_in_epoch",
                 "rng", "best", "config", "spec", "world_size")
_STEP_FILE = re.compile(r"^step_(\d{8,})\.pt$")


class CheckpointError(ValueError):
    """A file that cannot be resumed from; the message says why and what to do."""


# --- RNG states as plain tensors ---------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """This process's torch, numpy, python and CUDA generator states, as tensors and numbers."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": str(name), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss_next"]))
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


# --- writing ---------------------------------------------------------------------------------


def save_checkpoint(path: str | Path, content: dict[str, Any]) -> Path:
    """Write a training checkpoint atomically: a crash mid-write never leaves a partial file
    under ``path`` (the temporary file is removed, an older checkpoint stays intact)."""
    path = Path(path)
    missing = [k for k in REQUIRED_KEYS if k not in content]
    if missing:
        raise ValueError(f"a training checkpoint needs {missing}")
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **content}
    path.parent.mkdir(parents=True, exist_ok=True)
    return replace_file(path, lambda tmp: torch.save(payload, tmp), durable=True)


def step_checkpoint_path(folder: str | Path, step: int) -> Path:
    return Path(folder) / f"step_{step:08d}.pt"


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Step checkpoints in ``folder``, oldest first (by step number, not by file time)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP_FILE.match(p.name))]
    return [p for _, p in sorted(found)]


def prune_checkpoints(folder: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` step checkpoints (keep 0: keep all)."""
    if keep <= 0:
        return
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)


# --- reading ---------------------------------------------------------------------------------


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and check a training checkpoint (``torch.load(weights_only=True)``, on the CPU).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: truncated/corrupt, a model-weights file, another program's checkpoint,
            a newer format, or missing entries.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training checkpoint not found: {path}")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zips, random bytes and pickled objects alike
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"{path} is not a readable training checkpoint ({type(error).__name__}: {reason}). "
            "It is truncated or corrupt, or not a FreqAdvSegment checkpoint (they are written "
            "atomically, so a crash does not leave a partial one); resume from an earlier one "
            "with --resume PATH, or start a new run"
        ) from None
    if not isinstance(content, Mapping) or content.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(_foreign_message(path, content))
    version = content.get("version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} is a training checkpoint of format version {version!r}; this FreqAdvSegment "
            f"reads versions up to {CHECKPOINT_VERSION}: upgrade FreqAdvSegment to resume it"
        )
    missing = [k for k in REQUIRED_KEYS if k not in content]
    if missing:
        raise CheckpointError(f"{path} is an incomplete training checkpoint: it lacks {missing}")
    return dict(content)


def _foreign_message(path: Path, content: Any) -> str:
    if isinstance(content, Mapping):
        weights = content
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(content.get(key), Mapping):
                weights = content[key]
                break
        if weights and all(isinstance(v, torch.Tensor) for v in weights.values()):
            return (
                f"{path} holds model weights, not a FreqAdvSegment training checkpoint (no optimiser, "
                "schedule or position to resume from): to fine-tune from these weights, start a new "
                "run with --init PATH"
            )
    return (
        f"{path} is not a FreqAdvSegment training checkpoint (no 'format': "
        f"'{CHECKPOINT_FORMAT}' entry); pass a file from a run's checkpoints/ folder"
    )


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The newest step checkpoint in ``folder`` or None."""
    found = list_checkpoints(folder)
    return found[-1] if found else None
