"""The data-side LEAKY reproduction switches (``reproduce``): the clip set as a seed's reference code built it
before splitting. Each returns the rows of the prepared clips (with repeats) and their labels, so that records,
streams and subjects are taken in the same order. :func:`microexp.runs.leaks` lists them on every run using them."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from microexp.errors import ConfigError

SMIC_CLASSES = ("negative", "positive", "surprise")


def smic_surprise_duplication(y: np.ndarray, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Rows and labels as the FuseNet SMIC scripts built them (Reddy et al. 2019, reference code): the clips
    in class blocks negative, positive, surprise, every surprise clip appended twice in a row; labels filled
    by index for the first N rows only (N = the original clip count, e.g. 66 + 47 + 43 = 156), the remaining
    rows (the second half of the surprise block, 43 rows) left at 0 = negative. 66 + 47 + 2*43 = 199 rows."""
    if sorted(classes) != sorted(SMIC_CLASSES):
        raise ConfigError(f"reproduce smic-surprise-duplication needs the SMIC classes {list(SMIC_CLASSES)}, "
                          f"got {list(classes)}")
    y = np.asarray(y)
    code = [classes.index(c) for c in SMIC_CLASSES]
    blocks = [np.flatnonzero(y == k) for k in code]
    rows = np.concatenate([blocks[0], blocks[1], np.repeat(blocks[2], 2)])
    labels = np.full(len(rows), code[0], dtype=y.dtype)
    labels[:len(y)] = np.concatenate([np.full(len(b), k, dtype=y.dtype) for b, k in zip(blocks, code, strict=True)])
    return rows, labels


Augment = Callable[[str, dict[str, torch.Tensor], torch.Tensor, np.random.Generator], Any]


def augment_before_split(name: str, inputs: dict[str, torch.Tensor], y: np.ndarray, seed: int,
                         apply: Augment | None = None) -> tuple[np.ndarray, dict[str, torch.Tensor], np.ndarray]:
    """Joshi 2021 (``main.py``): the augmentation ``name`` applied to every clip once, before the split, so the
    copies of a test clip can be in training. Each clip goes through ``microexp.train.augment.apply`` as a batch
    of one; every row that comes back (the clip and/or its copies, as the augmentation decides) keeps that clip's
    record and subject. Returns (source row of each new row, new streams, new labels)."""
    if apply is None:
        apply = importlib.import_module("microexp.train.augment").apply
    rng = np.random.default_rng(seed)
    rows: list[int] = []
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in inputs}
    labels: list[torch.Tensor] = []
    y_t = torch.as_tensor(np.asarray(y))
    for i in range(len(y)):
        batch, target = apply(name, {k: v[i:i + 1] for k, v in inputs.items()}, y_t[i:i + 1], rng)
        rows += [i] * len(target)
        for k in parts:
            parts[k].append(batch[k])
        labels.append(torch.as_tensor(target))
    return (np.asarray(rows, dtype=int), {k: torch.cat(v) for k, v in parts.items()},
            torch.cat(labels).numpy().astype(np.asarray(y).dtype))
