"""The data-side LEAKY reproduction switches (``reproduce``): the clip set as a seed's reference code built it
before splitting. Each returns the rows of the prepared clips (with repeats) and their labels, so that records,
streams and subjects are taken in the same order. :func:`microexp.runs.leaks` lists them on every run using them."""

from __future__ import annotations

import importlib

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


def augment_before_split(name: str, inputs: dict[str, torch.Tensor], y: np.ndarray, seed: int,
                         classes: list[str], normalise: str) -> tuple[np.ndarray, dict[str, torch.Tensor], np.ndarray]:
    """Joshi 2021 (``main.py``): the seed's augmented copies (:func:`microexp.train.augment.augment_set`) made
    for every clip once, before the split, so the copies of a test clip can be in training. Every copy keeps its
    clip's record and subject. Returns (source row of each new row, new streams, new labels)."""
    augment = importlib.import_module("microexp.train.augment")
    out, labels, source = augment.augment_set(name, inputs, np.asarray(y), classes, np.random.default_rng(seed),
                                              value_range=augment.value_range(normalise), with_source=True)
    return np.asarray(source, dtype=int), out, np.asarray(labels).astype(np.asarray(y).dtype)
