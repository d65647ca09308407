"""Command-line options derived from the attack registry (``freqadv attack`` and ``freqadv train``).

Every registered parameter gets one flag (``q_max`` -> ``--q-max``) that applies to every chosen
attack taking it; the help text, units and per-attack defaults are read from the specs when the
parser is built, so an attack registered before ``build_parser()`` shows up with its flags.

Flags are added with ``default=argparse.SUPPRESS``: only the flags given on the command line
appear in the namespace, so "not given" and "given as none" (``--q-init none``) differ.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from . import registry
from .spec import AttackSpec, Param


def method_listing(specs: Iterable[AttackSpec] | None = None, indent: int = 2) -> str:
    """One line per attack and per preset: ``vafa`` / ``vafa:public-code`` and its description."""
    rows: list[tuple[str, str]] = []
    for spec in specs if specs is not None else registry.specs():
        rows.append((spec.name, f"{spec.title}: {spec.summary}"))
        rows += [(f"{spec.name}:{p.name}", p.description) for p in spec.presets]
    width = max((len(name) for name, _ in rows), default=0) + 2
    pad = " " * indent
    return "\n".join(f"{pad}{name:<{width}s}{text}" for name, text in rows)


def shown(param: Param, value: Any) -> str:
    """A default as people type it: intensities as fractions of 255 (``4/255``)."""
    if value is None or isinstance(value, (bool, str)):
        return param.to_text(value)
    if param.display_scale == 255:
        return f"{value * 255:g}/255"
    return f"{value:g}"


def param_help(name: str, specs: Iterable[AttackSpec], training: bool = False) -> str:
    """The flag's help: the takers' shared text, its unit or choices, and each taker's default
    (with ``training``: the value under the attack's training preset)."""
    takers = [s for s in specs if name in s.param_names]
    param = takers[0].param(name)
    texts = [s.param(name).help for s in takers]
    text = max(texts, key=texts.count)  # the shared wording, not one attack's own (steps: "Adam steps")
    start = (lambda s: s.resolve(s.training_preset)) if training else (lambda s: s.defaults())
    defaults = ", ".join(f"{s.name} {shown(param, start(s)[name])}" for s in takers)
    if param.choices is not None:
        kind = "one of " + "/".join("none" if c is None else str(c) for c in param.choices)
    else:
        kind = param.unit or param.kind.__name__
    return f"{text} [{kind}; default: {defaults}]".replace("%", "%%")


def add_param_flags(
    parser: argparse.ArgumentParser,
    group: argparse._ActionsContainer,
    specs: Iterable[AttackSpec] | None = None,
    training: bool = False,
) -> dict[str, str]:
    """Add one flag per parameter of ``specs`` (default: every registered attack) to ``group``
    of ``parser``.

    A parameter whose flag the parser already has (``--lr`` of the trainer's optimiser) gets
    ``--attack-NAME`` (and its own dest) instead. Returns {parameter name: dest}, also kept in
    the namespace as ``_attack_dests`` for :func:`given_params`. Values stay text after a syntax
    check; each attack parses them with its own bounds (:func:`params_for`)."""
    specs = tuple(specs if specs is not None else registry.specs())
    dests: dict[str, str] = {}
    for spec in specs:
        for param in spec.params:
            if param.name in dests:
                continue
            metavar = "{" + ",".join("none" if c is None else str(c) for c in param.choices) + "}" if param.choices else param.name.upper()
            options = dict(type=_syntax_check(param), default=argparse.SUPPRESS, metavar=metavar,
                           help=param_help(param.name, specs, training))
            taken = {a.dest for a in parser._actions}
            if param.flag in parser._option_string_actions or param.name in taken:
                dests[param.name] = "attack_" + param.name  # the flag means something else to this command
                group.add_argument("--attack-" + param.flag[2:], dest=dests[param.name], **options)
            else:
                dests[param.name] = param.name
                group.add_argument(param.flag, dest=param.name, **options)
    parser.set_defaults(_attack_dests=dests)
    return dests


def given_params(args: argparse.Namespace) -> dict[str, str]:
    """The parameter flags present on the command line, by parameter name: ``{"q_max": "30"}``."""
    values = vars(args)
    dests = values.get("_attack_dests") or {name: name for name in registry.all_params()}
    return {name: values[dest] for name, dest in dests.items() if dest in values}


def typed_value(name: str, text: Any) -> Any:
    """A flag's text as the registered parameter ``name``'s kind (bounds are checked later, by
    the attack that takes it)."""
    param = registry.shared_param(name)
    if param is None:
        raise ValueError(f"no attack takes a parameter {name!r}")
    return dataclasses.replace(param, minimum=None, maximum=None).parse(text)


def params_for(spec: AttackSpec, given: Mapping[str, Any]) -> dict[str, Any]:
    """The ``given`` values ``spec`` takes, parsed and checked by its own parameters."""
    params = {}
    for name, value in given.items():
        if name in spec.param_names:
            try:
                params[name] = spec.param(name).parse(value)
            except ValueError as err:
                raise ValueError(f"{spec.param(name).flag} for {spec.name}: {err}") from None
    return params


def check_all_taken(given: Mapping[str, Any], specs: Iterable[AttackSpec]) -> None:
    """ValueError for a flag none of the chosen attacks takes (it would be silently ignored)."""
    specs = tuple(specs)
    chosen = ", ".join(s.name for s in specs) or "none"
    for name in given:
        if not any(name in s.param_names for s in specs):
            flag = "--" + name.replace("_", "-")
            takers = ", ".join(s.name for s in registry.takers(name)) or "no attack"
            raise ValueError(f"{flag} is a parameter of {takers}; none of the chosen attacks ({chosen}) takes it: "
                             "drop it or choose an attack that takes it")


def preset_for(spec: AttackSpec, global_preset: str | None) -> str | None:
    """``global_preset`` if ``spec`` has a preset of that name, else None."""
    if global_preset is None:
        return None
    return global_preset if global_preset in {p.name for p in spec.presets} else None


def check_preset_used(global_preset: str | None, specs: Iterable[AttackSpec]) -> None:
    """ValueError for a --preset that none of the chosen attacks has."""
    specs = tuple(specs)
    if global_preset is not None and not any(preset_for(s, global_preset) for s in specs):
        having = ", ".join(s.name for s in registry.specs() if preset_for(s, global_preset)) or "no attack"
        raise ValueError(f"--preset {global_preset} is a preset of {having}, not of the chosen attack(s) "
                         f"({', '.join(s.name for s in specs) or 'none'})")


def preset_names(specs: Iterable[AttackSpec] | None = None) -> list[str]:
    """Every preset name, once, in first-seen order (the choices of ``--preset``)."""
    found: list[str] = []
    for spec in specs if specs is not None else registry.specs():
        found += [p.name for p in spec.presets if p.name not in found]
    return found


def chosen_preset(args: argparse.Namespace) -> str | None:
    """``--preset NAME``, with ``--public-code`` as its alias; ValueError if both disagree."""
    preset = getattr(args, "preset", None)
    if getattr(args, "public_code", False):
        if preset not in (None, "public-code"):
            raise ValueError(f"--public-code means --preset public-code; it cannot be combined with --preset {preset}")
        preset = "public-code"
    return preset


def request_text(text: str) -> str:
    """argparse type of ``--method``: the request text, checked against the registry now."""
    try:
        registry.parse_request(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _syntax_check(param: Param):
    """A flag's type: checks the text's form (number, fraction, true/false) but not the bounds,
    which belong to each attack; returns the text."""
    loose = dataclasses.replace(param, minimum=None, maximum=None, choices=None, optional=True)

    def check(text: str) -> str:
        if param.kind is str:
            return text
        try:
            loose.parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return text

    check.__name__ = param.kind.__name__  # argparse names the type in its messages
    return check
