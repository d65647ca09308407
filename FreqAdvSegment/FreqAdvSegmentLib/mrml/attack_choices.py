"""The Slicer panel's attack fields and the request texts they become, all read from the attack catalog.

Nothing about an attack is written here: its parameters, defaults, bounds, units and presets come
from its description in :mod:`FreqAdvSegmentLib.attacks.catalog`, so an attack registered with one
``registry.register(...)`` line shows up in the panel and the console API with no change here.

    fields = attack_fields("vafa")              # what the panel shows for VAFA (display units)
    choice = AttackChoices("vafa", "public-code", {"q_max": 30})
    choice.request()                            # 'vafa:public-code,q_max=30.0' (for --method)
    choice.resolved()                           # every constructor keyword, = registry.resolve

Display units: intensities (eps, alpha, std) are shown on the 0-255 scale the paper writes
budgets in (``Param.display_scale``); ``AttackChoices.values`` hold display units, request texts
and :meth:`AttackChoices.parameters` engine units.

No PyTorch and no MONAI here, nor in what this imports: the descriptions come from
``catalog.current()``, the shipped catalog file (resources/attack_catalog.json, generated from the
registry), or the live registry where this process has imported it (then a plug-in attack
registered at run time shows up too). So Slicer's GUI process lists every attack before PyTorch
is installed, and never loads (and locks) PyTorch's libraries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..attacks import catalog


def _attacks() -> catalog.Catalog:
    """The attack descriptions, read now (not at import: a plug-in may register later)."""
    return catalog.current()


def attack_methods() -> tuple[str, ...]:
    """The attack names, in registration order."""
    return _attacks().names()


def attack_description(name: str) -> Any:
    """Attack ``name``'s description: ``title``, ``summary``, ``params``, ``presets`` (each with
    ``name`` and ``description``); ValueError listing the choices for an unknown name."""
    return _attacks().get(name)


def attack_presets(name: str) -> tuple[str, ...]:
    """The preset names attack ``name`` offers (the panel's preset menu, after "defaults")."""
    return tuple(p.name for p in _attacks().get(name).presets)


@dataclass(frozen=True)
class PanelField:
    """One panel field for one attack parameter, in display units.

    ``kind`` is ``float``, ``int``, ``bool`` or ``choice``; ``default`` is the value the attack's
    constructor (or the chosen preset) gives, already multiplied by ``scale``."""

    name: str
    label: str
    kind: str
    help: str
    unit: str
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] = ()
    optional: bool = False
    scale: float = 1.0

    def to_display(self, engine_value: Any) -> Any:
        """Engine value -> what the panel shows (None stays None)."""
        if engine_value is None or self.kind not in ("float", "int") or self.scale == 1.0:
            return engine_value
        return float(engine_value) * self.scale

    def to_engine(self, shown: Any) -> Any:
        """What the panel holds -> engine value (ints stay ints)."""
        if shown is None or self.kind not in ("float", "int") or self.scale == 1.0:
            return shown
        return float(shown) / self.scale


def attack_fields(name: str, preset: str | None = None) -> list[PanelField]:
    """The panel's fields for attack ``name``: one per registry parameter, its default taken from
    ``registry.resolve(name[:preset])`` and its bounds scaled to display units."""
    spec = _attacks().get(name)
    resolved = spec.resolve(preset)
    fields = []
    for param in spec.params:
        scale = param.display_scale
        kind = "choice" if param.choices else ("bool" if param.kind is bool else param.kind.__name__)
        fields.append(PanelField(
            name=param.name, label=param.name.replace("_", " "), kind=kind, help=param.help,
            unit="/255" if scale == 255 else param.unit, default=None, optional=param.optional,
            minimum=None if param.minimum is None else param.minimum * scale,
            maximum=None if param.maximum is None else param.maximum * scale,
            choices=tuple(param.choices or ()), scale=scale,
        ))
        fields[-1] = _with_default(fields[-1], fields[-1].to_display(resolved[param.name]))
    return fields


def _with_default(f: PanelField, default: Any) -> PanelField:
    from dataclasses import replace

    return replace(f, default=default)


@dataclass
class AttackChoices:
    """One attack as the panel (or a console call) sets it up.

    Attributes:
        method: the attack's registry name (``vafa``); ``name:preset`` is split on creation.
        preset: one of its presets, or None for the constructor defaults (Algorithm 1 for VAFA).
        values: parameter values in display units (eps 4 means 4/255); only what was changed from
            the preset needs to be here, the rest comes from the preset or the defaults.
    """

    method: str
    preset: str | None = None
    values: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        spec, preset = _attacks().split_method(self.method)
        self.method, self.preset = spec.name, self.preset or preset
        if self.preset:
            spec.preset(self.preset)
        for key in self.values:
            spec.param(key)  # a clear error naming the parameter, now rather than in the engine

    def fields(self) -> list[PanelField]:
        return attack_fields(self.method, self.preset)

    def parameters(self) -> dict[str, Any]:
        """Engine-unit values that differ from what the preset gives (so a preset's SameAs, e.g.
        VAFA public-code's q_init = q_max, still follows q_max)."""
        spec = _attacks().get(self.method)
        base = spec.resolve(self.preset)
        changed = {}
        for f in self.fields():
            if f.name not in self.values:
                continue
            value = spec.param(f.name).parse(f.to_engine(self.values[f.name]))
            if not _same(value, base[f.name]):
                changed[f.name] = value
        return changed

    def resolved(self) -> dict[str, Any]:
        """Every constructor keyword, exactly as ``registry.resolve`` gives them."""
        return _attacks().resolve(self.method_text(), self.parameters())[1]

    def method_text(self) -> str:
        return self.method if self.preset is None else f"{self.method}:{self.preset}"

    def request(self) -> str:
        """The one text form of this attack (``name[:preset][,key=value...]``)."""
        return _attacks().format_request(self.method, self.preset, self.parameters())

    @classmethod
    def from_request(cls, text: str) -> AttackChoices:
        """The inverse of :meth:`request` (values converted to display units)."""
        spec, preset, params = _attacks().parse_request(text)
        fields = {f.name: f for f in attack_fields(spec.name, preset)}
        return cls(spec.name, preset, {k: fields[k].to_display(v) for k, v in params.items()})

    @classmethod
    def from_call(cls, method: str, params: Mapping[str, Any] | None = None) -> AttackChoices:
        """From a console call's engine-unit keywords: ``("vafa:public-code", {"q_max": 30})``."""
        spec, preset = _attacks().split_method(method)
        fields = {f.name: f for f in attack_fields(spec.name, preset)}
        values = {}
        for key, value in dict(params or {}).items():
            parsed = spec.param(key).parse(value)  # ValueError naming a wrong key or value
            values[key] = fields[key].to_display(parsed)
        return cls(spec.name, preset, values)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return abs(a - float(b)) <= 1e-12 * max(1.0, abs(a))
    return a == b


def request_labels(requests: Sequence[str]) -> list[str]:
    """The output label of each request, as the CLI names their folders: ``vafa``,
    ``vafa-public-code``, ``pgd``, ``pgd-2`` (a repeated label gets -2, -3, ...)."""
    labels, seen = [], {}
    for text in requests:
        head = text.split(",")[0].strip().lower()
        base = head.replace(":", "-")
        seen[base] = seen.get(base, 0) + 1
        labels.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return labels


def attack_arguments(requests: Sequence[str | AttackChoices]) -> list[str]:
    """CLI flags for the attacks of one run: ``--method <request>`` per attack, each checked by
    the registry first (an unknown attack or parameter fails here, with its name)."""
    if not requests:
        raise ValueError("choose at least one attack")
    args = []
    for request in requests:
        text = request.request() if isinstance(request, AttackChoices) else str(request)
        _attacks().parse_request(text)
        args += ["--method", text]
    return args


def split_requests(text: str) -> list[str]:
    """The panel's request list (one per line or separated by ';') -> request texts."""
    return [part.strip() for line in text.splitlines() for part in line.split(";") if part.strip()]


def join_requests(requests: Sequence[str]) -> str:
    return "; ".join(requests)
