"""The units of work of a study: one (case, model, condition[, source model]) cell each.

A study evaluates every model on every case, clean and under every attack; with transfer on, an
attack crafted on each *source* model is evaluated on every *target* model. Each cell is one
:class:`Unit` with a stable key; its result is one small JSON file in ``OUT/units/``, written
atomically, so a killed job resumes where it stopped and parts run anywhere are merged later.

Units are run in :class:`WorkGroup` s: the clean cell of (case, model), or every cell of one
(case, source model, attack) -- the attack is crafted once and evaluated on all its targets, so a
split never crafts twice. Parts (``--num-parts N --part-id k``) and torchrun ranks deal the groups
out round-robin (:func:`part_of`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..files.atomic_file import replace_text

CLEAN = "clean"
UNITS_DIR = "units"


@dataclass(frozen=True)
class Unit:
    """One cell: ``model`` evaluated on case ``case`` under ``condition`` ("clean" or an attack's
    label), the attack crafted on ``source`` (the model itself for white-box, None when clean)."""

    index: int  # position in the whole study's plan: merged tables list units in this order
    case: int
    case_name: str
    model: str
    condition: str
    source: str | None

    @property
    def key(self) -> str:
        """Stable text key, the same in every part and every rerun of the same study."""
        return f"{self.case_name}|{self.model}|{self.condition}|{self.source or ''}"

    @property
    def filename(self) -> str:
        # A hash, not the key: model names may be paths and case names may hold '/'.
        return hashlib.sha256(self.key.encode()).hexdigest()[:24] + ".json"


@dataclass(frozen=True)
class WorkGroup:
    """Units computed together: one clean job, or one attack crafted once on ``model`` (the source)."""

    case: int
    model: str
    attack: str | None  # None: the clean cell
    units: tuple[Unit, ...]


def plan_study(case_names: Sequence[str], models: Sequence[str], attacks: Sequence[str],
               transfer: bool) -> list[WorkGroup]:
    """Every group of a study in a fixed order (case, then model, then clean and each attack).

    Args:
        attacks: the attacks' (unique) labels.
        transfer: evaluate each attack crafted on each model on every model (else on itself only).
    """
    groups: list[WorkGroup] = []
    index = 0
    for case, name in enumerate(case_names):
        for source in models:
            groups.append(WorkGroup(case, source, None, (Unit(index, case, name, source, CLEAN, None),)))
            index += 1
            for attack in attacks:
                targets = models if transfer else [source]
                units = tuple(Unit(index + i, case, name, target, attack, source) for i, target in enumerate(targets))
                index += len(units)
                groups.append(WorkGroup(case, source, attack, units))
    return groups


def part_of(groups: Sequence[WorkGroup], num_parts: int, part_id: int) -> list[WorkGroup]:
    """The groups of part ``part_id`` of ``num_parts``, deterministic and balanced.

    The attack groups (the costly ones) are dealt round-robin, then the clean ones, so every part
    gets its share of each; a part runs its groups case by case (each case read and segmented once).
    """
    if num_parts < 1 or not 0 <= part_id < num_parts:
        raise ValueError(f"--part-id must be in 0..{num_parts - 1} for --num-parts {num_parts}, got {part_id}")
    dealt = [g for g in groups if g.attack is not None] + [g for g in groups if g.attack is None]
    mine = dealt[part_id::num_parts]
    return sorted(mine, key=lambda g: g.units[0].index)


def digest(value: Any) -> str:
    """sha256 of a JSON-able value (keys sorted), to tell whether two runs share their settings."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def file_digest(*paths: Path) -> str:
    """sha256 over the bytes of ``paths`` (a case's image and label): a changed file is noticed."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def write_unit(folder: Path, unit: Unit, row: dict[str, Any], study: dict[str, Any], inputs: str) -> Path:
    """``folder/units/<hash>.json``, atomically: the unit, its results.csv row, the study's
    settings (with their digest) and the digest of the case's files."""
    record = {"key": unit.key, "index": unit.index, "case": unit.case, "model": unit.model,
              "condition": unit.condition, "source": unit.source, "inputs": inputs,
              "settings_digest": study["digest"], "study": study, "row": row}
    (folder / UNITS_DIR).mkdir(parents=True, exist_ok=True)
    # allow_nan: a Dice of NaN (organ absent from both maps) must survive the round trip.
    return replace_text(folder / UNITS_DIR / unit.filename, json.dumps(record, indent=1))


def read_unit(folder: Path, unit: Unit) -> dict[str, Any] | None:
    """The unit's record in ``folder``, or None when it has not finished there."""
    path = folder / UNITS_DIR / unit.filename
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def read_units(folder: Path) -> list[dict[str, Any]]:
    """Every finished unit's record in ``folder/units`` (hidden temporary files are skipped)."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted((folder / UNITS_DIR).glob("[!.]*.json"))]
