"""Training data: a Decathlon-style datalist -> cached, preprocessed volumes -> augmented patches.

The pipeline is the paper's (PAPER.md 2.3; MONAI's BTCV/UNETR recipe) with the spacing,
intensity window and orientation taken from the model's spec:

    deterministic, cached (CacheDataset):
        read + orientation + spacing + ScaleIntensityRange window (the package's own ``prepare``,
        the very code inference uses, so train and test see identical voxels)
        -> CropForeground -> pad to the patch size
    random, per draw:
        RandCropByPosNegLabel (num_samples patches) -> RandFlip on each axis -> RandRotate90
        -> RandScaleIntensity -> RandShiftIntensity [-> RandSlab, optional, not the paper's]

Reproducibility: the random part is re-seeded for every draw from (seed, epoch, the draw's
position in the epoch across all ranks), so a patch does not depend on the worker count, on the
rank that loads it, or on whether the run was interrupted and resumed; the epoch's order is
DistributedSampler's (seeded with seed + epoch). A resumed run skips the draws it already made.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from copy import deepcopy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import CacheDataset, DataLoader, list_data_collate
from monai.transforms import (
    Compose,
    CropForegroundd,
    MapTransform,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandomizableTransform,
    RandRotate90d,
    RandScaleIntensityd,
    RandShiftIntensityd,
    SpatialPadd,
)
from torch.utils.data import Dataset, DistributedSampler, Sampler

from ..files.images import read_image
from ..models import ModelSpec
from ..job.preprocess import Preprocessing, prepare, prepare_labels
from .config import TrainConfig

KEYS = ("image", "label")
# Threads that fill the cache (reading and resampling release the GIL).
CACHE_THREADS = max(1, min(4, os.cpu_count() or 1))


# --- datalist --------------------------------------------------------------------------------


def read_datalist(
    path: str | Path, split: str, data_root: str | Path | None = None, required: bool = True
) -> list[dict[str, str]]:
    """Cases of one split of a MONAI Decathlon-style datalist, with absolute paths.

    Args:
        path: the JSON file, e.g. the paper's ``dataset_synapse_18_12.json``
            (``{"training": [{"image": "imagesTr/img0005.nii.gz", "label": ...}], "validation": [...],
            "test": [...]}``); other keys (labels, modality, ...) are ignored.
        split: the key to read ("training", "validation", ...).
        data_root: folder relative paths start from (default: the JSON's folder); absolute paths
            in the datalist are kept.
        required: if False, a missing split gives an empty list instead of an error.
    Returns:
        ``[{"image": "/abs/img.nii.gz", "label": "/abs/label.nii.gz"}, ...]``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"datalist not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"datalist {path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"datalist {path} must be a JSON object with 'training'/'validation' lists")
    if split not in data:
        if not required:
            return []
        raise ValueError(f"datalist {path} has no {split!r} list (it has: {', '.join(data)})")
    root = Path(data_root) if data_root is not None else path.parent
    entries = data[split]
    if not isinstance(entries, list):
        raise ValueError(f"datalist {path}: {split!r} must be a list of cases")
    cases = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in KEYS):
            raise ValueError(
                f"datalist {path}, {split}[{i}]: each case needs an 'image' and a 'label' path "
                f"(one file each), got {entry!r}"
            )
        cases.append({k: str((root / entry[k]).resolve()) for k in KEYS})
    return cases


def check_files_exist(cases: Sequence[dict[str, str]], what: str) -> None:
    """FileNotFoundError listing (up to five of) the datalist's missing files, before any work."""
    missing = [c[k] for c in cases for k in KEYS if not Path(c[k]).exists()]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise FileNotFoundError(
            f"{len(missing)} file(s) of the {what} split are missing: {', '.join(missing[:5])}{more}; "
            "relative paths start at the datalist's folder unless --data-root says otherwise"
        )


# --- transforms ------------------------------------------------------------------------------


class PrepareVolumed(MapTransform):
    """Read a case and bring image and labels onto the model grid, exactly as inference does.

    Output: ``image`` float32 [1, H, W, D] in [0, 1], ``label`` int64 [1, H, W, D].
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(list(KEYS))
        self.prep = Preprocessing(spec.target_spacing, spec.intensity_window, spec.orientation)
        self.n_classes = spec.out_channels

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        image, ctx = prepare(read_image(data["image"]), self.prep)
        labels = prepare_labels(read_image(data["label"]), ctx)
        top = int(labels.max())
        if top >= self.n_classes:
            raise ValueError(
                f"{data['label']} holds label {top} but the model predicts only {self.n_classes} "
                f"classes (0..{self.n_classes - 1}); map the labels to the model's label map first"
            )
        return {**data, "image": image[0], "label": labels[0]}


def deterministic_transforms(spec: ModelSpec, cfg: TrainConfig, patch: Sequence[int] | None) -> Compose:
    """The cached part. ``patch``: pad to at least this size (training); None for validation.

    Crop centres are not cached (FgBgToIndices would keep two int64 indices per voxel, several
    times the volume's own memory); RandCropByPosNegLabel finds them per draw in a few ms.
    """
    steps: list[Any] = [PrepareVolumed(spec)]
    if cfg.crop_foreground:
        steps.append(CropForegroundd(keys=list(KEYS), source_key="image", allow_smaller=True))
    if patch is not None:
        steps.append(SpatialPadd(keys=list(KEYS), spatial_size=tuple(patch)))
    return Compose(steps)


class RandSlabd(RandomizableTransform, MapTransform):
    """Keep a random slab of a patch (along a random axis) and zero the rest, image and labels.

    Thin scans (e.g. a 20-slice series) fill only part of a sliding window; the rest is zero
    padding (background). A network trained only on patches full of anatomy can fail there;
    this shows it such windows. Not in the paper; off unless ``slab_prob`` > 0. The slab is
    ``min_thickness`` .. side - ``min_thickness`` voxels thick. Apply it last (zeros stay 0).
    """

    def __init__(self, keys: Sequence[str], prob: float, min_thickness: int = 8) -> None:
        RandomizableTransform.__init__(self, prob)
        MapTransform.__init__(self, list(keys))
        self.min_thickness = min_thickness
        self._slab: tuple[int, int, int] | None = None

    def randomize(self, shape: Sequence[int]) -> None:
        super().randomize(None)
        axis = int(self.R.randint(3))
        size = int(shape[axis])
        low = min(self.min_thickness, size)
        thickness = int(self.R.randint(low, max(size - low, low) + 1))
        start = int(self.R.randint(0, size - thickness + 1))
        self._slab = (axis, start, thickness)

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        out = dict(data)
        self.randomize(out[self.keys[0]].shape[1:])
        if not self._do_transform:
            return out
        axis, start, thickness = self._slab
        for key in self.key_iterator(out):
            value = out[key]
            keep = torch.zeros(value.shape[axis + 1], dtype=torch.bool, device=torch.as_tensor(value).device)
            keep[start : start + thickness] = True
            shape = [1] * value.ndim
            shape[axis + 1] = -1
            out[key] = value * keep.view(shape).to(value.dtype)
        return out


def random_transforms(cfg: TrainConfig, patch: Sequence[int]) -> Compose:
    """The per-draw random part: num_samples patches per volume, flips, rotations, intensity."""
    keys = list(KEYS)
    steps: list[Any] = [
        RandCropByPosNegLabeld(
            keys=keys, label_key="label", spatial_size=tuple(patch), pos=cfg.pos, neg=cfg.neg,
            num_samples=cfg.num_samples, image_key="image", image_threshold=0.0, allow_smaller=False,
        )
    ]
    steps += [RandFlipd(keys=keys, prob=cfg.flip_prob, spatial_axis=[axis]) for axis in cfg.flip_axes]
    if cfg.rot90_prob > 0:
        steps.append(RandRotate90d(keys=keys, prob=cfg.rot90_prob, max_k=3))
    if cfg.scale_prob > 0:
        steps.append(RandScaleIntensityd(keys="image", factors=cfg.scale_factor, prob=cfg.scale_prob))
    if cfg.shift_prob > 0:
        steps.append(RandShiftIntensityd(keys="image", offsets=cfg.shift_offset, prob=cfg.shift_prob))
    if cfg.slab_prob > 0:
        steps.append(RandSlabd(keys, prob=cfg.slab_prob))
    return Compose(steps)


# --- datasets and sampling -------------------------------------------------------------------


def draw_seed(seed: int, draw: int) -> int:
    """A 32-bit seed for one draw (numpy's SeedSequence mixes the two numbers well)."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(draw)]).generate_state(1)[0])


class AugmentedDataset(Dataset):
    """Cached preprocessed volumes plus a random part re-seeded per draw.

    Indexed by ``(case_index, draw_id)`` pairs (see :class:`DrawSampler`); returns a list of
    ``num_samples`` patch dicts.
    """

    def __init__(self, cache: CacheDataset, transform: Compose, seed: int) -> None:
        self.cache = cache
        self.transform = transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, key: tuple[int, int]) -> list[dict[str, Any]]:
        index, draw = key
        data = deepcopy(self.cache[index])  # the cache must stay untouched
        self.transform.set_random_state(seed=draw_seed(self.seed, draw))
        out = self.transform(data)
        return out if isinstance(out, list) else [out]


class DrawSampler(Sampler):
    """DistributedSampler's order for the epoch, as (case index, draw id) pairs, resumable.

    The draw id is unique per (epoch, position across all ranks), so augmentations do not repeat
    across epochs or ranks. ``skip`` drops the first draws of the epoch (a resumed run's done
    batches) without loading them.
    """

    def __init__(self, n_cases: int, world_size: int, rank: int, seed: int) -> None:
        self.base = DistributedSampler(
            range(n_cases), num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=False
        )
        self.world_size, self.rank = world_size, rank
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.base.set_epoch(epoch)
        self.epoch, self.skip = epoch, skip

    def __iter__(self) -> Iterator[tuple[int, int]]:
        per_epoch = len(self.base) * self.world_size
        for position, index in enumerate(self.base):
            if position < self.skip:
                continue
            yield int(index), self.epoch * per_epoch + position * self.world_size + self.rank

    def __len__(self) -> int:
        return max(len(self.base) - self.skip, 0)


def build_train_loader(
    cfg: TrainConfig, spec: ModelSpec, patch: Sequence[int], cases: Sequence[dict[str, str]],
    world_size: int = 1, rank: int = 0,
) -> tuple[DataLoader, DrawSampler]:
    """The training DataLoader (batches of batch_size * num_samples patches) and its sampler.

    Every rank caches every training volume (DistributedSampler reshuffles them each epoch).
    """
    cache = CacheDataset(
        list(cases), deterministic_transforms(spec, cfg, patch), cache_rate=cfg.cache_rate,
        num_workers=CACHE_THREADS, progress=False,
    )
    dataset = AugmentedDataset(cache, random_transforms(cfg, patch), cfg.seed)
    sampler = DrawSampler(len(cases), world_size, rank, cfg.seed)
    loader = DataLoader(
        dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
        collate_fn=list_data_collate, persistent_workers=False,
    )
    return loader, sampler


def steps_per_epoch(n_cases: int, world_size: int, batch_size: int) -> int:
    """Optimiser steps in one pass over the data (DistributedSampler pads ranks to equal length)."""
    return math.ceil(math.ceil(n_cases / world_size) / batch_size)


def build_val_dataset(cfg: TrainConfig, spec: ModelSpec, cases: Sequence[dict[str, str]]) -> CacheDataset:
    """Whole preprocessed validation volumes (image [1, H, W, D], label [1, H, W, D]), cached."""
    return CacheDataset(list(cases), deterministic_transforms(spec, cfg, None), cache_rate=cfg.cache_rate,
                        num_workers=CACHE_THREADS, progress=False)


def batch_tensors(batch: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain tensors from a collated batch: images float32 [N, 1, h, w, d] clipped to [0, 1]
    (intensity augmentation may leave it; the attacks work on [0, 1]) and labels int64."""
    images = _plain(batch["image"]).float().clamp_(0.0, 1.0)
    labels = _plain(batch["label"]).long()
    return images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


def _plain(t: Any) -> torch.Tensor:
    """A plain tensor (MONAI's MetaTensor carries metadata the training loop does not need)."""
    t = torch.as_tensor(t)
    return t.as_tensor() if hasattr(t, "as_tensor") else t
