"""Joshi 2021's training-set augmentation (docs/models.md §2; the seed's ``utils/augmentation.py``).

Two schemes, ``train.augment``:

- ``joshi3d``: one parameter set per clip, applied to all its frames (and to every stream of the sample);
- ``joshi2d``: one parameter set per frame (each frame of each clip draws its own).

A draw picks a direction (left or right), a shift of 1-15 px (2D: 1-17), an angle uniform(1, 13) or
uniform(348, 359) degrees (2D: (1, 15) or (345, 359)), a noise mean uniform(1, 6) and sigma uniform(1, 10) (2D: (1, 7),
(1, 12)); then translate, rotate and add noise each fire with probability 0.5, in that order, the coins redrawn
until at least one fires (the seed's ``while flag == 0`` loop). The transforms, as the seed codes them:

- translate along the width with wrap-around; for "right" the wrapped strip is flipped left-right (the seed's
  quirk), for "left" it is not (:func:`translate`);
- rotate with ``scipy.ndimage.rotate(reshape=False)`` (cubic spline, zero outside), then every pixel <= 0 takes the
  mean of the frame's top-left 15x15 patch before the rotation (per channel; a pixel is filled when any channel is
  <= 0);
- add N(mean, sigma) noise and clip to [0, 255].

**Value scale.** The parameters are in the seed's units: 0-255 pixel values on 128-pixel-wide frames. Joshi's
models read raw 0-255 values (``preprocess.normalise: none``), where they apply as is. For tensors in another fixed
range (``minus1to1``/``scale127``: [-1, 1]) pass ``value_range``: the noise mean and sigma scale by
(hi - lo) / 255, the fill threshold and the clip bounds become lo and hi, and ``scipy`` fills outside the image with
lo. Unbounded normalisations (z-score, global) have no such mapping: :func:`value_range` refuses them. Geometry
scales with the frame width: shift and patch are ``round(px * width / 128)`` (at least 1), exact at 128.

**Extra copies** (:func:`copies`, :func:`augment_set`): the seed balances classes by adding augmented copies per
class ahead of training. ``joshi3d``: every clip gets a fixed number of copies (7-class: happiness 1, surprise 3,
anger 0, fear 5, disgust 5, contempt 4, sadness 7, about 379 SAMM samples in all; binary: positive 2, negative 0).
``joshi2d``: a coin per frame; on heads the frame gets sadness 4, fear/disgust/contempt 3, surprise 2,
happiness 1, anger 0 copies (binary: positive 2). Leak-free use augments the training fold only; the seed
augmented before the split (the ``augment-before-split`` reproduce switch).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from microexp.errors import ConfigError

NAMES = ("none", "joshi3d", "joshi2d")
PIXELS = (0.0, 255.0)
REFERENCE_WIDTH = 128  # the seed's frame width: shifts and the fill patch are in pixels at this width
FILL_PATCH = 15


@dataclass(frozen=True)
class Ranges:
    """What one augmentation draw samples from (the seed's units: pixels at width 128, values 0-255)."""

    shift: tuple[int, int]  # inclusive, like random.randint
    angles: tuple[tuple[float, float], tuple[float, float]]  # one of the two intervals, chosen by a coin
    noise_mean: tuple[float, float]
    noise_sigma: tuple[float, float]
    per_frame: bool  # joshi2d: every frame draws its own parameters


RANGES = {
    "joshi3d": Ranges((1, 15), ((1.0, 13.0), (348.0, 359.0)), (1.0, 6.0), (1.0, 10.0), per_frame=False),
    "joshi2d": Ranges((1, 17), ((1.0, 15.0), (345.0, 359.0)), (1.0, 7.0), (1.0, 12.0), per_frame=True),
}
# extra augmented copies per original sample, by class name (joshi2d: given when the sample's coin lands heads)
COPIES = {
    "joshi3d": {"multiclass": {"happiness": 1, "surprise": 3, "anger": 0, "fear": 5, "disgust": 5, "contempt": 4,
                               "sadness": 7},
                "binary": {"positive": 2, "negative": 0}},
    "joshi2d": {"multiclass": {"happiness": 1, "surprise": 2, "anger": 0, "fear": 3, "disgust": 3, "contempt": 3,
                               "sadness": 4},
                "binary": {"positive": 2, "negative": 0}},
}
_RANGES_BY_NORMALISE = {"none": PIXELS, "minus1to1": (-1.0, 1.0), "scale127": (-1.0, 1.0)}


@dataclass(frozen=True)
class Draw:
    """One parameter set and which transforms fire."""

    direction: str  # "left" | "right"
    shift: int
    angle: float
    noise_mean: float
    noise_sigma: float
    translate: bool
    rotate: bool
    noise: bool


def _check(name: str) -> None:
    if name not in NAMES:
        raise ConfigError(f"train.augment={name!r} is not one of {list(NAMES)}")


def value_range(normalise: str) -> tuple[float, float]:
    """The fixed value range of tensors normalised with ``preprocess.normalise=normalise``; ConfigError when the
    normalisation has none (the seed's noise and fill are defined on pixel values)."""
    try:
        return _RANGES_BY_NORMALISE[normalise]
    except KeyError:
        raise ConfigError(f"train.augment needs pixel values in a fixed range (preprocess.normalise one of "
                          f"{sorted(_RANGES_BY_NORMALISE)}), not normalise={normalise!r}: the Joshi noise and "
                          "rotation fill are defined on 0-255 pixels") from None


def check_augment(name: str, preprocess: Any) -> None:
    """Refuse ``train.augment=name`` on tensors that are not 0-255 pixels, for callers that augment without a
    ``value_range`` (``preprocess``: the run's PreprocessConfig, or None: not checked). ``run_fold`` passes
    :func:`value_range` itself (:func:`microexp.train.folds.augment_training_rows`)."""
    if name == "none" or preprocess is None:
        return
    if value_range(preprocess.normalise) != PIXELS:
        raise ConfigError(f"train.augment={name} adds 0-255 pixel noise; preprocess.normalise="
                          f"{preprocess.normalise!r} gives other values (use preprocess.normalise=none, as Joshi)")


def draw(ranges: Ranges, rng: np.random.Generator) -> Draw:
    """One parameter set, drawn as the seed does (all parameters first, then coins until one transform fires)."""
    direction = ("right", "left")[int(rng.integers(0, 2))]
    shift = int(rng.integers(ranges.shift[0], ranges.shift[1] + 1))
    angles = [float(rng.uniform(*ranges.angles[0])), float(rng.uniform(*ranges.angles[1]))]
    angle = angles[int(rng.integers(0, 2))]
    mean, sigma = float(rng.uniform(*ranges.noise_mean)), float(rng.uniform(*ranges.noise_sigma))
    while True:
        coins = rng.integers(0, 2, size=3).astype(bool)
        if coins.any():
            return Draw(direction, shift, angle, mean, sigma, *map(bool, coins))


def translate(x: np.ndarray, shift: int, direction: str) -> np.ndarray:
    """Shift along the last axis (width) with wrap-around. "right": the strip leaving on the right re-enters on the
    left flipped left-right (the seed's quirk); "left": the strip re-enters on the right unflipped."""
    if not 0 < shift < x.shape[-1]:
        raise ValueError(f"shift {shift} must be in 1..{x.shape[-1] - 1} for width {x.shape[-1]}")
    if direction == "left":
        return np.roll(x, -shift, axis=-1)
    if direction != "right":
        raise ValueError(f"direction must be 'left' or 'right', got {direction!r}")
    out = np.empty_like(x)
    out[..., shift:] = x[..., :-shift]
    out[..., :shift] = x[..., -shift:][..., ::-1]
    return out


def rotate(x: np.ndarray, angle: float, lo: float = 0.0, patch: int = FILL_PATCH) -> np.ndarray:
    """Rotate every (H, W) plane of ``x`` (..., C, H, W) by ``angle`` degrees (scipy cubic spline, same size).
    Pixels <= ``lo`` afterwards (outside corners, spline undershoot) take the mean of the plane's top-left
    ``patch`` x ``patch`` square before rotation; with several channels (axis -3) a pixel is filled when any
    channel is <= lo, each channel with its own mean."""
    bg = x[..., :patch, :patch].mean(axis=(-1, -2), keepdims=True)
    out = ndimage.rotate(x, angle, axes=(-1, -2), reshape=False, order=3, mode="constant", cval=lo)
    mask = np.broadcast_to((out <= lo).any(axis=-3, keepdims=True), out.shape)
    return np.where(mask, np.broadcast_to(bg, out.shape), out).astype(x.dtype, copy=False)


def _scaled(px: int, width: int) -> int:
    return max(1, round(px * width / REFERENCE_WIDTH))


def transform(x: np.ndarray, d: Draw, rng: np.random.Generator, value_range: tuple[float, float] = PIXELS,
              ) -> np.ndarray:
    """Apply draw ``d`` to ``x`` (..., C, H, W): every plane gets the same parameters, fresh noise per pixel."""
    lo, hi = value_range
    width = x.shape[-1]
    if d.translate:
        x = translate(x, min(_scaled(d.shift, width), width - 1), d.direction)
    if d.rotate:
        x = rotate(x, d.angle, lo, _scaled(FILL_PATCH, width))
    if d.noise:
        unit = (hi - lo) / 255.0
        x = np.clip(x + rng.normal(d.noise_mean * unit, d.noise_sigma * unit, x.shape), lo, hi)
    return x.astype(np.float32, copy=False)


def _sample(streams: dict[str, np.ndarray], i: int, ranges: Ranges, rng: np.random.Generator,
            value_range: tuple[float, float]) -> None:
    """Augment row ``i`` of every stream in place: one draw per row (joshi3d) or per frame (joshi2d)."""
    if ranges.per_frame:
        frames = {k: v.shape[2] for k, v in streams.items()}
        if len(set(frames.values())) > 1:
            raise ConfigError(f"joshi2d augments frame by frame; the streams have different frame counts {frames}")
        for t in range(next(iter(frames.values()))):
            d = draw(ranges, rng)
            for v in streams.values():
                v[i, :, t] = transform(v[i, :, t], d, rng, value_range)  # (C, H, W)
    else:
        d = draw(ranges, rng)
        for v in streams.values():
            # (C, T, H, W) -> (T, C, H, W): planes share the draw, channels stay on axis -3 for the fill rule
            v[i] = transform(v[i].swapaxes(0, 1), d, rng, value_range).swapaxes(0, 1)


def _as_numpy(inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for k, v in inputs.items():
        a = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        if a.ndim != 5:
            raise ValueError(f"stream {k!r}: expected (N, C, T, H, W), got shape {a.shape}")
        out[k] = a.astype(np.float32, copy=True)
    return out


def _like(arrays: dict[str, np.ndarray], inputs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: torch.from_numpy(a).to(inputs[k].device, inputs[k].dtype) if isinstance(inputs[k], torch.Tensor)
            else a for k, a in arrays.items()}


def _rng(generator: np.random.Generator | int) -> np.random.Generator:
    return generator if isinstance(generator, np.random.Generator) else np.random.default_rng(generator)


def apply(name: str, inputs: Mapping[str, Any], y: Any, generator: np.random.Generator | int,
          *, value_range: tuple[float, float] = PIXELS) -> tuple[dict[str, Any], Any]:
    """Augment every row of a batch: ``inputs`` maps stream names to (N, C, T, H, W) tensors or arrays; each row
    gets one draw (``joshi3d``) or one per frame (``joshi2d``). Returns new inputs of the same kind, shape, device
    and dtype, and ``y`` unchanged; ``none`` returns both as given. Deterministic given the generator's state."""
    _check(name)
    if name == "none":
        return dict(inputs), y
    rng, ranges = _rng(generator), RANGES[name]
    arrays = _as_numpy(inputs)
    n = {len(a) for a in arrays.values()}
    for i in range(n.pop() if n else 0):
        _sample(arrays, i, ranges, rng, value_range)
    return _like(arrays, inputs), y


def copies(name: str, class_names: list[str] | tuple[str, ...]) -> dict[str, int]:
    """Extra augmented copies per original sample for each class (``joshi2d``: on a coin's heads). The table is the
    seed's SAMM one: binary (positive/negative) or 7-class (happiness ... sadness); other class names are a
    ConfigError (no silent zero)."""
    _check(name)
    if name == "none":
        return {c: 0 for c in class_names}
    tables = COPIES[name]
    for table in tables.values():
        if set(class_names) <= set(table):
            return {c: table[c] for c in class_names}
    raise ConfigError(f"train.augment={name}: the seed gives extra copies for the classes "
                      f"{sorted(tables['binary'])} or {sorted(tables['multiclass'])}; this run's classes "
                      f"{list(class_names)} have no copy count")


def augment_set(name: str, inputs: Mapping[str, Any], y: Any, class_names: list[str] | tuple[str, ...],
                generator: np.random.Generator | int, *, value_range: tuple[float, float] = PIXELS,
                with_source: bool = False) -> tuple[Any, ...]:
    """The training set enlarged as the seed does it: the originals first (unchanged), then for each original row
    its :func:`copies` count of augmented copies (``joshi2d``: only when that row's coin lands heads), each copy
    with its own draw. A row is a clip, or a frame when the frames are the samples (the ``frames-vote`` trainer).
    Returns (inputs, y), or (inputs, y, source) with ``with_source``: the original row of every returned row
    (``arange(N)`` then each copy's original), so callers can carry records and subjects along."""
    counts = copies(name, class_names)
    labels = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    rng = _rng(generator)
    extra = np.array([counts[class_names[int(c)]] for c in labels], dtype=np.int64)
    if name == "joshi2d":
        extra *= rng.integers(0, 2, size=len(labels))
    source = np.repeat(np.arange(len(labels)), extra)
    everything = np.concatenate([np.arange(len(labels)), source])
    if name == "none" or len(source) == 0:
        return (dict(inputs), y, everything) if with_source else (dict(inputs), y)
    arrays = _as_numpy({k: v[torch.as_tensor(source)] if isinstance(v, torch.Tensor) else np.asarray(v)[source]
                        for k, v in inputs.items()})
    for i in range(len(source)):
        _sample(arrays, i, RANGES[name], rng, value_range)
    added = _like(arrays, inputs)
    out = {k: torch.cat([v, added[k]]) if isinstance(v, torch.Tensor) else np.concatenate([np.asarray(v), added[k]])
           for k, v in inputs.items()}
    new_y = labels[everything]
    new_y = torch.as_tensor(new_y, dtype=y.dtype) if isinstance(y, torch.Tensor) else new_y
    return (out, new_y, everything) if with_source else (out, new_y)
