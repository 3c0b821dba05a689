"""File writes of runs, caches and outputs: atomic (a killed process never leaves a half-written cache entry,
fold result or run file), with the permissions the user's umask gives, and one-line errors when the target
cannot be written (read-only folder, a folder where a file was named, a full disk)."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from microexp.errors import ConfigError

_UMASK_LOCK = threading.Lock()


def user_cache_dir(env: str, name: str) -> Path:
    """``$ENV`` if set, else ``$XDG_CACHE_HOME/microexp/NAME`` (``~/.cache/microexp/NAME``): one of microexp's
    caches on this machine."""
    if os.environ.get(env):
        return Path(os.environ[env])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "microexp" / name


def current_umask() -> int:
    """The process umask (Linux: read from /proc without changing it; elsewhere set and restored under a lock)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def cannot_write(path: str | Path, exc: OSError) -> ConfigError:
    """The one-line error for an output that cannot be written."""
    return ConfigError(f"{path}: cannot write ({exc.strerror or type(exc).__name__})")


@contextmanager
def output_errors(path: str | Path) -> Iterator[None]:
    """Turn an OSError while writing ``path`` into a one-line :class:`ConfigError` naming it."""
    try:
        yield
    except OSError as exc:
        raise cannot_write(path, exc) from None


@contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on clean exit it replaces ``path`` in one rename (``os.replace``).

    mkstemp creates its file with mode 0600; it is given the mode a plain ``open`` would (0666 less the umask)
    so that colleagues can read a run on a shared machine when the umask allows it."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; give a file name")
    with output_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~current_umask())
        with os.fdopen(fd, mode) as f:
            yield f
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise cannot_write(path, exc) from None
        raise


def write_atomic(path: str | Path, data: str | bytes) -> None:
    with atomic_open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def _unwritable(folder: Path) -> str | None:
    """Why ``folder`` cannot take new files (created if missing), or None when it can: proved with a
    temporary file, since permission bits say nothing for root or read-only mounts."""
    if folder.exists() and not folder.is_dir():
        return "not a folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def check_writable_dir(folder: str | Path, what: str = "") -> Path:
    """Create ``folder`` if needed and prove it writable, before any work starts."""
    folder = Path(folder)
    reason = _unwritable(folder)
    if reason == "not a folder":
        raise ConfigError(f"{what + ' ' if what else ''}{folder}: not a folder")
    if reason is not None:
        raise ConfigError(f"{what + ' ' if what else ''}{folder}: cannot write ({reason})")
    return folder


def check_output_file(path: str | Path, what: str = "") -> Path:
    """An output file must not be a folder, and its folder must be writable (checked before any work)."""
    path = Path(path)
    label = f"{what} " if what else ""
    if path.is_dir():
        raise ConfigError(f"{label}{path}: is a folder; give a file name")
    reason = _unwritable(path.parent)
    if reason is not None:
        raise ConfigError(f"{label}{path}: cannot write (folder {path.parent}: {reason})")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{label}{path}: cannot write (Permission denied)")
    return path
