"""``microexp`` command line: a thin shell over the Python API.

Each command lives in its own module of this package and exposes ``register(subparsers)``, which adds a
subparser whose ``func`` default takes the parsed arguments and returns an exit code. Every module of the package
whose name does not start with ``_`` is a command module; one that fails to import or lacks ``register`` is an
error, not silently skipped. Errors of the :class:`~microexp.errors.MicroexpError` family print as one line and
exit 2 (1 is kept for "problems found").

Start-up stays fast: building the parser imports every command module, so their module-level imports must stay
light (no torch, numba, cv2, sklearn or pandas: import those inside the command's function).
``tests/test_cli_startup.py`` checks this for every module. The ``--dataset`` help lists the built-in
datasets from :mod:`microexp.data.builtin`, which names them without importing their modules (pandas, OpenCV).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from microexp import __version__
from microexp.errors import MicroexpError

# help order of the command modules; modules not listed follow in alphabetical order
ORDER = ("demo", "synth", "evaluate", "models", "data", "preprocess", "report", "predict", "export", "bench",
         "explain", "sweep", "compare", "serve", "spot")


def add_dataset_option(p: argparse.ArgumentParser, required: bool = False, prefix: str = "dataset name") -> None:
    """``--dataset``, its help listing every built-in dataset (read without importing the dataset modules)."""
    from microexp.data.builtin import NAMES

    p.add_argument("--dataset", required=required, help=f"{prefix} (one of: {', '.join(NAMES)})")


def command_modules() -> list[str]:
    """Every command module of this package, in help order."""
    found = {m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}
    return [n for n in ORDER if n in found] + sorted(found - set(ORDER))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="microexp", description="Facial micro-expression recognition toolkit.")
    parser.add_argument("--version", action="version", version=f"microexp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in command_modules():
        module = importlib.import_module(f"microexp.cli.{name}")
        if not callable(getattr(module, "register", None)):
            raise TypeError(f"microexp.cli.{name} is a command module without register(subparsers)")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MicroexpError as exc:
        print(f"microexp {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("microexp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
