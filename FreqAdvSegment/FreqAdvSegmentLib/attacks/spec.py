"""How an attack describes itself: its parameters, their units and bounds, and its named presets.

Every attack file declares one :class:`AttackSpec` beside its class; :mod:`.registry` is the only
list of them. Every surface (the ``freqadv`` command line, the trainer, the Slicer panel, the web
form, the README's table) is derived from these descriptions, so a parameter's name, default,
unit and bounds are written exactly once.

Defaults are not repeated here: they are read from the attack class's constructor signature,
which is where a Python user sees them (``VAFA(model, q_max=20.0, ...)``).

    spec = registry.get("vafa")
    spec.resolve("public-code", q_max=30)   # full constructor keywords, checked
    spec.build(model, "public-code")        # the attack itself
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

# Units, as words people read. INTENSITY values are on the attacks' [0, 1] scale and are shown on
# the 0-255 scale the paper writes budgets in (eps 4 means 4/255), hence display_scale 255.
INTENSITY = "[0, 1] intensity"
JPEG = "JPEG quantisation step (0-255 units)"
STEPS = "steps"
VOXELS = "voxels"
WEIGHT = "weight"
RATIO = "ratio"


_HUGE_EXPONENT = re.compile(r"[eE][+-]?0*\d{4,}")  # past 1e999: far outside float's range

@dataclass(frozen=True)
class SameAs:
    """A preset value that copies another parameter's final value (e.g. q_init = q_max)."""

    name: str


@dataclass(frozen=True)
class Param:
    """One constructor keyword of an attack.

    Attributes:
        name: the keyword (``q_max``); the command line's flag is ``--q-max``.
        kind: ``float``, ``int``, ``str`` or ``bool``.
        help: one line for people: what it does, and the paper's value.
        unit: one of the unit words above (or any short text).
        minimum, maximum: inclusive bounds for numbers (None: unbounded).
        choices: allowed values for ``str`` parameters (None may be one of them).
        optional: None is allowed (it means what ``help`` says, e.g. "q_init None = q_min").
        display_scale: the factor from the engine's value to the one people type in the Slicer
            panel and the web form (255 for intensities, so eps 4/255 is shown as 4).
    """

    name: str
    kind: type
    help: str
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None
    optional: bool = False
    display_scale: float = 1.0

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, text: Any) -> Any:
        """A value from text (command line, web form) or a Python value, checked.

        Numbers accept fractions like ``4/255``; ``none`` gives None where that is allowed."""
        if isinstance(text, str):
            raw = text.strip()
            if raw.lower() in ("none", "") and (self.optional or (self.choices and None in self.choices)):
                return None
            value = self._from_text(raw)
        else:
            value = text
        return self.check(value)

    def check(self, value: Any) -> Any:
        """``value`` coerced to ``kind`` and checked; ValueError naming the parameter otherwise."""
        if value is None:
            if self.optional or (self.choices is not None and None in self.choices):
                return None
            raise ValueError(f"{self.name} needs a value")
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{self.name} must be true or false, got {value!r}")
        elif self.kind in (int, float):
            value = self._number(value)
        elif self.kind is str and not isinstance(value, str):
            raise ValueError(f"{self.name} must be text, got {value!r}")
        if self.choices is not None and value not in self.choices:
            shown = ", ".join("none" if c is None else str(c) for c in self.choices)
            raise ValueError(f"{self.name} must be one of {shown}, got {value!r}")
        return value

    def to_text(self, value: Any) -> str:
        """The command-line text for ``value`` (exact: floats use repr)."""
        if value is None:
            return "none"
        if isinstance(value, bool):
            return "true" if value else "false"
        return repr(float(value)) if self.kind is float else str(value)

    def _from_text(self, raw: str) -> Any:
        if self.kind is bool:
            lowered = raw.lower()
            if lowered in ("true", "yes", "on", "1"):
                return True
            if lowered in ("false", "no", "off", "0"):
                return False
            raise ValueError(f"{self.name} must be true or false, got {raw!r}")
        if self.kind in (int, float):
            # The rules of FreqAdvSegmentLib.finite.parse_number (attacks/ imports nothing outside
            # itself): a huge exponent is refused before Fraction builds a billion-digit integer,
            # and 1e309 (OverflowError in float()) is an error like nan and inf (refused by _number).
            if _HUGE_EXPONENT.search(raw):
                raise ValueError(f"{self.name} is out of range (a finite number is needed), got {raw!r}")
            try:
                return float(Fraction(raw))
            except (ValueError, ZeroDivisionError, OverflowError):
                raise ValueError(f"{self.name} must be a finite number (or a fraction like 4/255), got {raw!r}") from None
        return raw

    def _number(self, value: Any) -> float | int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:
                value = float(value)
            except (TypeError, ValueError, OverflowError):
                raise ValueError(f"{self.name} must be a number, got {value!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{self.name} must be a finite number, got {value}")
        if self.kind is int:
            if float(value) != int(value):
                raise ValueError(f"{self.name} must be a whole number, got {value}")
            value = int(value)
        else:
            value = float(value)
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{self.name} must be >= {self.minimum:g}, got {value:g}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"{self.name} must be <= {self.maximum:g}, got {value:g}")
        return value


@dataclass(frozen=True)
class Preset:
    """A named set of parameter values (a paper's setting, the public code's choices)."""

    name: str
    description: str
    values: Mapping[str, Any] = field(default_factory=dict)


class _Described:
    """Lookups and resolution shared by :class:`AttackSpec` (the attack itself) and
    :class:`AttackInfo` (its description, read without the attack's code); each supplies
    ``name``, ``params``, ``presets`` and :meth:`defaults`."""

    name: str
    params: tuple[Param, ...]
    presets: tuple[Preset, ...]

    # --- lookups ----------------------------------------------------------------------------

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise ValueError(f"{self.name} takes no parameter {name!r}; it takes {', '.join(self.param_names) or 'none'}")

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def preset(self, name: str) -> Preset:
        for p in self.presets:
            if p.name == name:
                return p
        choices = ", ".join(p.name for p in self.presets) or "none"
        raise ValueError(f"{self.name} has no preset {name!r}; its presets: {choices}")

    def defaults(self) -> dict[str, Any]:
        raise NotImplementedError

    # --- resolution -------------------------------------------------------------------------

    def resolve(self, preset: str | None = None, **overrides: Any) -> dict[str, Any]:
        """Every constructor keyword: the defaults, then ``preset``'s values, then ``overrides``.

        Values are checked and coerced (text is parsed, so a web form or a Slicer console can pass
        strings). A :class:`SameAs` in a preset is filled last, so ``resolve("public-code",
        q_max=30)`` starts the tables at 30. Raises ValueError naming a wrong parameter."""
        values: dict[str, Any] = self.defaults()
        if preset is not None:
            values.update(self.preset(preset).values)
        for key, value in overrides.items():
            values[key] = self.param(key).parse(value)
        for key, value in values.items():
            if isinstance(value, SameAs):
                values[key] = values[value.name]
        for key, value in values.items():
            values[key] = self.param(key).check(value)
        return values


@dataclass(frozen=True)
class AttackSpec(_Described):
    """Everything a surface needs to know about one attack.

    Attributes:
        name: the short name used everywhere (``vafa``, ``pgd``): ``--method vafa``.
        cls: the :class:`~.base.Attack` subclass; its constructor holds the defaults.
        title: the name people read (``VAFA``).
        summary: one line: what the attack does, and its paper.
        params: the attack's own constructor keywords (the run options roi_size, overlap,
            sw_batch_size, amp and seed are shared by all attacks and are not listed).
        presets: named settings; ``resolve(preset)`` applies them over the defaults.
        domain: ``frequency``, ``voxel``, ``noise``, ``ensemble`` or ``corruption``.
        strength: the parameter a robustness curve sweeps (``eps``, ``q_max``), if any.
        sweep: default values of ``strength`` for a curve, in engine units.
        trainable: usable as the attack of adversarial training.
        training_preset: the preset adversarial training starts from (the paper's AT setting).
        adversarial: False for a realistic corruption (reduced dose, another kernel, ...; see
            :mod:`FreqAdvSegmentLib.corruptions`): it runs like an attack but never uses the model.
    """

    name: str
    cls: type
    title: str
    summary: str
    params: tuple[Param, ...] = ()
    presets: tuple[Preset, ...] = ()
    domain: str = "voxel"
    strength: str | None = None
    sweep: tuple[float, ...] = ()
    trainable: bool = True
    training_preset: str | None = None
    adversarial: bool = True

    def __post_init__(self) -> None:
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"attack {self.name!r} lists a parameter twice: {names}")
        signature = inspect.signature(self.cls.__init__).parameters
        missing = [n for n in names if n not in signature]
        if missing:
            raise ValueError(f"attack {self.name!r}: {self.cls.__name__}.__init__ takes no {missing}")
        if self.strength is not None and self.strength not in names:
            raise ValueError(f"attack {self.name!r}: strength {self.strength!r} is not one of its parameters")
        for preset in self.presets:
            self._check_preset(preset)
        if self.training_preset is not None:
            self.preset(self.training_preset)

    def defaults(self) -> dict[str, Any]:
        """Each parameter's default, read from the class's constructor signature."""
        signature = inspect.signature(self.cls.__init__).parameters
        return {p.name: signature[p.name].default for p in self.params}

    def info(self) -> AttackInfo:
        """This attack's description without its class: what the catalog file holds."""
        return AttackInfo(
            self.name, self.title, self.summary, self.params, self.presets, self.defaults(),
            self.domain, self.strength, self.sweep, self.trainable, self.training_preset, self.adversarial,
        )

    def build(self, model: Any, preset: str | None = None, params: Mapping[str, Any] | None = None, **run_options: Any):
        """The attack object: ``cls(model, **resolve(preset, **params), **run_options)``."""
        return self.cls(model, **self.resolve(preset, **dict(params or {})), **run_options)

    def _check_preset(self, preset: Preset) -> None:
        for key, value in preset.values.items():
            self.param(key)
            if isinstance(value, SameAs):
                self.param(value.name)


@dataclass(frozen=True)
class AttackInfo(_Described):
    """An attack's description without its code: :class:`AttackSpec` less ``cls``, with the
    defaults written out (``default_values``) instead of read from the constructor.

    This is what the attack catalog (resources/attack_catalog.json) holds, so that the Slicer
    panel lists attacks, fields and presets without importing PyTorch (see :mod:`.catalog`).
    It resolves presets and checks values exactly as the attack's spec does."""

    name: str
    title: str
    summary: str
    params: tuple[Param, ...] = ()
    presets: tuple[Preset, ...] = ()
    default_values: Mapping[str, Any] = field(default_factory=dict)
    domain: str = "voxel"
    strength: str | None = None
    sweep: tuple[float, ...] = ()
    trainable: bool = True
    training_preset: str | None = None
    adversarial: bool = True

    def defaults(self) -> dict[str, Any]:
        """Each parameter's default (the attack class's constructor default)."""
        return {p.name: self.default_values[p.name] for p in self.params}
