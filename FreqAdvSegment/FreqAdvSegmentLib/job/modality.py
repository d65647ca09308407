"""Does this image look like a CT in Hounsfield units? A CT model on an MR (or on a CT stored
without its rescale slope/intercept) runs without error and returns nonsense, so say so first.

A body CT in HU always holds air: outside the body and in the lungs and bowel, at about -1000 HU.
An MR, a PET or raw CT detector values are (nearly) never below -500. A sample of the voxels is
enough to tell.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..models.spec import ModelSpec

_SAMPLE = 1 << 20  # voxels looked at, at most
_AIR_HU = -500.0
_MIN_AIR_FRACTION = 0.001
_MAX_PLAUSIBLE_HU = 32767.0


def ct_warning(image: sitk.Image, spec: ModelSpec) -> str | None:
    """A one-line warning if ``spec`` expects CT in HU and ``image`` does not look like one.

    Args:
        image: the input volume as read (any pixel type).
        spec: the model's spec; only an intensity window reaching below 0 HU marks a CT model.
    """
    if spec.intensity_window[0] >= 0:
        return None  # not a HU-windowed model: nothing to check against
    values = _sample(image)
    if values.size == 0:
        return None
    low, high = float(values.min()), float(values.max())
    air = float(np.mean(values < _AIR_HU))
    if air >= _MIN_AIR_FRACTION and high <= _MAX_PLAUSIBLE_HU:
        return None
    return (
        f"the image does not look like a CT in Hounsfield units (values {low:g} to {high:g}, "
        f"{100 * air:.2f}% below {_AIR_HU:g} HU where a body CT has air); the model expects CT "
        f"in HU (window {spec.intensity_window[0]:g} to {spec.intensity_window[1]:g}), so its "
        "results will likely be meaningless. Check the modality and the rescale slope/intercept"
    )


def _sample(image: sitk.Image) -> np.ndarray:
    view = sitk.GetArrayViewFromImage(image).reshape(-1)
    step = max(1, view.size // _SAMPLE)
    return np.asarray(view[::step], dtype=np.float64)
