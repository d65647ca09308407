"""An uploaded label map must fit the CT on show: same grid, integer label values of the model.

The engine would otherwise resample or misread it silently (a label map of another scan, or a
probability map, gives Dice figures that mean nothing), so it is refused with what is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..organs import BTCV_LABELS
from ..mrml.volumes import image_from_volume_node

_TOLERANCE_MM = 1e-3


def check_labels(labels: sitk.Image, volume: Any, label_names: Sequence[str] = BTCV_LABELS) -> None:
    """ValueError unless ``labels`` is on ``volume``'s grid (a volume node) with values
    0..len(label_names)-1 (0 = background)."""
    ct = image_from_volume_node(volume)
    if labels.GetSize() != ct.GetSize():
        raise ValueError(f"the labels are {_grid(labels)} voxels but the CT is {_grid(ct)}; "
                         "upload the label map made on this CT")
    for what, a, b in (("spacing", labels.GetSpacing(), ct.GetSpacing()), ("origin", labels.GetOrigin(), ct.GetOrigin()),
                       ("direction", labels.GetDirection(), ct.GetDirection())):
        if not np.allclose(a, b, atol=_TOLERANCE_MM):
            raise ValueError(f"the labels' {what} {_round(a)} differs from the CT's {_round(b)}; "
                             "upload the label map made on this CT")
    values = sitk.GetArrayViewFromImage(labels)
    if values.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
        raise ValueError("the labels hold fractional values: upload a label map (whole numbers), not probabilities")
    low, high = int(values.min()), int(values.max())
    if low < 0 or high >= len(label_names):
        raise ValueError(f"the labels hold values {low}..{high}; the model's labels are 0..{len(label_names) - 1} "
                         f"(0 background, 1 {label_names[1]}, ...)")


def _grid(image: sitk.Image) -> str:
    return " x ".join(str(n) for n in image.GetSize())


def _round(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(round(float(v), 3) for v in values)
