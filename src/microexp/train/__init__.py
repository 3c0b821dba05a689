"""Training and evaluation: protocols (splits + epoch policy), the loop, metrics, ``evaluate``.

The names below are imported on first use, so importing one light submodule (``microexp.train.executor``) does
not load torch through this package. ``evaluate`` is the submodule :mod:`microexp.train.evaluate` (its function is
``microexp.train.evaluate.evaluate``): a lazily re-exported function of the same name would be replaced by the
submodule whenever that is imported first.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"RunResult": "microexp.train.evaluate", "compute_metrics": "microexp.train.metrics",
         "Fold": "microexp.train.protocols", "make_folds": "microexp.train.protocols"}

__all__ = ["Fold", "RunResult", "compute_metrics", "make_folds"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'microexp.train' has no attribute {name!r}")
