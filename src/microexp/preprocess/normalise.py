"""Value normalisation: per-clip z-score, per-clip [-1, 1], the fixed x/127.5 - 1 of the Aouayeb code, the fixed
ImageNet per-channel statistics of MMNet's transforms, and the
seed code's global mean-subtract / max-divide, which must be fitted on training data only
(:class:`GlobalNormaliser`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from microexp.errors import ConfigError

MODES = ("zscore", "minus1to1", "scale127", "imagenet", "global", "none")
# torchvision's ImageNet statistics (R, G, B) of 0-1 values: ToTensor + Normalize as MMNet's transforms
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalise_clip(x: np.ndarray, mode: str) -> np.ndarray:
    """Per-clip normalisation; ``global`` and ``none`` leave values as they are (global is a fitted step).
    ``scale127`` maps the 0-255 pixel range to [-1, 1] with fixed constants (no statistics of the clip)."""
    if mode == "zscore":
        return ((x - x.mean()) / (x.std() + 1e-6)).astype(np.float32)
    if mode == "minus1to1":
        lo, hi = float(x.min()), float(x.max())
        return (2.0 * (x - lo) / max(hi - lo, 1e-6) - 1.0).astype(np.float32)
    if mode == "scale127":
        return (x / np.float32(127.5) - np.float32(1.0)).astype(np.float32)
    if mode == "imagenet":  # x/255 then (x - mean) / std per R, G, B channel; one gray channel: the means of both
        c = x.shape[0]
        mean = np.array(IMAGENET_MEAN if c == 3 else [np.mean(IMAGENET_MEAN)] * c, np.float32)
        std = np.array(IMAGENET_STD if c == 3 else [np.mean(IMAGENET_STD)] * c, np.float32)
        shape = (c,) + (1,) * (x.ndim - 1)
        return ((x / np.float32(255.0) - mean.reshape(shape)) / std.reshape(shape)).astype(np.float32)
    if mode in ("global", "none"):
        return x.astype(np.float32, copy=False)
    raise ConfigError(f"unknown normalisation {mode!r} (known: {list(MODES)})")


@dataclass
class GlobalNormaliser:
    """The seed's normalisation (docs/models.md §1.3): subtract one scalar mean over all samples and
    pixels, then divide by the maximum of the *centred* values (the Reddy scripts: ``x -= mean(x); x /= max(x)``,
    so the largest value becomes exactly 1); one (mean, max) per stream, as the fusion scripts do per stream. The seed fits it on the
    whole data set before the split (a leak); here ``fit`` takes the training rows only and ``transform``
    applies the training statistics to any rows.

        norm = GlobalNormaliser().fit(prepared.streams, rows=train_rows)
        train = norm.transform(prepared.streams, rows=train_rows)
        test = norm.transform(prepared.streams, rows=test_rows)

    The one implementation: training (:func:`microexp.train.folds.run_fold`), ``explain`` and ``predict`` (the
    checkpoint's statistics, folded into the exported model by :meth:`apply`) all use it. Arrays may be numpy
    arrays or CPU torch tensors; ``transform`` returns the same kind. A stream whose training values are all
    equal has a zero maximum: its scale is 1.0 (the centred values stay 0) rather than a division by zero.
    """

    mean: dict[str, float] = field(default_factory=dict)
    scale: dict[str, float] = field(default_factory=dict)

    def fit(self, streams: Mapping[str, Any], rows: np.ndarray | None = None) -> GlobalNormaliser:
        for name, arr in streams.items():
            x = np.asarray(arr) if rows is None else np.asarray(arr)[np.asarray(rows)]
            if x.size == 0:
                raise ConfigError(f"cannot fit the global normalisation of stream {name!r} on no training rows")
            mean = float(x.mean(dtype=np.float64))
            self.mean[name] = mean
            self.scale[name] = float(np.max(x - mean)) or 1.0
        return self

    def apply(self, name: str, x: Any) -> Any:
        """One stream normalised with the fitted statistics; works on numpy arrays and torch tensors alike
        (inside a torch module too, where the statistics become constants of an exported graph)."""
        return (x - self.mean[name]) / self.scale[name]

    def transform(self, streams: Mapping[str, Any], rows: np.ndarray | None = None) -> dict[str, Any]:
        if not self.mean:
            raise ConfigError("GlobalNormaliser.transform before fit")
        out = {}
        for name, arr in streams.items():
            x = arr if rows is None else arr[np.asarray(rows)]
            y = self.apply(name, x)
            out[name] = y.astype(np.float32) if isinstance(y, np.ndarray) else y
        return out

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {"mean": dict(self.mean), "scale": dict(self.scale)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Mapping[str, float]]) -> GlobalNormaliser:
        return cls(dict(d["mean"]), dict(d["scale"]))
