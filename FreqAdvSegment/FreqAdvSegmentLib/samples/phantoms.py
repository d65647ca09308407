"""Seeded synthetic torso phantoms: ellipsoid organs with CT-like intensities.

Cheap, honest data for tests, benchmarks and for padding out the demo models' training set.
Every figure made on them says so: they are not anatomy.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

# (label, HU) for a few BTCV organs with distinct attenuation: spleen, right kidney, liver, aorta.
_ORGANS = ((1, 10.0), (2, 150.0), (6, 80.0), (8, 230.0))


def make_phantom(
    shape: tuple[int, int, int] = (32, 32, 32), seed: int = 0, noise_hu: float = 12.0
) -> tuple[np.ndarray, np.ndarray]:
    """One phantom on a [H, W, D] grid.

    Returns:
        (hu, labels): float32 HU [H, W, D] (air -1000, fat -100 body, organs at CT-like HU with
        Gaussian noise) and uint8 BTCV labels [H, W, D].
    """
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    hu = np.full(shape, -1000.0, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint8)
    body = _ellipsoid(grid, np.zeros(3), np.array([0.9, 0.75, 0.95]))
    hu[body] = -100.0
    for label, value in _ORGANS:
        centre = rng.uniform(-0.4, 0.4, 3)
        radii = rng.uniform(0.15, 0.35, 3)
        organ = _ellipsoid(grid, centre, radii) & body
        hu[organ] = value
        labels[organ] = label
    hu = gaussian_filter(hu, 0.7) + rng.normal(0.0, noise_hu, shape).astype(np.float32)
    return hu.astype(np.float32), labels


def _ellipsoid(grid: np.ndarray, centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    return (((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0) <= 1.0


def window(hu: np.ndarray, a_min: float = -175.0, a_max: float = 250.0) -> np.ndarray:
    """The paper's CT window: HU in [a_min, a_max] mapped linearly to [0, 1], clipped."""
    return np.clip((hu - a_min) / (a_max - a_min), 0.0, 1.0).astype(np.float32)


def phantom_batch(
    n: int, shape: tuple[int, int, int] = (32, 32, 32), seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` windowed phantoms as tensors: images [n, 1, H, W, D] in [0, 1], labels [n, 1, H, W, D]."""
    pairs = [make_phantom(shape, seed + i) for i in range(n)]
    images = torch.from_numpy(np.stack([window(h) for h, _ in pairs]))[:, None]
    labels = torch.from_numpy(np.stack([lab for _, lab in pairs]).astype(np.int64))[:, None]
    return images, labels
