"""``microexp`` command line: a thin shell over the Python API.

Each command lives in its own module of this package and exposes ``register(subparsers)``, which adds a
subparser whose ``func`` default takes the parsed arguments and returns an exit code. Every module of the package
whose name does not start with ``_`` is a command module; one that fails to import or lacks ``register`` is an
error, not silently skipped. Errors of the :class:`~microexp.errors.MicroexpError` family print as one line and
exit 2 (1 is kept for "problems found").

Start-up stays fast: building the parser imports every command module, so their module-level imports must stay
light (no torch, numba, cv2, sklearn or pandas: import those inside the command's function).
``tests/test_cli_startup.py`` checks this for every module. Help text that needs a heavy look-up (the registered
dataset names) is attached with :func:`lazy_help` and computed only when that help is printed; the dataset names
are then kept in a small cache file (:func:`dataset_names_for_help`), so printing help again does not import the
dataset modules (pandas, OpenCV).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import pkgutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from microexp import __version__
from microexp.errors import MicroexpError

# help order of the command modules; modules not listed follow in alphabetical order
ORDER = ("demo", "synth", "evaluate", "models", "data", "preprocess", "report", "predict", "export", "bench",
         "explain", "sweep", "compare")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose options may carry help computed on demand (see :func:`lazy_help`)."""

    def format_help(self) -> str:
        for action in self._actions:
            make = getattr(action, "lazy_help", None)
            if make is not None:
                action.help = make()
                del action.lazy_help
        return super().format_help()


def lazy_help(action: argparse.Action, make: Callable[[], str]) -> argparse.Action:
    """Set ``action``'s help to ``make()`` when the help is printed (not when the parser is built or used)."""
    action.lazy_help = make  # type: ignore[attr-defined]
    return action


def dataset_names_for_help() -> list[str]:
    """The dataset registry's names, cached in ``$XDG_CACHE_HOME/microexp/help.json`` (``~/.cache``) under a key
    made of microexp's version and the size and time of every file of ``microexp.data``: the dataset modules are
    imported only when one of them changed since the last look-up (or the cache cannot be written)."""
    import microexp

    package = Path(microexp.__file__).parent
    h = hashlib.sha256(microexp.__version__.encode())
    for path in sorted([*package.joinpath("data").rglob("*.py"), package / "registry.py"]):
        stat = path.stat()
        h.update(f"{path.relative_to(package)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    key = h.hexdigest()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "microexp" / "help.json"
    try:
        saved = json.loads(cache.read_text())
        if saved.get("key") == key and isinstance(saved.get("datasets"), list):
            return [str(n) for n in saved["datasets"]]
    except (OSError, ValueError, AttributeError):
        pass
    from microexp.data.registry import dataset_names

    names = dataset_names()
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "datasets": names}))
        tmp.replace(cache)
    except OSError:
        pass  # a read-only cache folder: help is then as slow as the registry import, never wrong
    return names


def dataset_help(prefix: str = "dataset name") -> str:
    """``prefix (one of: <every registered dataset>)``, read from the dataset registry."""
    return f"{prefix} (one of: {', '.join(dataset_names_for_help())})"


def add_dataset_option(p: argparse.ArgumentParser, required: bool = False, prefix: str = "dataset name") -> None:
    """``--dataset``, its help listing every registered dataset (looked up only when the help is printed)."""
    lazy_help(p.add_argument("--dataset", required=required, help=f"{prefix} (see `microexp data list`)"),
              lambda: dataset_help(prefix))


def command_modules() -> list[str]:
    """Every command module of this package, in help order."""
    found = {m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}
    return [n for n in ORDER if n in found] + sorted(found - set(ORDER))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="microexp", description="Facial micro-expression recognition toolkit.")
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
