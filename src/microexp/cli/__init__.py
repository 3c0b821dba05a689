"""``microexp`` command line: a thin shell over the Python API.

Each command lives in its own module of this package and exposes ``register(subparsers)``, which adds a
subparser whose ``func`` default takes the parsed arguments and returns an exit code. Errors of the
:class:`~microexp.errors.MicroexpError` family print as one line and exit 2 (1 is kept for "problems found").
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from microexp import __version__
from microexp.errors import MicroexpError

# one module per command group, in help order
COMMANDS = ("demo", "synth", "evaluate", "models", "data", "preprocess", "report", "predict", "export", "bench",
            "explain", "sweep", "compare", "spot")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="microexp", description="Facial micro-expression recognition toolkit.")
    parser.add_argument("--version", action="version", version=f"microexp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"microexp.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"microexp.cli.{name}":
                continue  # command not built yet
            raise
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
