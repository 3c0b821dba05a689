"""The command line starts light: building the parser, ``--help`` and argument errors import no torch, numba,
cv2, sklearn or pandas (each command imports those inside its function). Checked in fresh interpreters, for the
whole parser and for every command module on its own, so a heavy module-level import names its module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from microexp.cli import command_modules

HEAVY = ("torch", "numba", "cv2", "sklearn", "pandas")
SRC = str(Path(__file__).resolve().parents[1] / "src")

# runs ``body`` in a fresh interpreter, then prints the heavy modules it loaded as JSON on the last line
PROBE = """
import sys, json, contextlib, io
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
{body}
    except SystemExit:
        pass
print(json.dumps([m for m in {heavy!r} if m in sys.modules]))
"""


def _heavy_after(body: str) -> list[str]:
    code = PROBE.format(body="\n".join("        " + line for line in body.strip().splitlines()), heavy=HEAVY)
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_probe_sees_a_heavy_import() -> None:
    assert "sklearn" in _heavy_after("import sklearn")


def test_every_module_of_the_cli_package_is_a_command() -> None:
    names = command_modules()
    cli_dir = Path(SRC) / "microexp" / "cli"
    on_disk = {p.stem for p in cli_dir.glob("*.py") if not p.stem.startswith("_")}
    on_disk |= {p.name for p in cli_dir.iterdir() if (p / "__init__.py").is_file() and not p.name.startswith("_")}
    assert set(names) == on_disk and len(names) == len(on_disk)
    assert names[:3] == ["demo", "synth", "evaluate"]  # help order


@pytest.mark.parametrize("name", command_modules())
def test_command_module_registers_without_heavy_imports(name: str) -> None:
    body = f"""
import argparse, importlib
module = importlib.import_module("microexp.cli.{name}")
module.register(argparse.ArgumentParser().add_subparsers())
"""
    assert _heavy_after(body) == [], f"microexp.cli.{name} imports these at module level"


def test_build_parser_and_help_import_nothing_heavy() -> None:
    assert _heavy_after("from microexp.cli import main\nmain(['--help'])") == []


@pytest.mark.parametrize("argv", [
    ["evaluate", "--folds", "x"],
    ["evaluate", "--protocol", "nope"],
    ["preprocess"],  # missing --dataset/--root
    ["no-such-command"],
])
def test_argument_errors_import_nothing_heavy(argv: list[str]) -> None:
    assert _heavy_after(f"from microexp.cli import main\nmain({argv!r})") == []


def test_python_dash_m_help_exits_0_light() -> None:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    code = ("import runpy, sys, json\nsys.argv = ['microexp', '--help']\n"
            "try:\n    runpy.run_module('microexp', run_name='__main__')\nexcept SystemExit as e:\n"
            f"    print(json.dumps([e.code, [m for m in {HEAVY!r} if m in sys.modules]]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    code_, heavy = json.loads(done.stdout.strip().splitlines()[-1])
    assert code_ == 0 and heavy == []
    assert "evaluate" in done.stdout and "preprocess" in done.stdout


def _help_text(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    from microexp.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    return " ".join(capsys.readouterr().out.split())  # unwrapped


def _listed(text: str) -> list[str]:
    assert text.count("(one of: ") == 1
    return [n.strip() for n in text.split("(one of: ")[1].split(")")[0].split(",")]


def test_dataset_help_lists_every_registered_dataset(capsys: pytest.CaptureFixture[str]) -> None:
    from microexp.data.registry import dataset_names

    for command in ("evaluate", "preprocess", "sweep"):
        assert _listed(_help_text(command, capsys)) == dataset_names(), command


@pytest.mark.parametrize("name", ["evaluate", "preprocess", "sweep"])
def test_dataset_help_is_light(name: str) -> None:
    """The command's help lists the datasets without importing the dataset registry or its modules."""
    body = f"""
import importlib, argparse
parser = argparse.ArgumentParser(prog="microexp")
importlib.import_module("microexp.cli.{name}").register(parser.add_subparsers())
for argv in (["--help"], ["{name}", "--no-such-option"], ["{name}", "--help"]):
    try:
        parser.parse_args(argv)
    except SystemExit:
        pass
"""
    code = PROBE.format(body="\n".join("        " + line for line in body.strip().splitlines()),
                        heavy=("microexp.data.registry", *HEAVY))
    code = code.replace("contextlib.redirect_stdout(io.StringIO())", "contextlib.redirect_stdout(out := io.StringIO())")
    code += "print(json.dumps(out.getvalue()))\n"
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    heavy, out = json.loads(lines[-2]), json.loads(lines[-1])
    assert heavy == [] and "(one of: " in out and "casme2" in out


def test_lazy_package_names_resolve() -> None:
    import microexp.preprocess as pre
    import microexp.train as train
    from microexp.preprocess.pipeline import preprocess_set
    from microexp.train.protocols import make_folds

    assert train.make_folds is make_folds and pre.preprocess_set is preprocess_set
    assert all(getattr(train, n) is not None for n in train.__all__)
    assert all(getattr(pre, n) is not None for n in pre.__all__)
    with pytest.raises(AttributeError):
        _ = train.no_such_name
    assert _heavy_after("import microexp.train.executor, microexp.preprocess.config") == []
