"""``--scene`` of ``attack`` and ``demo``: a 3D Slicer scene (.mrb) beside the results."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def write_scene_if_asked(args: argparse.Namespace, out: Path, image: Any, labels: Any) -> None:
    """With ``--scene``: write OUT/scene.mrb with the MRML bridge and print where it is."""
    if not args.scene:
        return
    try:
        from ..mrml.results import write_scene  # slicer-core: an optional extra, needed only here
    except ImportError as err:
        raise ValueError(f"--scene needs slicer-core (pip install 'freqadvsegment[slicer]'): {err}") from err
    print(f"scene: {write_scene(out, image, labels)}")
