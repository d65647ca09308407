"""Label maps: the BTCV / Synapse 13 abdominal organs (plus background) used by the paper.

Colours follow 3D Slicer's generic anatomy colour table where one exists, so that a
segmentation made here looks the same in Slicer, the HTML report and the web viewer.
"""

from __future__ import annotations

# Index = label value. Index 0 is background.
BTCV_LABELS: tuple[str, ...] = (
    "background",
    "spleen",
    "right kidney",
    "left kidney",
    "gallbladder",
    "esophagus",
    "liver",
    "stomach",
    "aorta",
    "inferior vena cava",
    "portal and splenic veins",
    "pancreas",
    "right adrenal gland",
    "left adrenal gland",
)

# RGB in 0..255, one per label above.
BTCV_COLORS: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),
    (157, 108, 162),
    (185, 102, 83),
    (185, 102, 83),
    (139, 150, 98),
    (211, 171, 143),
    (221, 130, 101),
    (216, 132, 105),
    (224, 97, 76),
    (0, 151, 206),
    (0, 112, 165),
    (249, 180, 111),
    (244, 208, 63),
    (244, 208, 63),
)
