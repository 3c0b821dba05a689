"""Typed preprocessing configuration. One config object drives training and inference alike.

A config produces one or more named *streams* (``clip``, ``eyes``, ``mouth``, ``flow``, ...), each a float32
array shaped (C, T, H, W). Models declare which streams they read (see :mod:`microexp.models.registry`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from microexp.errors import ConfigError

SELECTIONS = ("whole", "onset_offset", "onset_apex", "keyframes")
TEMPORAL = ("uniform", "first", "window", "tim", "none")
NORMALISE = ("zscore", "global", "minus1to1", "none")
FACE = ("none", "dlib")
ALIGN = ("none", "onset", "per-frame")


@dataclass(frozen=True)
class StreamConfig:
    """One model input stream. ``region``: face | whole | eyes | mouth | roi1..roi6; ``kind``: raw | saliency |
    flow | strain."""

    name: str = "clip"
    region: str = "face"
    size: tuple[int, int] = (64, 64)  # (rows, cols)
    kind: str = "raw"


@dataclass(frozen=True)
class PreprocessConfig:
    """How a clip record becomes model input.

    selection: which frames of the record are used (``whole`` folder, ``onset_offset``, ...).
    temporal / frames: how the selected frames become exactly ``frames`` frames (``uniform`` resampling,
    ``first`` N in true order, a fixed ``window`` of absolute positions, ``tim`` interpolation).
    face / align: face detection + alignment (``none`` when frames are already face crops).
    normalise: ``zscore`` per clip, ``minus1to1`` per clip, ``global`` (the seed code's dataset-wide mean subtract
    / max divide: fitted on the training fold only, by the trainer), or ``none``.
    """

    streams: tuple[StreamConfig, ...] = (StreamConfig(),)
    frames: int = 96
    selection: str = "onset_offset"
    temporal: str = "uniform"
    window: tuple[int, int] | None = None
    face: str = "none"
    align: str = "none"
    normalise: str = "zscore"
    gray: str = "correct"  # "code": the seed's BGR/RGB swap (reference-models.md §1.3)
    extra: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        for name, allowed in (("selection", SELECTIONS), ("temporal", TEMPORAL), ("normalise", NORMALISE),
                              ("face", FACE), ("align", ALIGN)):
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"preprocess.{name}={value!r} is not one of {list(allowed)}")
        if self.frames < 1:
            raise ConfigError(f"preprocess.frames={self.frames} must be positive")
        if not self.streams:
            raise ConfigError("preprocess.streams is empty")

    def stream(self, name: str) -> StreamConfig:
        for s in self.streams:
            if s.name == name:
                return s
        raise ConfigError(f"preprocessing has no stream {name!r} (streams: {[s.name for s in self.streams]})")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["streams"] = [dict(s, size=list(s["size"])) for s in d["streams"]]
        d["window"] = list(self.window) if self.window else None
        d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessConfig:
        d = dict(d)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown preprocess option(s) {unknown}")
        if "streams" in d:
            d["streams"] = tuple(StreamConfig(**{**s, "size": tuple(s.get("size", (64, 64)))}) for s in d["streams"])
        if d.get("window") is not None:
            d["window"] = tuple(d["window"])
        if "extra" in d:
            d["extra"] = tuple(sorted(dict(d["extra"]).items()))
        return cls(**d)

    def with_overrides(self, **overrides: Any) -> PreprocessConfig:
        return replace(self, **overrides)
