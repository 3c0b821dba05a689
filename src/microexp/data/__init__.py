"""Datasets: annotation files + frame folders -> clip records -> class protocols.

The names below are imported on first use, so that reading :mod:`microexp.data.builtin` (the dataset names, for
``--help``) does not load pandas and OpenCV through this package.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"ClipRecord": "microexp.data.records", "ClipSet": "microexp.data.records",
         "Exclusion": "microexp.data.records", "DatasetSpec": "microexp.data.registry",
         "dataset_names": "microexp.data.registry", "get_dataset": "microexp.data.registry",
         "load_dataset": "microexp.data.registry", "register_dataset": "microexp.data.registry",
         "Row": "microexp.data._common"}  # one parsed annotation row (the synthetic trees are built from rows)

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'microexp.data' has no attribute {name!r}")
