"""The one list of attacks. Every surface asks this module what attacks exist and what they take.

    from FreqAdvSegmentLib.attacks import registry
    registry.names()                              # ('vafa', 'pgd', ...)
    spec = registry.get("vafa")                   # its AttackSpec: params, presets, defaults
    attack = registry.build("vafa:public-code", model, {"q_max": 30}, roi_size=(96,) * 3)

Adding an attack: write its class and its ``SPEC`` (an :class:`~.spec.AttackSpec`) in one new file
under ``attacks/``, and add one ``register(...)`` line to :func:`_register_builtins`. A user's own
attack is registered the same way, at run time: ``registry.register(MY_SPEC)``. The realistic
CT corruptions of :mod:`FreqAdvSegmentLib.corruptions` are registered here too, after the attacks,
with ``adversarial=False`` (:func:`corruption_names`).

A *method* is written ``name`` or ``name:preset`` (``vafa:public-code``) wherever one string has
to say both, e.g. a menu entry. A whole attack request, with its own parameters, is one string
too: ``name[:preset][,key=value...]`` (``vafa:public-code,q_max=30,steps=10``); this is what
``--method`` takes on the command line, and what the Slicer module and the web viewer send to the
engine (:func:`format_request` / :func:`parse_request`).

The names and the grammar live in :class:`~.catalog.Catalog` (no PyTorch needed); this module is
the process's live one, ``catalog.REGISTERED``, filled here with the built-in attacks. After a
change to an attack's parameters or presets, regenerate the catalog file the Slicer panel reads:
``python -m FreqAdvSegmentLib.attacks.docs --catalog`` (a test says so when it is stale).
"""

from __future__ import annotations

from typing import Any

from . import apgd, cospgd, ensemble, sa2, segpgd, vafa, voxel
from .catalog import REGISTERED
from .spec import AttackSpec

# The registry's questions, answered by the live catalog (see catalog.Catalog for each).
names = REGISTERED.names
specs = REGISTERED.specs
get = REGISTERED.get
split_method = REGISTERED.split_method
methods = REGISTERED.methods
adversarial_names = REGISTERED.adversarial_names
corruption_names = REGISTERED.corruption_names
resolve = REGISTERED.resolve
build = REGISTERED.build
parse_request = REGISTERED.parse_request
format_request = REGISTERED.format_request
shared_param = REGISTERED.shared_param
all_params = REGISTERED.all_params
takers = REGISTERED.takers


def register(spec: AttackSpec, *, replace: bool = False) -> AttackSpec:
    """Add ``spec`` to the registry. Raises ValueError if its name is taken (unless ``replace``)
    or if one of its parameters shares a name, but not a type or unit, with another attack's:
    the command line has one flag per parameter name."""
    return REGISTERED.add(spec, replace=replace)


def unregister(name: str) -> None:
    """Remove an attack (for tests and plug-ins that replace one)."""
    REGISTERED.remove(name)


def build_attack(method: str, model: Any, **params: Any):
    """An attack by its method (``vafa``, ``pgd``, ``vafa:public-code``, ...; see ``names()``)
    with its parameters; the run options roi_size, overlap, sw_batch_size, loss, amp, seed pass
    through."""
    run_keys = ("roi_size", "overlap", "sw_batch_size", "loss", "amp", "seed")
    run_options = {k: params.pop(k) for k in run_keys if k in params}
    return build(method, model, params, **run_options)


def _register_builtins() -> None:
    # One line per attack: the only place an attack is listed.
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
    # The realistic CT corruptions (not adversarial), after the attacks, one line each. They live in
    # FreqAdvSegmentLib/corruptions/, which is built on attacks/ alone (base, spec) and imports
    # nothing else from the engine, so attacks/ still stands apart from the engine.
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
