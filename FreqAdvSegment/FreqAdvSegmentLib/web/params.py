"""The attack form, derived from the attack registry: fields, defaults, bounds, units, presets.

Nothing about an attack is written here: every field is a :class:`~..attacks.spec.Param` of a
registered :class:`~..attacks.spec.AttackSpec`, its default is the spec's (read from the attack's
constructor), its presets are the spec's. An attack registered with one ``registry.register``
line before the page is built shows up in the form with its fields and presets.

Intensities (eps, alpha, std) are shown and typed on the paper's 0-255 scale (the parameter's
``display_scale``); the engine gets them on its [0, 1] scale. A field left at the value its
preset gives sends nothing: the request then carries exactly the preset's (or default's) value,
with no round trip through a decimal text (2.55/255 is not exactly 0.01).

The page's state keys, one per field: ``fa_p__<attack>__<param>``; one per attack for its preset:
``fa_preset__<attack>`` ("" = the defaults). What the form sends the engine is one request text
per chosen attack, ``name[:preset][,key=value...]`` (``registry.format_request``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..attacks import registry
from ..attacks.spec import AttackSpec, Param
from ..finite import parse_number

DEVICES = ("auto", "cpu", "cuda")
DEFAULTS = ""  # the preset choice meaning "the attack's defaults"


@dataclass(frozen=True)
class FormField:
    """One field of the form: an attack's parameter as the page shows it.

    Attributes:
        attack: the attack's registry name.
        param: the registry's parameter (kind, bounds, help, unit, display scale).
        key: the trame state variable bound to the field.
        label: what the field is called on the page, with its display unit (``eps (/255)``).
        choices: for text parameters with a fixed set, the texts a menu offers.
    """

    attack: str
    param: Param
    key: str
    label: str
    choices: tuple[str, ...] | None

    @property
    def hint(self) -> str:
        return self.param.help

    @property
    def bounds(self) -> tuple[float | None, float | None]:
        """Bounds in display units (what the user types)."""
        scale = self.param.display_scale
        low, high = self.param.minimum, self.param.maximum
        return (None if low is None else low * scale, None if high is None else high * scale)


def state_key(attack: str, param: str) -> str:
    """The state variable of ``attack``'s parameter ``param``."""
    return f"fa_p__{attack.replace('-', '_')}__{param}"


def preset_key(attack: str) -> str:
    """The state variable holding ``attack``'s chosen preset ("" = defaults)."""
    return f"fa_preset__{attack.replace('-', '_')}"


def attack_fields(spec: AttackSpec) -> list[FormField]:
    """The form fields of one attack, in the spec's order."""
    fields = []
    for param in spec.params:
        unit = f" (/{param.display_scale:g})" if param.display_scale != 1 else ""
        choices = tuple(_text(c) for c in param.choices) if param.choices else None
        fields.append(FormField(spec.name, param, state_key(spec.name, param.name), param.name.replace("_", " ") + unit,
                                choices))
    return fields


def all_fields() -> list[FormField]:
    """Every field of every registered attack."""
    return [f for spec in registry.specs() for f in attack_fields(spec)]


def attack_items() -> list[dict[str, Any]]:
    """The attack toggles: one per registered attack, with its presets for the preset menu."""
    return [{"value": s.name, "title": s.title, "summary": s.summary,
             "presets": [{"value": DEFAULTS, "title": "defaults"}]
             + [{"value": p.name, "title": p.name, "props": {"subtitle": p.description}} for p in s.presets]}
            for s in registry.specs()]


def shown_values(attack: str, preset: str | None = None) -> dict[str, Any]:
    """The field texts (display units) of ``attack`` under ``preset`` (None/"" = defaults)."""
    spec = registry.get(attack)
    resolved = spec.resolve(preset or None)
    return {f.key: display_text(f.param, resolved[f.param.name]) for f in attack_fields(spec)}


def default_values() -> dict[str, Any]:
    """Every field's default text and every attack's preset choice ("" = defaults), by state key."""
    values: dict[str, Any] = {}
    for spec in registry.specs():
        values[preset_key(spec.name)] = DEFAULTS
        values.update(shown_values(spec.name))
    return values


def display_text(param: Param, value: Any) -> Any:
    """``value`` (engine units) as the form shows it: text for numbers and None, as-is otherwise."""
    if value is None:
        return "none"
    if isinstance(value, bool) or isinstance(value, str):
        return value
    return f"{value * param.display_scale:.6g}"


def form_overrides(attack: str, preset: str | None, values: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of ``attack`` that the form changed from its ``preset``, in engine units.

    Raises ValueError naming the field (as the page labels it) that is empty, not a number or
    out of its bounds, in the units the user typed."""
    spec = registry.get(attack)
    preset = preset or None
    unchanged = shown_values(attack, preset)
    overrides: dict[str, Any] = {}
    for field in attack_fields(spec):
        raw = values.get(field.key, unchanged[field.key])
        if _same(raw, unchanged[field.key]):
            continue  # the preset's own value, exactly (no decimal round trip)
        overrides[field.param.name] = parse_field(field, raw)
    return overrides


def parse_field(field: FormField, raw: Any) -> Any:
    """One field's text as an engine value; ValueError in the page's words."""
    param, text = field.param, "" if raw is None else str(raw).strip()
    prefix = f"{spec_title(field.attack)} {field.label}"
    if param.kind in (int, float) and not (param.optional and text.lower() in ("", "none")):
        try:
            shown = parse_number(text, prefix)
        except ValueError:
            raise ValueError(f"{prefix}: enter a number, not {text!r}") from None
        low, high = field.bounds
        if (low is not None and shown < low) or (high is not None and shown > high):
            raise ValueError(f"{prefix} must be between {_bound(low)} and {_bound(high)}, not {shown:g}")
        if param.kind is int and shown != int(shown):
            raise ValueError(f"{prefix}: enter a whole number, not {text}")
        text = repr(shown / param.display_scale) if param.display_scale != 1 else text
    try:
        return param.parse(text)
    except ValueError as err:
        raise ValueError(f"{prefix}: {err}") from None


def attack_request(attack: str, preset: str | None, values: Mapping[str, Any]) -> str:
    """The request text (``name[:preset][,key=value...]``) the form says for one attack."""
    preset = preset or None
    return registry.format_request(attack, preset, form_overrides(attack, preset, values))


def form_requests(chosen: Iterable[str], values: Mapping[str, Any]) -> list[str]:
    """One request text per chosen attack (in the registry's order), from the page's state.

    Raises ValueError when none is chosen, or an attack or preset is unknown."""
    chosen = list(dict.fromkeys(str(c).lower() for c in chosen or ()))
    if not chosen:
        raise ValueError("choose at least one attack (the buttons under 'attacks')")
    for name in chosen:
        registry.get(name)  # unknown names: ValueError listing the choices
    ordered = [s.name for s in registry.specs() if s.name in chosen]
    return [attack_request(name, values.get(preset_key(name)) or None, values) for name in ordered]


def resolve_request(text: str) -> tuple[str, dict[str, Any]]:
    """(attack name, full constructor keywords) of a request text, as the engine will build it."""
    spec, preset, params = registry.parse_request(text)
    return spec.name, spec.resolve(preset, **params)


def request_title(text: str) -> str:
    """'VAFA (public-code), q max 30' style name of a request, for people."""
    spec, preset, params = registry.parse_request(text)
    parts = [spec.title + (f" ({preset})" if preset else "")]
    parts += [f"{k.replace('_', ' ')} {display_text(spec.param(k), v)}" for k, v in params.items()]
    return ", ".join(parts)


def spec_title(attack: str) -> str:
    return registry.get(attack).title


def model_items(models: Any = None) -> list[dict[str, Any]]:
    """Registry models for the model picker; those without local weights are listed disabled,
    with why, since the web viewer cannot download them (the user must, see `freqadv models`)."""
    from ..models.registry import list_models, resolve_model

    items = []
    for entry in list_models(models):
        try:
            resolve_model(entry["name"], registry=models)
            available, note = True, ""
        except (FileNotFoundError, ValueError):
            available, note = False, " (weights not installed)"
        items.append({"title": entry["name"] + note, "value": entry["name"], "props": {"disabled": not available}})
    return items


def _same(raw: Any, shown: Any) -> bool:
    if isinstance(raw, str) and isinstance(shown, str):
        return raw.strip().lower() == shown.strip().lower()
    return raw == shown


def _text(choice: Any) -> str:
    return "none" if choice is None else str(choice)


def _bound(value: float | None) -> str:
    return "any" if value is None else f"{value:g}"
