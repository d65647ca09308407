"""The attack catalog: the shipped file equals what the registry generates, it resolves every
method exactly as the registry does, plug-ins reach ``catalog.current()``, and ``attacks/``
imports nothing else from the engine, with no import cycle inside it."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from FreqAdvSegmentLib.attacks import catalog, docs, registry
from FreqAdvSegmentLib.attacks.spec import INTENSITY, AttackInfo, AttackSpec, Param, Preset, SameAs
from FreqAdvSegmentLib.attacks.voxel import BIM

ATTACKS_DIR = Path(catalog.__file__).parent


def test_the_shipped_catalog_is_what_the_registry_generates_now():
    shipped = catalog.CATALOG_JSON.read_text(encoding="utf-8")
    assert shipped == docs.catalog_text(), (
        f"{catalog.CATALOG_JSON.name} is stale (an attack's parameters, defaults or presets changed): "
        f"regenerate it with  {catalog.REGENERATE}  and commit it"
    )
    assert catalog.shipped().specs() == tuple(s.info() for s in registry.specs())


@pytest.mark.parametrize("method", registry.methods())
def test_the_catalog_resolves_and_writes_requests_like_the_registry(method):
    shipped = catalog.shipped()
    assert shipped.resolve(method) == registry.resolve(method)
    spec, preset = registry.split_method(method)
    # one changed parameter per attack: its text form parses back the same on both sides
    param = spec.params[0] if spec.params else None
    params = {} if param is None else {param.name: spec.resolve(preset)[param.name]}
    text = shipped.format_request(spec.name, preset, params)
    assert text == registry.format_request(spec.name, preset, params)
    info, info_preset, info_params = shipped.parse_request(text)
    assert (info.name, info_preset, info_params) == (spec.name, preset, registry.parse_request(text)[2])


def test_catalog_values_round_trip_exactly_including_same_as():
    info = AttackInfo(
        "toy", "Toy", "a test attack",
        (Param("strength", float, "budget", INTENSITY, 0, 1, display_scale=255),
         Param("mode", str, "mode", choices=("a", None)), Param("start", float, "start", optional=True)),
        (Preset("same", "start at the budget", {"start": SameAs("strength"), "mode": None}),),
        {"strength": 4 / 255, "mode": "a", "start": None}, strength="strength", sweep=(2 / 255, 4 / 255),
    )
    (back,) = catalog.from_json(json.loads(catalog.dumps([info])))
    assert back == info
    assert back.resolve("same", strength="8/255") == {"strength": 8 / 255, "mode": None, "start": 8 / 255}


def test_a_damaged_catalog_file_says_which_file_and_how_to_regenerate(tmp_path):
    bad = tmp_path / "attack_catalog.json"
    bad.write_text('{"format": 1, "attacks": [{"name": "pgd"}]}', encoding="utf-8")
    with pytest.raises(ValueError, match=rf"cannot read the attack catalog .*attack_catalog.json.*{catalog.REGENERATE}"):
        catalog.shipped(bad)
    bad.write_text('{"format": 99, "attacks": []}', encoding="utf-8")
    with pytest.raises(ValueError, match="format 99, this version reads format 1"):
        catalog.shipped(bad)


def test_current_is_the_live_registry_so_a_plug_in_shows_up():
    class Shove(BIM):
        def __init__(self, model, shove: float = 2 / 255, **kwargs) -> None:
            super().__init__(model, eps=shove, **kwargs)

    spec = AttackSpec("shove", Shove, "Shove", "a plug-in", (Param("shove", float, "budget", INTENSITY, 0, 1, display_scale=255),))
    registry.register(spec)
    try:
        assert catalog.current() is catalog.REGISTERED
        assert catalog.current().get("shove").resolve() == {"shove": 2 / 255}
        assert "shove" not in catalog.shipped().names(), "the shipped file holds the built-in attacks only"
    finally:
        registry.unregister("shove")


# --- the import graph of attacks/ --------------------------------------------------------------


def _imports(path: Path) -> list[tuple[int, str | None, tuple[str, ...]]]:
    """(level, module, names) of every import in ``path``, module level and inside functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(0, alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.level, node.module, tuple(a.name for a in node.names)))
    return found


def _attack_module_graph() -> dict[str, set[str]]:
    modules = {p.stem for p in ATTACKS_DIR.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in ATTACKS_DIR.glob("*.py"):
        edges = graph.setdefault(path.stem, set())
        for level, module, names in _imports(path):
            if level == 1 and module is None:
                edges.update(n if n in modules else "__init__" for n in names)  # from . import registry
            elif level == 1:
                edges.add(module.split(".")[0])
    return graph


def test_attacks_import_nothing_else_from_the_engine():
    """attacks/ stands alone; the one exception is the registry's import of the realistic CT
    corruptions, which are built on attacks/ alone (checked below)."""
    outside = []
    for path in sorted(ATTACKS_DIR.glob("*.py")):
        for level, module, _ in _imports(path):
            if (path.name, level, module) == ("registry.py", 2, "corruptions"):
                continue
            if level >= 2 or (level == 0 and (module or "").startswith("FreqAdvSegmentLib")):
                outside.append(f"{path.name}: {'.' * level}{module or ''}")
    assert outside == [], f"attacks/ must stand alone: {outside}"
    corruptions = ATTACKS_DIR.parent / "corruptions"
    for path in sorted(corruptions.glob("*.py")):
        for level, module, names in _imports(path):
            if level >= 2 and not (module or "").startswith("attacks") and not (module is None and names == ("attacks",)):
                outside.append(f"corruptions/{path.name}: {'.' * level}{module or ''}")
    assert outside == [], f"corruptions/ must import only attacks/ from the engine: {outside}"


def test_no_import_cycle_inside_attacks_and_the_package_init_imports_nothing_eagerly():
    graph = _attack_module_graph()
    assert graph["__init__"] == set(), "attacks/__init__ imports its names lazily (PEP 562)"

    def cycle_from(node: str, trail: list[str]) -> list[str] | None:
        if node in trail:
            return trail[trail.index(node):] + [node]
        for nxt in sorted(graph.get(node, ())):
            found = cycle_from(nxt, trail + [node])
            if found:
                return found
        return None

    for module in sorted(graph):
        assert cycle_from(module, []) is None, f"import cycle in attacks/: {' -> '.join(cycle_from(module, []))}"


def test_the_package_exports_keep_working():
    import FreqAdvSegmentLib.attacks as attacks

    for name in attacks.__all__:
        assert getattr(attacks, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        attacks.Nope  # noqa: B018
    assert attacks.build_attack is registry.build_attack
