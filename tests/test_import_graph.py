"""The import graph: no cycle, and layers meet only through public names.

No cycle: every import counts (module level, inside functions, under TYPE_CHECKING), so no two modules lean on
each other, lazily or not. The root package is left out as an importer: its lazy ``microexp.load`` is the public
door to the contract's dispatch, and every module may read ``microexp.__version__``.

Layers meet only through public names. The rules, checked on the source (every import, top-level or inside a
function, and every attribute read on an imported microexp module):

1. spot does not import train: folds, data and methods reach spot through neutral public functions.
2. serve does not import train, and uses explain only through the names ``microexp.explain`` exports.
3. No module imports a ``_private`` module or a ``_private`` name of another package (``microexp.<package>``;
   the modules directly under ``microexp`` form one package), nor reads one as an attribute (``casme3._x``).
4. The contract (``microexp.contract``) is the bottom layer: at module level it imports only ``microexp.errors``,
   ``microexp.fileio`` and itself.
5. No module outside the contract spells a run file's name: they use :mod:`microexp.contract.layout`.

Known violations that another change is removing are listed in ``ALLOWED`` (one line each, with the owner); the
test fails when a listed violation is gone, so the list is emptied as they are fixed, and when a new one appears.
"""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = SRC / "microexp"

# (rule, importing module, what it reaches): violations being removed elsewhere; the lead empties this at merge
ALLOWED: set[tuple[int, str, str]] = set()  # every known violation has been removed
RUN_FILES = ("config.yaml", "metrics.json", "predictions.csv", "history.csv", "excluded.csv", "repairs.csv",
             "layout.json", "spotter.json", "spotter.safetensors", "predictions.json", "curves.npz",
             "ground_truth.json", "str.csv")


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


# ---------------------------------------------------------------------------------------- public names only
@dataclass(frozen=True)
class Module:
    name: str
    tree: ast.Module
    is_package: bool

    @property
    def package(self) -> str:
        return package_of(self.name, self.is_package)


def package_of(name: str, is_package: bool = False) -> str:
    """``microexp.<first part>`` for modules in a sub-package, ``microexp`` for the modules directly under it."""
    parts = name.split(".")
    if len(parts) > 2 or (len(parts) == 2 and (is_package or (ROOT / parts[1]).is_dir())):
        return ".".join(parts[:2])
    return "microexp"


def private(dotted: str) -> bool:
    return any(p.startswith("_") and not p.startswith("__") for p in dotted.split("."))


def imports(module: Module, top_level_only: bool = False) -> list[str]:
    """Every microexp name ``module`` imports, fully dotted (``microexp.data._common.subdirs``), and every
    attribute it reads on an imported microexp module (``microexp.data.casme3._find_annotation``)."""
    out, aliases = [], {}
    nodes = module.tree.body if top_level_only else list(ast.walk(module.tree))
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            if base.split(".")[0] != "microexp":
                continue
            for a in node.names:
                out.append(f"{base}.{a.name}")
                aliases[a.asname or a.name] = f"{base}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "microexp":
                    out.append(a.name)
                    if a.asname:
                        aliases[a.asname] = a.name
    if not top_level_only:
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                out.append(f"{aliases[node.value.id]}.{node.attr}")
    return out


def violations(modules: list[Module]) -> set[tuple[int, str, str]]:
    found: set[tuple[int, str, str]] = set()
    import microexp.explain

    explain_public = {f"microexp.explain.{n}" for n in microexp.explain.__all__}
    for m in modules:
        for target in imports(m):
            # the deepest module of a dotted name decides its package (a name imported from a module is not one)
            if m.package in ("microexp.spot", "microexp.serve") and target.startswith("microexp.train"):
                found.add((1 if m.package == "microexp.spot" else 2, m.name, target))
            if m.package == "microexp.serve" and target.startswith("microexp.explain."):
                leaf = target.rsplit(".", 1)[-1]
                if f"microexp.explain.{leaf}" not in explain_public and leaf != "saliency":
                    found.add((2, m.name, target))
            if private(target.removeprefix("microexp.")) and package_of(target) != m.package:
                found.add((3, m.name, target))
        if m.package == "microexp.contract":
            for target in imports(m, top_level_only=True):
                if not target.startswith(("microexp.errors", "microexp.fileio", "microexp.contract")):
                    found.add((4, m.name, target))
        elif m.name != "microexp.runs":
            for node in ast.walk(m.tree):
                if isinstance(node, ast.Constant) and node.value in RUN_FILES:
                    found.add((5, m.name, repr(node.value)))
    return found


def parse(name: str, text: str, is_package: bool = False) -> Module:
    return Module(name, ast.parse(text), is_package)


def source_modules() -> list[Module]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        out.append(Module(".".join(parts), ast.parse(path.read_text(encoding="utf-8")), is_package))
    return out


def test_layers_meet_only_through_public_names() -> None:
    found = violations(source_modules())
    new = sorted(found - ALLOWED)
    assert not new, f"import rules broken (rule, module, name): {new}"
    gone = sorted(ALLOWED - found)
    assert not gone, f"fixed: remove these from ALLOWED in tests/test_import_graph.py: {gone}"


@pytest.mark.parametrize(("name", "text", "rule"), [
    ("microexp.spot.evaluate", "from microexp.train.protocols import make_folds", 1),
    ("microexp.spot.data", "def f():\n    from microexp.train import loop\n", 1),
    ("microexp.serve.app", "import microexp.train.evaluate", 2),
    ("microexp.serve.analyse", "from microexp.explain.saliency import load_model", 2),
    ("microexp.spot.data", "from microexp.data._common import subdirs", 3),
    ("microexp.spot.data", "from microexp.data import casme3\nx = casme3._find_annotation", 3),
    ("microexp.report.html", "from microexp.train.loop import _batch", 3),
    ("microexp.serve.runs", "from ..data import _common", 3),
    ("microexp.contract.layout", "from microexp.spot import api", 4),
    ("microexp.cli.report", "x = 'spotter.json'", 5),
])
def test_each_rule_can_fail(name: str, text: str, rule: int) -> None:
    """The control: a module breaking each rule is caught."""
    assert {v[0] for v in violations([parse(name, text)])} == {rule}


@pytest.mark.parametrize(("name", "text"), [
    ("microexp.data.casme3", "from microexp.data._common import subdirs"),  # private, same package
    ("microexp.train.twostage", "from microexp.train import loop\nx = loop._batch"),
    ("microexp.serve.analyse", "from microexp.explain import grad_cam"),  # explain's public name
    ("microexp.contract.load", "def f():\n    from microexp.spot.api import Spotter\n"),  # lazy: allowed
    ("microexp.spot.api", "from microexp import runs\nx = runs.SPOTTER"),
])
def test_allowed_imports_pass(name: str, text: str) -> None:
    assert violations([parse(name, text)]) == set()


def test_loading_a_recognition_run_imports_no_spotting_code(tmp_path: Path) -> None:
    """``microexp.load`` picks the stack by the run's layout: a recognition run goes to predict without importing
    microexp.spot; a spotting run (layout 2, or an older one told by its spotter.json) to the spotter."""
    from microexp import runs

    recognition, spotting = tmp_path / "rec", tmp_path / "spot"
    runs.write_config(recognition.mkdir() or recognition, {"dataset": "plain"})
    runs.write_config(spotting.mkdir() or spotting, {"task": "spot", "method": "mdmd"})
    runs.write_json(spotting / runs.SPOTTER, {"method": "mdmd", "dataset": "d", "fps": 30.0, "features": {},
                                              "types": {"micro": {"type": "micro", "k": 3, "before": 1, "after": 1,
                                                                  "threshold": 0.5}}})
    assert runs.read_layout(recognition) == {"layout": runs.LAYOUT_VERSION, "kind": "recognition"}
    assert runs.read_layout(spotting) == {"layout": runs.LAYOUT_VERSION, "kind": "spotting"}
    code = f"""
import sys
import microexp
import microexp.predict as predict
predict.load = lambda run, **kw: ("predictor", run)
assert microexp.load({str(recognition)!r}) == ("predictor", {str(recognition)!r})
assert "microexp.spot" not in sys.modules, sorted(m for m in sys.modules if m.startswith("microexp.spot"))
spotter = microexp.load({str(spotting)!r})
assert type(spotter).__name__ == "Spotter" and spotter.method == "mdmd", spotter
import os
os.remove({str(spotting / "layout.json")!r})  # layout 1: a run made before the layout was written
assert type(microexp.load({str(spotting)!r})).__name__ == "Spotter"
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert runs.read_layout(spotting) == {"layout": 1, "kind": "spotting"}


def test_a_newer_layout_is_one_line(tmp_path: Path) -> None:
    from microexp import runs
    from microexp.errors import DataError

    (tmp_path / runs.LAYOUT).write_text('{"layout": 99, "kind": "recognition"}')
    with pytest.raises(DataError, match=r"layout.json: run layout 99 was written by a newer microexp"):
        runs.run_kind(tmp_path)
    (tmp_path / runs.LAYOUT).write_text('{"layout": 2, "kind": "painting"}')
    with pytest.raises(DataError, match=r"unknown run kind 'painting'"):
        runs.run_kind(tmp_path)
