"""The package's structure, checked on its import graph (grimp, the graph import-linter uses).

- No import cycle anywhere in evalgate/, counting function-level and TYPE_CHECKING imports: a
  deferred import that dodges a cycle is still a cycle.
- The layers declared in pyproject.toml ([tool.importlinter], which `lint-imports` checks in CI)
  hold here too, so a plain `pytest` run catches an upward import.
- Both checks fail on a copy of the package with an upward import or a cycle added, so they
  can fail.
- No module grows past the size a reader can hold (docs/architecture.md).
"""

from __future__ import annotations

import importlib
import shutil
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "evalgate"
MAX_MODULE_LINES = 600


def layers_contract() -> dict:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return next(c for c in config["contracts"] if c["type"] == "layers")


def build_graph(package_parent: Path) -> grimp.ImportGraph:
    """The evalgate import graph of the package under `package_parent` (not the installed one:
    the copies below are built from a temporary directory)."""
    sys.path.insert(0, str(package_parent))
    saved = {name: mod for name, mod in sys.modules.items()
             if name == "evalgate" or name.startswith("evalgate.")}
    for name in saved:
        del sys.modules[name]
    try:
        return grimp.build_graph("evalgate", cache_dir=None)
    finally:
        sys.path.remove(str(package_parent))
        for name in [n for n in sys.modules if n == "evalgate" or n.startswith("evalgate.")]:
            del sys.modules[name]
        sys.modules.update(saved)


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Modules that import each other, directly or around a loop."""
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    return strongly_connected(edges)


def sibling_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Siblings (the children of one package, each with everything below it) that import
    each other: a package's `__init__` that imports a module beside the package, which
    imports back into the package, is such a loop though no two modules form one."""
    cycles = []
    for package in sorted(m for m in graph.modules if graph.find_children(m)):
        depth = package.count(".") + 1

        def child(module: str, depth: int = depth, package: str = package) -> str | None:
            inside = module.startswith(package + ".")
            return ".".join(module.split(".")[:depth + 1]) if inside else None

        edges: dict[str, set[str]] = {c: set() for c in graph.find_children(package)}
        for module in graph.modules:
            source = child(module)
            if source is None:
                continue
            for imported in graph.find_modules_directly_imported_by(module):
                target = child(imported)
                if target is not None and target != source:
                    edges[source].add(target)
        cycles += strongly_connected({k: sorted(v) for k, v in edges.items()})
    return cycles


def strongly_connected(edges: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(edges[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in edges:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def layer_violations(graph: grimp.ImportGraph) -> list[str]:
    """Layer pairs with an import that goes up (or across independent siblings)."""
    contract = layers_contract()
    layers = []
    for layer in contract["layers"]:
        parts = tuple(p.strip() for p in layer.split("|"))
        layers.append(grimp.Layer(*parts, independent=True))
    found = graph.find_illegal_dependencies_for_layers(
        layers=layers, containers=set(contract["containers"]))
    return sorted(f"{d.importer} -> {d.imported}" for d in found)


def package_copy(tmp_path: Path) -> Path:
    shutil.copytree(PACKAGE, tmp_path / "evalgate",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def add_import(package_parent: Path, module: str, statement: str) -> None:
    path = package_parent / Path(*module.split(".")).with_suffix(".py")
    if not path.exists():
        path = package_parent / Path(*module.split(".")) / "__init__.py"
    text = path.read_text()
    head, sep, rest = text.partition("from __future__ import annotations\n")
    path.write_text(head + sep + statement + "\n" + rest)


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return build_graph(ROOT)


def test_the_package_has_no_import_cycle(graph: grimp.ImportGraph) -> None:
    assert import_cycles(graph) == []
    assert sibling_cycles(graph) == []


def test_a_cycle_between_a_package_and_a_sibling_module_is_caught(tmp_path: Path) -> None:
    parent = package_copy(tmp_path)
    path = parent / "evalgate" / "engine" / "providers" / "__init__.py"
    path.write_text(path.read_text() + "\n\ndef _late() -> None:\n"
                    "    from evalgate.engine.monitor import CallMonitor  # noqa: F401\n")
    monitor = parent / "evalgate" / "engine" / "monitor.py"
    add_import(parent, "evalgate.engine.monitor",
               "from evalgate.engine.providers.base import Reply  # noqa: F401")
    assert monitor.exists()
    graph = build_graph(parent)
    assert import_cycles(graph) == []  # no two modules import each other...
    assert ["evalgate.engine.monitor", "evalgate.engine.providers"] in sibling_cycles(graph)


def test_every_import_follows_the_layers(graph: grimp.ImportGraph) -> None:
    assert layer_violations(graph) == []


def test_every_subpackage_of_evalgate_is_in_a_layer(graph: grimp.ImportGraph) -> None:
    named = {p.strip() for layer in layers_contract()["layers"] for p in layer.split("|")}
    children = {m.split(".")[1] for m in graph.find_children("evalgate")}
    assert children == named


def test_an_upward_import_is_caught(tmp_path: Path) -> None:
    parent = package_copy(tmp_path)
    add_import(parent, "evalgate.stats.evidence", "from evalgate.report import charts")
    violations = layer_violations(build_graph(parent))
    assert violations == ["evalgate.stats -> evalgate.report"]


def test_a_cycle_hidden_in_a_function_is_caught(tmp_path: Path) -> None:
    parent = package_copy(tmp_path)
    path = parent / "evalgate" / "gate" / "metrics.py"
    path.write_text(path.read_text() + "\n\ndef _late() -> None:\n"
                    "    from evalgate.gate.guardrails import Guardrail  # noqa: F401\n")
    cycles = import_cycles(build_graph(parent))
    assert any({"evalgate.gate.metrics", "evalgate.gate.guardrails"} <= set(c) for c in cycles)


def test_no_module_is_longer_than_a_reader_can_hold() -> None:
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


@pytest.mark.parametrize("layer", ["spec", "text", "stats", "engine", "sim", "grading", "gate",
                                   "report", "pipeline"])
def test_each_layer_face_resolves_every_name_it_exports(layer: str) -> None:
    """A layer's `__init__` is its public face: every name in `__all__` is there (for stats,
    imported on first use)."""
    face = importlib.import_module(f"evalgate.{layer}")
    exported = getattr(face, "__all__", None)
    if layer == "report":  # the renderers load on first use; the face is its writers
        exported = ["DEFAULT_NAMES", "write_all", "write_reports"]
    assert exported, f"evalgate.{layer} exports nothing"
    missing = [name for name in exported if getattr(face, name, None) is None]
    assert missing == []
