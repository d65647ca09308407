#!/usr/bin/env python
"""Rewrite the file lists of FreqAdvSegment/CMakeLists.txt from the source tree.

Slicer installs only the scripts and resources that CMakeLists.txt lists, so every new
FreqAdvSegmentLib module or resource must be added there; Testing/slicer/test_extension_files.py fails
until it is. This script does it:

    python scripts/update_slicer_cmake.py          # rewrite the lists
    python scripts/update_slicer_cmake.py --check  # exit 1 if they are out of date

Shipped model weights named in Models.json are listed even before they exist, so a checkout
without them fails the "listed files exist" test instead of silently shipping no model.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

MODULE = Path(__file__).resolve().parent.parent / "FreqAdvSegment"
CMAKE = MODULE / "CMakeLists.txt"
SKIP = {"__pycache__", "freqadvsegment.egg-info"}
MODULE_RESOURCES = ("Resources",)


def _files(folder: Path, pattern: str) -> list[str]:
    found = []
    for path in folder.rglob(pattern):
        relative = path.relative_to(MODULE)
        if path.is_file() and not SKIP & set(relative.parts):
            found.append(relative.as_posix())
    return found


def scripts() -> list[str]:
    return ["FreqAdvSegment.py"] + sorted(_files(MODULE / "FreqAdvSegmentLib", "*.py"))


def resources() -> list[str]:
    module = sorted(_files(MODULE / "Resources", "*"))
    lib = set(_files(MODULE / "FreqAdvSegmentLib" / "resources", "*"))
    registry = json.loads((MODULE / "FreqAdvSegmentLib" / "resources" / "Models.json").read_text(encoding="utf-8"))
    lib |= {f"FreqAdvSegmentLib/resources/{entry['file']}" for entry in registry if "file" in entry}
    return module + sorted(f for f in lib if not f.endswith(".py"))


def _block(items: list[str]) -> str:
    return "".join(f"  {item.replace('FreqAdvSegment', '${MODULE_NAME}', 1)}\n" for item in items)


def updated(text: str) -> str:
    for variable, items in (("MODULE_PYTHON_SCRIPTS", scripts()), ("MODULE_PYTHON_RESOURCES", resources())):
        text = re.sub(rf"(set\({variable}\n).*?(  \))", lambda m: m.group(1) + _block(items) + m.group(2), text, count=1, flags=re.S)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report whether the lists are current")
    args = parser.parse_args()
    current = CMAKE.read_text(encoding="utf-8")
    new = updated(current)
    if args.check:
        print("FreqAdvSegment/CMakeLists.txt is current" if new == current else "FreqAdvSegment/CMakeLists.txt is out of date")
        return int(new != current)
    CMAKE.write_text(new, encoding="utf-8")
    print(f"updated {CMAKE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
