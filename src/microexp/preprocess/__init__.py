"""Face preprocessing: detection + 68 landmarks, alignment, face and region crops, temporal normalisation,
optical flow and strain, normalisation; cached on disk and parallel over clips.

The names below are imported on first use, so ``microexp.preprocess.config`` loads without OpenCV.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"ClipCache": "cache", "default_cache_dir": "cache", "PreprocessConfig": "config", "StreamConfig": "config",
         "GlobalNormaliser": "normalise", "normalise_clip": "normalise", "Prepared": "pipeline",
         "preprocess_clip": "pipeline", "preprocess_set": "pipeline"}

__all__ = ["ClipCache", "GlobalNormaliser", "PreprocessConfig", "Prepared", "StreamConfig", "default_cache_dir",
           "normalise_clip", "preprocess_clip", "preprocess_set"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"microexp.preprocess.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'microexp.preprocess' has no attribute {name!r}")
