"""Imports point one way: every ``deepfake_exp`` import is checked against the layer table.

Walks ``deepfake_exp/`` with ``ast`` (imports inside functions count too) and fails on an import
the table below forbids, and on any cycle between layers. There is no allow-list: a rule that
needs an exception is a rule to change here, in review.

    utils         -> (nothing of ours)
    data          -> utils
    faces         -> data, utils
    preprocessing -> faces, data, utils
    evaluation    -> data.records, utils
    models        -> evaluation, utils
    inference     -> models, evaluation, faces, preprocessing, data, runs, utils
    analysis      -> evaluation, data, utils
    runs, sweeps  -> data, preprocessing, utils (sweeps: runs too)
    config        -> every layer below tasks (registries), and benchmarks' section table
    tasks         -> everything except entrypoints
    benchmarks    -> everything except entrypoints
    entrypoints   -> tasks, config
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "deepfake_exp"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
ENTRYPOINTS = frozenset(
    {"train", "evaluate", "preprocess", "predict", "export", "report", "analyze", "bench",
     "augment_preview"}
)  # fmt: skip
BELOW_TASKS = frozenset(
    {"utils", "data", "faces", "preprocessing", "evaluation", "models", "inference", "analysis",
     "runs", "sweeps"}
)  # fmt: skip
# ``benchmarks/__init__.py`` is only the SECTIONS table (names, no imports), which config reads.
SECTION_TABLE = "benchmarks.sections"
EVERYTHING = BELOW_TASKS | {"config", "tasks", "benchmarks", SECTION_TABLE, "package"}
# layer -> layers it may import ("package" is deepfake_exp/__init__.py)
ALLOWED: dict[str, frozenset[str]] = {
    "package": frozenset({"utils"}),
    "utils": frozenset(),
    "data": frozenset({"utils"}),
    "faces": frozenset({"data", "utils"}),
    "preprocessing": frozenset({"faces", "data", "utils"}),
    "evaluation": frozenset({"data.records", "utils"}),
    "models": frozenset({"evaluation", "utils"}),
    "inference": frozenset(
        {"models", "evaluation", "faces", "preprocessing", "data", "runs", "utils"}
    ),
    "analysis": frozenset({"evaluation", "data", "utils"}),
    "runs": frozenset({"data", "preprocessing", "utils"}),
    "sweeps": frozenset({"runs", "data", "preprocessing", "utils"}),
    SECTION_TABLE: frozenset(),
    "config": BELOW_TASKS | {SECTION_TABLE},
    "tasks": EVERYTHING,
    "benchmarks": EVERYTHING,
    "entrypoint": frozenset({"tasks", "config"}),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    """The layer of a ``deepfake_exp`` module (``data``, ``entrypoint``, ...)."""
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    top = parts[1]
    if module == f"{PACKAGE}.benchmarks":
        return SECTION_TABLE
    if top in ENTRYPOINTS and len(parts) == 2:
        return "entrypoint"
    return top if top in EVERYTHING else f"unknown:{top}"


def _allowed(importer_layer: str, imported: str) -> bool:
    allowed = ALLOWED.get(importer_layer, frozenset())
    target = layer_of(imported)
    if target == importer_layer:
        return importer_layer != "entrypoint"  # entrypoints never import each other
    if target in allowed:
        return True
    return ".".join(imported.split(".")[1:3]) in allowed  # e.g. evaluation -> data.records


def imports_of(path: Path) -> set[str]:
    """The ``deepfake_exp`` modules ``path`` imports (``from deepfake_exp import x`` -> ``.x``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = (
        module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    )
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            if source.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                is_module = (ROOT.parent / Path(*submodule.split("."))).with_suffix(
                    ".py"
                ).exists() or (ROOT.parent / Path(*submodule.split(".")) / "__init__.py").exists()
                found.add(submodule if is_module else source)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the ``deepfake_exp`` modules it imports."""
    return {module_name(p): imports_of(p) for p in sorted(ROOT.rglob("*.py"))}


def violations(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    found = set()
    for importer, imported in graph.items():
        layer = layer_of(importer)
        for target in imported:
            if not _allowed(layer, target):
                found.add((importer, target))
    return found


def layer_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Cycles between layers (strongly connected components with more than one layer)."""
    edges: dict[str, set[str]] = {}
    for importer, imported in graph.items():
        source = layer_of(importer)
        edges.setdefault(source, set()).update(t for t in map(layer_of, imported) if t != source)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return components


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_every_module_has_a_layer(graph: dict[str, set[str]]) -> None:
    unknown = sorted(m for m in graph if layer_of(m).startswith("unknown"))
    assert not unknown, f"add these to the layer table in {__file__}: {unknown}"


def test_no_forbidden_import(graph: dict[str, set[str]]) -> None:
    found = sorted(violations(graph))
    assert not found, "forbidden imports (see the layer table in this file's docstring):\n  " + (
        "\n  ".join(f"{a} ({layer_of(a)}) imports {b} ({layer_of(b)})" for a, b in found)
    )


def test_no_cycle_between_layers(graph: dict[str, set[str]]) -> None:
    assert not layer_cycles(graph)


def test_the_checker_sees_violations() -> None:
    """The rules catch what they should (so an empty result means something)."""
    graph = {
        "deepfake_exp.train": {"deepfake_exp.evaluate", "deepfake_exp.tasks.train"},
        "deepfake_exp.models.module": {"deepfake_exp.data.records", "deepfake_exp.evaluation"},
        "deepfake_exp.evaluation.gradcam": {"deepfake_exp.models.vit", "deepfake_exp.data.records"},
        "deepfake_exp.data.splits": {"deepfake_exp.faces.detectors"},
    }
    assert violations(graph) == {
        ("deepfake_exp.train", "deepfake_exp.evaluate"),
        ("deepfake_exp.models.module", "deepfake_exp.data.records"),
        ("deepfake_exp.evaluation.gradcam", "deepfake_exp.models.vit"),
        ("deepfake_exp.data.splits", "deepfake_exp.faces.detectors"),
    }
    assert layer_cycles(graph) == [["evaluation", "models"]]
