"""The engine's import graph: no cycle, ``attacks/`` stands alone, nothing imports ``cli``.

The graph is read from the source with ``ast``, not by importing anything: every ``import`` and
``from ... import`` in FreqAdvSegmentLib, at module level, inside functions and under
``if TYPE_CHECKING:`` alike (a function-level import hides a cycle from Python, not from a reader).
An edge goes from the importing module to the module imported; ``from P import name`` goes to the
submodule ``P.name`` when there is one, else to ``P``. Importing ``P.sub`` is an edge to ``P.sub``
only, not to ``P/__init__``, so a package that re-exports its own submodules is no cycle with them.
Dynamic imports (``importlib.import_module``) are not edges.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

MODULE = Path(__file__).resolve().parent.parent / "FreqAdvSegment"
PACKAGE = "FreqAdvSegmentLib"
SLICER_MODULE = MODULE / "FreqAdvSegment.py"  # the Qt layer Slicer loads: it runs the CLI as a process

def module_name(path: Path, root: Path = MODULE) -> str:
    """``FreqAdvSegmentLib/job/pipeline.py`` -> ``FreqAdvSegmentLib.job.pipeline`` (a package: its folder)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules(root: Path = MODULE) -> dict[str, Path]:
    """Every module of the package under ``root``, by dotted name."""
    return {module_name(p, root): p for p in sorted((root / PACKAGE).rglob("*.py")) if "__pycache__" not in p.parts}


def imported(path: Path, name: str, modules: set[str]) -> Iterator[str]:
    """The package modules that ``path`` (module ``name``) imports, anywhere in its code."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package itself (``__init__``) or the module's package
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [(base, alias.name) for alias in node.names]
        else:
            continue
        for base, member in targets:
            if base != PACKAGE and not base.startswith(PACKAGE + "."):
                continue
            if member is not None and f"{base}.{member}" in modules:
                yield f"{base}.{member}"
            else:
                yield nearest_module(base, modules)


def nearest_module(dotted: str, modules: set[str]) -> str:
    """``dotted`` itself, or the longest prefix of it that is a module (``import a.b.Name`` style)."""
    while dotted not in modules and "." in dotted:
        dotted = dotted.rsplit(".", 1)[0]
    return dotted


def import_graph(root: Path = MODULE) -> dict[str, set[str]]:
    """module -> the package modules it imports (itself left out)."""
    paths = package_modules(root)
    names = set(paths)
    return {name: set(imported(path, name, names)) - {name} for name, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def cycle_path(graph: dict[str, set[str]], component: set[str]) -> str:
    """One concrete loop through ``component``, for the failure message: a -> b -> a."""
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node] & component):
            if child == start:
                return " -> ".join(paths[node] + [start])
            if child not in paths:
                paths[child] = paths[node] + [child]
                queue.append(child)
    return ", ".join(sorted(component))


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def _inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


# --- the reader itself, on a tiny package of its own ----------------------------------------------


def test_the_reader_finds_imports_everywhere_and_resolves_them(tmp_path):
    """Relative, absolute, function-level and TYPE_CHECKING imports are edges; ``from P import sub``
    is an edge to the submodule; an ``__init__`` re-exporting its submodules is no cycle."""
    root = tmp_path / PACKAGE
    (root / "p").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "p/__init__.py": "from .a import A\nfrom . import b\n",             # re-exports its submodules
        "p/a.py": "A = 1\ndef f():\n    from ..q import g\n",              # function-level, two levels up
        "p/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from FreqAdvSegmentLib.p.a import A\n",
        "q.py": "import FreqAdvSegmentLib.p.b\nfrom FreqAdvSegmentLib import p\ndef g():\n    from .p import A\n",
        "r.py": "from FreqAdvSegmentLib.q import g\nimport os\n",
    }
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    g = import_graph(tmp_path)
    short = {k.removeprefix(PACKAGE + "."): {v.removeprefix(PACKAGE + ".") for v in vs} for k, vs in g.items()}
    assert short == {
        PACKAGE: set(),
        "p": {"p.a", "p.b"},
        "p.a": {"q"},
        "p.b": {"p.a"},
        "q": {"p.b", "p"},
        "r": {"q"},
    }
    # q uses the package's re-export, so p/__init__ -> p.a -> q -> p/__init__ is a real cycle (and
    # q -> p.b -> p.a -> q another); the re-exports and sibling imports alone are none.
    assert cycles(g) == [{f"{PACKAGE}.p", f"{PACKAGE}.p.a", f"{PACKAGE}.p.b", f"{PACKAGE}.q"}]
    (root / "q.py").write_text("G = 1\n", encoding="utf-8")
    assert cycles(import_graph(tmp_path)) == []


# --- the package --------------------------------------------------------------------------------


def test_no_import_cycle(graph):
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(cycle_path(graph, c) for c in found)


def test_attacks_import_nothing_from_the_rest_of_the_engine(graph):
    """The perturbation layer stands alone: attacks/ and the realistic corruptions it registers
    beside the attacks (corruptions/) import nothing else from the engine."""
    layer = (f"{PACKAGE}.attacks", f"{PACKAGE}.corruptions")
    assert layer[1] in graph, "the corruptions package exists where this test looks for it"
    leaks = sorted(f"{m} -> {t}" for m, targets in graph.items() if any(_inside(m, p) for p in layer)
                   for t in targets if not any(_inside(t, p) for p in layer))
    assert not leaks, "attacks/ and corruptions/ must stand alone:\n" + "\n".join(leaks)


def test_nothing_imports_the_cli(graph):
    """The command line is the outermost layer: only itself and entry points (``__main__``) import it."""
    cli = f"{PACKAGE}.cli"
    assert cli in graph, "the cli package exists where this test looks for it"
    users = sorted(f"{m} -> {t}" for m, targets in graph.items() if not _inside(m, cli) and not m.endswith(".__main__")
                   for t in targets if _inside(t, cli))
    slicer = set(imported(SLICER_MODULE, "FreqAdvSegment", set(graph)))
    users += sorted(f"FreqAdvSegment.py -> {t}" for t in slicer if _inside(t, cli))
    assert not users, "only the command line itself may import it:\n" + "\n".join(users)


def test_the_graph_sees_function_level_imports(graph):
    """A guard on the reader against the real package: cli/train.py imports the trainer inside run()."""
    assert f"{PACKAGE}.training.trainer" in graph[f"{PACKAGE}.cli.train"]
    assert f"{PACKAGE}.cli.options" in graph[f"{PACKAGE}.cli.train"]
