"""Robust training (issue 4): natural, voxel-domain AT, VAFA AT and VAFT (Hanif et al., MICCAI 2023).

    from FreqAdvSegmentLib.training import TrainConfig, Trainer
    result = Trainer(TrainConfig(datalist="data.json", output="runs/vaft", regime="vafa-fr",
                                 init="demo-unet")).fit()

Where things live: ``config.py`` (TrainConfig, regimes), ``data.py`` (datalist, MONAI transforms,
CacheDataset, seeded per-draw augmentation, DDP sampling), ``losses.py`` (DiceCE and the frequency
consistency loss), ``trainer.py`` (the loop), ``checkpoint.py`` (atomic, resumable checkpoints),
``validation.py`` (sliding-window Dice, clean and under VAFA), ``distributed.py`` (torchrun/DDP),
``grad_checkpointing.py`` (gradient checkpointing), ``runlog.py`` (CSV/TensorBoard). The
``freqadv train`` command is ``cli/train.py``.

Heavy modules (torch, MONAI) load on first use of a name below, not on import of the package.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "TrainConfig": "config",
    "REGIMES": "config",
    "Trainer": "trainer",
    "TrainResult": "trainer",
    "frequency_consistency_loss": "losses",
    "read_datalist": "data",
    "CheckpointError": "checkpoint",
    "load_checkpoint": "checkpoint",
    "init_distributed": "distributed",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_EXPORTS)
