"""The one list of attacks. Every surface asks this module what attacks exist and what they take.

    from FreqAdvSegmentLib.attacks import registry
    registry.names()                              # ('vafa', 'pgd', ...)
    spec = registry.get("vafa")                   # its AttackSpec: params, presets, defaults
    attack = registry.build("vafa:public-code", model, {"q_max": 30}, roi_size=(96,) * 3)

Adding an attack: write its class and its ``SPEC`` (an :class:`~.spec.AttackSpec`) in one new file
under ``attacks/``, and add one ``register(...)`` line to :func:`_register_builtins`. A user's own
attack is registered the same way, at run time: ``registry.register(MY_SPEC)``. The realistic
CT corruptions of :mod:`FreqAdvSegmentLib.corruptions` are registered here too, after the attacks,
with ``adversarial=False`` (:func:`adversarial_names` / :func:`corruption_names` tell them apart).

A *method* is written ``name`` or ``name:preset`` (``vafa:public-code``) wherever one string has
to say both, e.g. a menu entry. A whole attack request, with its own parameters, is one string
too: ``name[:preset][,key=value...]`` (``vafa:public-code,q_max=30,steps=10``); this is what
``--method`` takes on the command line, and what the Slicer module and the web viewer send to the
engine (:func:`format_request` / :func:`parse_request`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .spec import AttackSpec, Param

_REGISTRY: dict[str, AttackSpec] = {}


def register(spec: AttackSpec, *, replace: bool = False) -> AttackSpec:
    """Add ``spec`` to the registry. Raises ValueError if its name is taken (unless ``replace``)
    or if one of its parameters shares a name, but not a type or unit, with another attack's:
    the command line has one flag per parameter name."""
    name = spec.name.lower()
    if name != spec.name or not name.replace("-", "").replace("_", "").isalnum() or ":" in name:
        raise ValueError(f"attack names are lower-case letters, digits, '-' or '_'; got {spec.name!r}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"an attack named {name!r} is registered already")
    for param in spec.params:
        other = shared_param(param.name, exclude=name)
        if other is not None and (other.kind, other.unit, other.display_scale) != (param.kind, param.unit, param.display_scale):
            raise ValueError(
                f"parameter {param.name!r} of {name!r} ({param.kind.__name__}, {param.unit}) clashes with "
                f"the one of the same name elsewhere ({other.kind.__name__}, {other.unit}); rename it"
            )
    _REGISTRY[name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove an attack (for tests and plug-ins that replace one)."""
    _REGISTRY.pop(name, None)


def names() -> tuple[str, ...]:
    """The registered attack names, in registration order."""
    return tuple(_REGISTRY)


def adversarial_names() -> tuple[str, ...]:
    """The registered adversarial attacks' names."""
    return tuple(n for n, s in _REGISTRY.items() if s.adversarial)


def corruption_names() -> tuple[str, ...]:
    """The registered realistic corruptions' names (``adversarial=False``)."""
    return tuple(n for n, s in _REGISTRY.items() if not s.adversarial)


def specs() -> tuple[AttackSpec, ...]:
    return tuple(_REGISTRY.values())


def get(name: str) -> AttackSpec:
    """The spec of attack ``name`` (case-insensitive); ValueError listing the choices."""
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        raise ValueError(f"unknown attack {name!r}; choose one of {', '.join(_REGISTRY)}") from None


def split_method(method: str) -> tuple[AttackSpec, str | None]:
    """``"vafa:public-code"`` -> (VAFA's spec, "public-code"); ``"pgd"`` -> (PGD's spec, None).
    The preset is checked."""
    name, _, preset = method.partition(":")
    spec = get(name.strip())
    preset = preset.strip() or None
    if preset is not None:
        spec.preset(preset)
    return spec, preset


def methods() -> tuple[str, ...]:
    """Every ``name`` and ``name:preset`` a menu can offer."""
    return tuple(m for s in specs() for m in (s.name, *(f"{s.name}:{p.name}" for p in s.presets)))


def resolve(method: str, params: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """(attack name, full constructor keywords) for ``method`` with ``params`` on top."""
    spec, preset = split_method(method)
    return spec.name, spec.resolve(preset, **dict(params or {}))


def build(method: str, model: Any, params: Mapping[str, Any] | None = None, **run_options: Any):
    """The attack object for ``method`` (``name`` or ``name:preset``) and ``params``."""
    spec, preset = split_method(method)
    return spec.build(model, preset, params, **run_options)


def parse_request(text: str) -> tuple[AttackSpec, str | None, dict[str, Any]]:
    """``"vafa:public-code,q_max=30"`` -> (VAFA's spec, "public-code", {"q_max": 30.0}).

    Values are parsed and checked by the attack's own parameters; ValueError names what is wrong."""
    head, *pairs = [part.strip() for part in text.split(",")]
    spec, preset = split_method(head)
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{text!r}: expected key=value after the method, got {pair!r} (e.g. pgd,eps=4/255)")
        key = key.strip().replace("-", "_")
        params[key] = spec.param(key).parse(value)
    return spec, preset, params


def format_request(name: str, preset: str | None = None, params: Mapping[str, Any] | None = None) -> str:
    """The inverse of :func:`parse_request`: exact text for an attack request."""
    spec = get(name)
    head = spec.name if preset is None else f"{spec.name}:{spec.preset(preset).name}"
    pairs = [f"{k}={spec.param(k).to_text(v)}" for k, v in (params or {}).items()]
    return ",".join([head, *pairs])


def shared_param(name: str, exclude: str | None = None) -> Param | None:
    """The first registered attack parameter called ``name`` (all of them agree in kind/unit)."""
    for spec in _REGISTRY.values():
        if spec.name == exclude:
            continue
        for param in spec.params:
            if param.name == name:
                return param
    return None


def all_params() -> dict[str, Param]:
    """Every parameter name any attack takes, once, in first-seen order."""
    found: dict[str, Param] = {}
    for spec in _REGISTRY.values():
        for param in spec.params:
            found.setdefault(param.name, param)
    return found


def takers(name: str) -> tuple[AttackSpec, ...]:
    """The attacks that take parameter ``name``."""
    return tuple(s for s in _REGISTRY.values() if name in s.param_names)


def _register_builtins() -> None:
    # One line per attack: the only place an attack is listed.
    from . import apgd, cospgd, ensemble, sa2, segpgd, vafa, voxel

    register(vafa.SPEC)
    register(voxel.PGD_SPEC)
    register(voxel.FGSM_SPEC)
    register(voxel.BIM_SPEC)
    register(voxel.CW_SPEC)
    register(voxel.GN_SPEC)
    register(sa2.SPEC)
    register(segpgd.SPEC)
    register(cospgd.SPEC)
    register(apgd.SPEC)
    register(ensemble.SPEC)
    # Realistic CT corruptions (not adversarial), listed after the attacks: one file each.
    from ..corruptions import blur, dose, kernel, motion, noise, offset, ring, thickness

    register(dose.SPEC)
    register(kernel.SPEC)
    register(thickness.SPEC)
    register(motion.SPEC)
    register(ring.SPEC)
    register(noise.SPEC)
    register(blur.SPEC)
    register(offset.SPEC)


_register_builtins()
