"""Preprocessed input arrays on disk, memory-mapped for training.

A run's inputs are ``{stream: (N, C, T, H, W) float32}``. :func:`save_arrays` writes each once as ``.npy``
(named by a digest of its bytes, so a folder can be shared by runs and re-saving is a no-op);
:func:`load_arrays` maps them back as torch tensors *over the file*: the training loop's
``index_select`` on a batch of rows reads only those rows, so a data set larger than RAM trains without being
loaded, and nothing is decoded per step.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from microexp.errors import DataError
from microexp.fileio import atomic_open


def _digest(a: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=12)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(memoryview(np.ascontiguousarray(a)).cast("B"))
    return h.hexdigest()


def save_arrays(inputs: dict[str, torch.Tensor | np.ndarray], folder: str | Path) -> dict[str, str]:
    """Write each stream to ``folder/<stream>-<digest>.npy`` unless already there; returns stream -> path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, value in inputs.items():
        a = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        path = folder / f"{name}-{_digest(a)}.npy"
        if not path.is_file():
            with atomic_open(path, "wb") as f:  # concurrent writers of the same digest agree
                np.save(f, a)
        files[name] = str(path)
    return files


def load_arrays(files: dict[str, str | Path]) -> dict[str, torch.Tensor]:
    """Memory-map each ``.npy`` as a torch tensor (copy-on-write: the file is never modified)."""
    out = {}
    for name, path in files.items():
        try:
            a = np.load(path, mmap_mode="c")
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot map input array for stream {name!r} ({exc})") from None
        out[name] = torch.from_numpy(a)
    return out
