"""On-disk cache of preprocessed clips: one file per (clip, config, microexp version).

Key: sha256 over the clip's frame files as (path, size, mtime_ns), its frame numbers and onset/apex/offset,
the preprocessing config and the microexp version. (path, size, mtime) rather than the files' bytes because
hashing bytes means reading every frame of the tree on every run, which is most of the cost of preprocessing
itself; a tool that rewrites a frame changes its mtime, so the stale entry is simply not found again.

Entry file: ``MAGIC | payload length (8 bytes) | sha256(payload) (32 bytes) | payload`` where the payload is an
``.npz`` of the streams (or the exclusion reason of a clip that failed, so a resumed run skips it too).
Writes go to a temporary file in the same folder and are published with ``os.replace`` (atomic); a short,
truncated or corrupted entry fails its length/checksum test, is deleted and rebuilt.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from microexp import __version__
from microexp.data.records import ClipRecord
from microexp.errors import ConfigError
from microexp.fileio import check_writable_dir, user_cache_dir, write_atomic
from microexp.preprocess.config import PreprocessConfig

MAGIC = b"MXPC1\n"
FORMAT = 1
_HEADER = len(MAGIC) + 8 + 32
_EXCLUDED = "__excluded__"


def default_cache_dir() -> Path:
    """``$MICROEXP_CACHE``, else ``$XDG_CACHE_HOME/microexp/preprocess`` (``~/.cache/microexp/preprocess``)."""
    return user_cache_dir("MICROEXP_CACHE", "preprocess")


def config_digest(config: PreprocessConfig) -> str:
    return hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True, default=str).encode()).hexdigest()


def clip_key(record: ClipRecord, config: PreprocessConfig, config_hash: str | None = None) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([FORMAT, __version__, config_hash or config_digest(config), record.key,
                         list(record.frame_numbers), record.onset, record.apex, record.offset]).encode())
    for p in record.frames:
        try:
            st = os.stat(p)
            h.update(f"{os.path.abspath(p)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}|missing\n".encode())
    return h.hexdigest()


class ClipCache:
    """A folder of cache entries. ``get`` returns the streams dict, an exclusion reason (str), or None."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.rebuilt = 0  # entries found corrupt and dropped (reported by the CLI)

    def check_writable(self) -> ClipCache:
        """Fail before any preprocessing, with one line, when the cache folder cannot be written."""
        try:
            check_writable_dir(self.root)
        except ConfigError as exc:
            raise ConfigError(f"preprocessing cache {exc} (set MICROEXP_CACHE to a writable folder, or run "
                              "with cache: false)") from None
        return self

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.mxc"

    def get(self, key: str) -> dict[str, np.ndarray] | str | None:
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        payload = _check(data)
        if payload is None:
            self.rebuilt += 1
            path.unlink(missing_ok=True)
            return None
        try:
            with np.load(io.BytesIO(payload), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (ValueError, OSError, KeyError):
            self.rebuilt += 1
            path.unlink(missing_ok=True)
            return None
        if _EXCLUDED in arrays:
            return str(arrays[_EXCLUDED])
        return arrays

    def put(self, key: str, value: dict[str, np.ndarray] | str) -> None:
        arrays = {_EXCLUDED: np.array(value)} if isinstance(value, str) else value
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        payload = buf.getvalue()
        blob = MAGIC + len(payload).to_bytes(8, "little") + hashlib.sha256(payload).digest() + payload
        write_atomic(self.path(key), blob)


def _check(data: bytes) -> bytes | None:
    if len(data) < _HEADER or not data.startswith(MAGIC):
        return None
    n = int.from_bytes(data[len(MAGIC):len(MAGIC) + 8], "little")
    digest = data[len(MAGIC) + 8:_HEADER]
    payload = data[_HEADER:]
    if len(payload) != n or hashlib.sha256(payload).digest() != digest:
        return None
    return payload
