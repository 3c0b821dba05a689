"""The package's import graph has no cycle: every import counts (module level, inside functions, under
TYPE_CHECKING), so no two modules lean on each other, lazily or not. The root package is left out as an importer:
its lazy ``microexp.load`` is the public door to ``predict``, and every module may read ``microexp.__version__``."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in (SRC / "microexp").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                found = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            targets |= {t for t in found if t in files and t != name}
        graph[name] = targets if name != "microexp" else set()
    return graph


def test_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 50 and "microexp.train.evaluate" in graph["microexp.cli.evaluate"] | {
        t for deps in graph.values() for t in deps}
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None


def test_evaluate_and_executor_do_not_import_each_other() -> None:
    graph = import_graph()
    assert "microexp.train.executor" not in graph["microexp.train.evaluate"] or \
        "microexp.train.evaluate" not in graph["microexp.train.executor"]
    assert "microexp.train.evaluate" not in graph["microexp.train.executor"]


def test_a_cycle_is_found() -> None:
    """Control: the check sees a cycle made of function-level imports."""
    graph = import_graph()
    graph["microexp.errors"] = {"microexp.train.evaluate"}
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError:
        return
    raise AssertionError("a cycle through microexp.errors was not found")
