"""--label-map: ground-truth label values -> the model's label values.

Datasets and models number organs differently (BTCV's 1 = spleen, TotalSegmentator's 1 = spleen
but 2 = right kidney, ...). A label map says which ground-truth value is which model value; values
it does not list become 0 (background), since a ground truth usually has organs the model lacks.

    parse_label_map("6:1,2:3")                # text: GT:MODEL pairs
    parse_label_map("map.json")               # {"6": 1, "2": 3}
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..finite import require_whole


def parse_label_map(text: str) -> dict[int, int]:
    """{ground-truth value: model value} from "GT:MODEL,..." or a JSON file; ValueError if bad."""
    path = Path(text)
    if path.suffix == ".json" or path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"could not read the label map {path}: {error}") from None
        if not isinstance(data, dict):
            raise ValueError(f"label map {path} must be a JSON object {{\"GT value\": model value}}")
        pairs = list(data.items())
    else:
        pairs = [item.split(":", 1) if ":" in item else (item, None) for item in text.split(",") if item.strip()]
    try:  # whole finite numbers only: 1.5 is not truncated, 1e400 (inf in JSON) is refused
        mapping = {require_whole(k): require_whole(v) for k, v in pairs}
    except (TypeError, ValueError):
        raise ValueError(f"label map {text!r} must be GT:MODEL pairs of integers, e.g. 6:1,2:3 (or a JSON file)") from None
    if not mapping or min([*mapping, *mapping.values()]) < 0 or max(mapping.values()) > 65535:
        raise ValueError(f"label map {text!r} must hold at least one pair of label values from 0 to 65535")
    return mapping


def apply_label_map(labels: sitk.Image, mapping: dict[int, int]) -> sitk.Image:
    """A new label image with values mapped (unlisted values -> 0); the input is not modified."""
    array = sitk.GetArrayFromImage(labels)
    out = np.zeros(array.shape, dtype=np.uint8 if max(mapping.values()) <= 255 else np.uint16)
    for source, target in mapping.items():
        out[array == source] = target
    image = sitk.GetImageFromArray(out)
    image.CopyInformation(labels)
    return image
