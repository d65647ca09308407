"""The engine's progress as machine-readable lines, for the programs that run it.

People at a terminal get tqdm bars (``freqadv`` prints them). A program that runs the engine as a
child (the Slicer module and the web viewer, through ``mrml/engine_process.py``) sets
``FREQADV_PROGRESS=json`` in the child's environment; the engine then writes, instead of bars, one
JSON object per line on stderr for every step of every stage:

    {"event": "progress", "stage": "vafa", "step": 8, "total": 20, "fraction": 0.4}

``stage`` is "segment", an attack's label (``vafa``, ``pgd-2``) or "curve"; ``step`` of ``total``
steps are done. :func:`parse_progress` reads one such line back; every other line (warnings,
the summary, an error) is left to the reader to show as text. Writer and reader live here
together so the format is defined once. No torch: the Slicer GUI process imports this.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import TextIO

PROGRESS_ENV = "FREQADV_PROGRESS"
"""Environment variable; ``json`` asks the engine for JSON progress lines on stderr instead of bars."""
JSON = "json"
EVENT = "progress"


@dataclass(frozen=True)
class Progress:
    """Latest progress of one stage (segment, an attack's label, or curve)."""

    stage: str
    done: int
    total: int

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    def to_line(self) -> str:
        """The one-line JSON form (no newline)."""
        return json.dumps({"event": EVENT, "stage": self.stage, "step": self.done, "total": self.total,
                           "fraction": round(self.fraction, 6)})


def json_requested(environ: dict[str, str] | None = None) -> bool:
    """True when the engine's caller asked for JSON progress lines (``FREQADV_PROGRESS=json``)."""
    return (os.environ if environ is None else environ).get(PROGRESS_ENV, "").strip().lower() == JSON


class JsonProgress:
    """A StageProgress (``progress(stage, done, total)``) that writes one JSON line per call."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def __call__(self, stage: str, done: int, total: int) -> None:
        stream = self.stream or sys.stderr
        stream.write(Progress(stage, int(done), int(total)).to_line() + "\n")
        stream.flush()  # the reader shows it now, not when a buffer fills


def parse_progress(line: str) -> Progress | None:
    """The Progress of one engine progress line, or None for any other line."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("event") != EVENT:
        return None
    try:
        return Progress(str(data["stage"]), int(data["step"]), int(data["total"]))
    except (KeyError, TypeError, ValueError):
        return None
