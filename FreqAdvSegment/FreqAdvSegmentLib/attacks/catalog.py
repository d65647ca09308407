"""Attack descriptions by name, and the request grammar over them; readable without PyTorch.

Two sources hold the same kind of entries (:class:`~.spec.AttackSpec` or its code-free
:class:`~.spec.AttackInfo`, which answer ``param``, ``preset``, ``resolve`` alike):

- ``REGISTERED``: the attacks registered in this process. :mod:`.registry` fills it with the
  built-in attacks when it is imported (which imports PyTorch), and plug-ins add theirs there.
- :func:`shipped`: the built-in attacks as ``resources/attack_catalog.json`` describes them. The
  file is generated from the registry (``python -m FreqAdvSegmentLib.attacks.docs --catalog``)
  and a test checks it equals what the registry gives, so it cannot go stale.

:func:`current` is what a surface without PyTorch lists (the Slicer panel in Slicer's GUI
process): the live registry when this process has imported it (then plug-ins are included),
else the shipped file. This module imports only the standard library and :mod:`.spec`.

    attacks = current()
    attacks.names()                              # ('vafa', 'pgd', ...)
    attacks.get("vafa").resolve("public-code")   # constructor keywords, checked
    attacks.parse_request("pgd,eps=8/255")       # (PGD's description, None, {"eps": 0.031...})
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from .spec import AttackInfo, AttackSpec, Param, Preset, SameAs

CATALOG_JSON = Path(__file__).resolve().parent.parent / "resources" / "attack_catalog.json"
REGENERATE = "python -m FreqAdvSegmentLib.attacks.docs --catalog"
FORMAT = 1

Entry = Any  # AttackSpec or AttackInfo: both describe an attack and resolve its parameters
_KINDS = {"float": float, "int": int, "str": str, "bool": bool}


class Catalog:
    """Attacks by name, in the order they were added, and the request texts about them.

    A *method* is ``name`` or ``name:preset`` (``vafa:public-code``); a *request* adds the
    attack's own parameters: ``name[:preset][,key=value...]`` (``vafa:public-code,q_max=30``)."""

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self._entries: dict[str, Entry] = {}
        for entry in entries:
            self.add(entry)

    # --- the set ----------------------------------------------------------------------------

    def add(self, entry: Entry, *, replace: bool = False) -> Entry:
        """Add ``entry``. ValueError if its name is taken (unless ``replace``) or if one of its
        parameters shares a name, but not a kind or unit, with another attack's: the command
        line has one flag per parameter name."""
        name = entry.name.lower()
        if name != entry.name or not name.replace("-", "").replace("_", "").isalnum() or ":" in name:
            raise ValueError(f"attack names are lower-case letters, digits, '-' or '_'; got {entry.name!r}")
        if name in self._entries and not replace:
            raise ValueError(f"an attack named {name!r} is registered already")
        for param in entry.params:
            other = self.shared_param(param.name, exclude=name)
            if other is not None and (other.kind, other.unit, other.display_scale) != (param.kind, param.unit, param.display_scale):
                raise ValueError(
                    f"parameter {param.name!r} of {name!r} ({param.kind.__name__}, {param.unit}) clashes with "
                    f"the one of the same name elsewhere ({other.kind.__name__}, {other.unit}); rename it"
                )
        self._entries[name] = entry
        return entry

    def remove(self, name: str) -> None:
        """Remove an attack (for tests and plug-ins that replace one)."""
        self._entries.pop(name, None)

    def names(self) -> tuple[str, ...]:
        """The attack names, in the order they were added."""
        return tuple(self._entries)

    def adversarial_names(self) -> tuple[str, ...]:
        """The adversarial attacks' names (every entry but the realistic corruptions)."""
        return tuple(n for n, e in self._entries.items() if e.adversarial)

    def corruption_names(self) -> tuple[str, ...]:
        """The realistic CT corruptions' names (``adversarial`` False: dose, kernel, ...)."""
        return tuple(n for n, e in self._entries.items() if not e.adversarial)

    def specs(self) -> tuple[Entry, ...]:
        """Every attack's entry, in the order they were added."""
        return tuple(self._entries.values())

    def get(self, name: str) -> Entry:
        """Attack ``name`` (case-insensitive); ValueError listing the choices."""
        try:
            return self._entries[name.lower()]
        except KeyError:
            raise ValueError(f"unknown attack {name!r}; choose one of {', '.join(self._entries)}") from None

    # --- methods and requests -----------------------------------------------------------------

    def split_method(self, method: str) -> tuple[Entry, str | None]:
        """``"vafa:public-code"`` -> (VAFA's entry, "public-code"); ``"pgd"`` -> (PGD's, None).
        The preset is checked."""
        name, _, preset = method.partition(":")
        entry = self.get(name.strip())
        preset = preset.strip() or None
        if preset is not None:
            entry.preset(preset)
        return entry, preset

    def methods(self) -> tuple[str, ...]:
        """Every ``name`` and ``name:preset`` a menu can offer."""
        return tuple(m for s in self.specs() for m in (s.name, *(f"{s.name}:{p.name}" for p in s.presets)))

    def resolve(self, method: str, params: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """(attack name, full constructor keywords) for ``method`` with ``params`` on top."""
        entry, preset = self.split_method(method)
        return entry.name, entry.resolve(preset, **dict(params or {}))

    def build(self, method: str, model: Any, params: Mapping[str, Any] | None = None, **run_options: Any):
        """The attack object for ``method`` and ``params`` (registered attacks only: a shipped
        description has no code to build)."""
        spec, preset = self.split_method(method)
        if not isinstance(spec, AttackSpec):
            raise TypeError(f"{spec.name} is only described here; import FreqAdvSegmentLib.attacks.registry to build it")
        return spec.build(model, preset, params, **run_options)

    def parse_request(self, text: str) -> tuple[Entry, str | None, dict[str, Any]]:
        """``"vafa:public-code,q_max=30"`` -> (VAFA's entry, "public-code", {"q_max": 30.0}).

        Values are parsed and checked by the attack's own parameters; ValueError names what is wrong."""
        head, *pairs = [part.strip() for part in text.split(",")]
        entry, preset = self.split_method(head)
        params: dict[str, Any] = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"{text!r}: expected key=value after the method, got {pair!r} (e.g. pgd,eps=4/255)")
            key = key.strip().replace("-", "_")
            params[key] = entry.param(key).parse(value)
        return entry, preset, params

    def format_request(self, name: str, preset: str | None = None, params: Mapping[str, Any] | None = None) -> str:
        """The inverse of :meth:`parse_request`: exact text for an attack request."""
        entry = self.get(name)
        head = entry.name if preset is None else f"{entry.name}:{entry.preset(preset).name}"
        pairs = [f"{k}={entry.param(k).to_text(v)}" for k, v in (params or {}).items()]
        return ",".join([head, *pairs])

    # --- parameters across attacks -------------------------------------------------------------

    def shared_param(self, name: str, exclude: str | None = None) -> Param | None:
        """The first attack parameter called ``name`` (all of them agree in kind and unit)."""
        for entry in self._entries.values():
            if entry.name != exclude:
                for param in entry.params:
                    if param.name == name:
                        return param
        return None

    def all_params(self) -> dict[str, Param]:
        """Every parameter name any attack takes, once, in first-seen order."""
        found: dict[str, Param] = {}
        for entry in self._entries.values():
            for param in entry.params:
                found.setdefault(param.name, param)
        return found

    def takers(self, name: str) -> tuple[Entry, ...]:
        """The attacks that take parameter ``name``."""
        return tuple(s for s in self._entries.values() if name in s.param_names)


REGISTERED = Catalog()
"""The attacks registered in this process (filled by :mod:`.registry`, which imports PyTorch)."""


def current() -> Catalog:
    """The live registry where this process has imported it (plug-ins included), else the
    shipped catalog: what a surface that must not import PyTorch lists."""
    return REGISTERED if REGISTERED.names() else shipped()


@lru_cache(maxsize=None)
def shipped(path: Path = CATALOG_JSON) -> Catalog:
    """The built-in attacks as the catalog file describes them; ValueError naming the file if
    it cannot be read."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return Catalog(from_json(data))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"cannot read the attack catalog {path}: {error}; reinstall FreqAdvSegment "
                         f"or regenerate it with {REGENERATE}") from error


# --- the file format -------------------------------------------------------------------------


def to_json(entries: Iterable[Entry]) -> dict[str, Any]:
    """The catalog file's content for ``entries`` (specs or infos): plain JSON types only."""
    return {"format": FORMAT, "generated_by": REGENERATE, "attacks": [_attack_json(e.info() if isinstance(e, AttackSpec) else e) for e in entries]}


def from_json(data: Mapping[str, Any]) -> list[AttackInfo]:
    """The inverse of :func:`to_json` (ValueError for an unknown format)."""
    if data.get("format") != FORMAT:
        raise ValueError(f"format {data.get('format')!r}, this version reads format {FORMAT}")
    return [_attack_info(a) for a in data["attacks"]]


def dumps(entries: Iterable[Entry]) -> str:
    """The catalog file's text (stable: the same registry gives the same bytes)."""
    return json.dumps(to_json(entries), indent=1, ensure_ascii=False) + "\n"


def _attack_json(info: AttackInfo) -> dict[str, Any]:
    defaults = info.defaults()
    return {
        "name": info.name, "title": info.title, "summary": info.summary, "domain": info.domain,
        "strength": info.strength, "sweep": list(info.sweep), "trainable": info.trainable,
        "training_preset": info.training_preset, "adversarial": info.adversarial,
        "params": [_param_json(p, defaults[p.name]) for p in info.params],
        "presets": [{"name": p.name, "description": p.description,
                     "values": {k: _value_json(v) for k, v in p.values.items()}} for p in info.presets],
    }


def _param_json(param: Param, default: Any) -> dict[str, Any]:
    return {
        "name": param.name, "kind": param.kind.__name__, "help": param.help, "unit": param.unit,
        "minimum": param.minimum, "maximum": param.maximum,
        "choices": None if param.choices is None else list(param.choices),
        "optional": param.optional, "display_scale": param.display_scale, "default": _value_json(default),
    }


def _value_json(value: Any) -> Any:
    return {"same_as": value.name} if isinstance(value, SameAs) else value


def _value(value: Any) -> Any:
    return SameAs(value["same_as"]) if isinstance(value, dict) else value


def _attack_info(a: Mapping[str, Any]) -> AttackInfo:
    params = tuple(
        Param(p["name"], _KINDS[p["kind"]], p["help"], p["unit"], p["minimum"], p["maximum"],
              None if p["choices"] is None else tuple(p["choices"]), p["optional"], p["display_scale"])
        for p in a["params"]
    )
    presets = tuple(Preset(p["name"], p["description"], {k: _value(v) for k, v in p["values"].items()}) for p in a["presets"])
    return AttackInfo(
        a["name"], a["title"], a["summary"], params, presets, {p["name"]: _value(p["default"]) for p in a["params"]},
        a["domain"], a["strength"], tuple(a["sweep"]), a["trainable"], a["training_preset"], a.get("adversarial", True),
    )
