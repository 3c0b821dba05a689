"""From a per-frame score curve to predicted intervals, and the choices fitted on training subjects only.

- Window length k per expression type: ``k = (mean ground-truth length + 1) / 2`` of the *training* intervals
  (the rule of the shallow optical-flow spotters, applied per fold instead of on the whole data set), snapped to a
  ladder of values so that folds share their flow computations.
- The interval of a peak at frame a: ``[a - before, a + after]`` with ``before`` / ``after`` the mean
  onset-to-apex / apex-to-offset durations of the training intervals.
- Peaks: local maxima of the smoothed score at least k apart and above a threshold; the threshold is the value
  of a grid (quantiles of the training scores) that gives the best F1 on the training videos.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from microexp.errors import ConfigError
from microexp.spot.groundtruth import Interval
from microexp.spot.metrics import Spot, score

K_LADDER = (2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 19, 22, 26, 30, 35, 40, 47, 55, 64, 75, 88, 103, 120, 140, 165,
            192, 225, 263, 307, 360, 420)


@dataclass(frozen=True)
class TypeParams:
    """What a fold fitted for one expression type."""

    type: str
    k: int
    before: int
    after: int
    threshold: float = 0.0

    def to_dict(self) -> dict[str, float | int | str]:
        return {"type": self.type, "k": self.k, "before": self.before, "after": self.after,
                "threshold": self.threshold}


def snap_k(k: float) -> int:
    return min(K_LADDER, key=lambda v: (abs(np.log(v) - np.log(max(k, 1.0))), v))


def fit_shape(train: Sequence[Interval], type: str, fps: float) -> TypeParams:
    """k, before, after from the training intervals of one type (defaults from the field's typical durations when
    the training subjects have none: micro 0.4 s, macro 1.5 s)."""
    ivs = [i for i in train if i.type == type]
    if ivs:
        mean_len = float(np.mean([i.length for i in ivs]))
        before = float(np.mean([i.peak - i.onset for i in ivs]))
    else:
        mean_len = (0.4 if type == "micro" else 1.5) * fps
        before = mean_len / 3
    after = max(mean_len - 1 - before, 0.0)
    return TypeParams(type, snap_k((mean_len + 1) / 2), int(round(before)), int(round(after)))


def fit_scales(train: Sequence[Interval], type: str, fps: float, scales: int = 1) -> list[TypeParams]:
    """One :class:`TypeParams` per window scale. ``scales`` 1: the mean shape (:func:`fit_shape`). More: the
    training lengths' quantiles spread evenly (2 scales: the 25th and 75th percentile), each with its own k and
    the mean onset-to-apex share of the length; scales whose k coincide are merged. Long expressions need long
    windows: MDMD's head-to-tail difference cancels over a hold longer than k, and an interval of the mean length
    misses the long and the short ones (IoU < 0.5)."""
    mean = fit_shape(train, type, fps)
    ivs = [i for i in train if i.type == type]
    if scales <= 1 or len(ivs) < 2 * scales:
        return [mean]
    lengths = np.array([i.length for i in ivs], np.float64)
    share = float(np.mean([(i.peak - i.onset) / max(i.length - 1, 1) for i in ivs]))
    out: list[TypeParams] = []
    for q in np.linspace(0.25, 0.75, scales):
        length = float(np.quantile(lengths, q))
        before = int(round(share * (length - 1)))
        p = TypeParams(type, snap_k((length + 1) / 2), before, max(int(round(length - 1 - before)), 0))
        if all(o.k != p.k for o in out):
            out.append(p)
    return out


def centred(p: TypeParams) -> TypeParams:
    """The same window and interval length, the interval centred on the peak."""
    length = p.before + p.after
    return TypeParams(p.type, p.k, length // 2, length - length // 2, p.threshold)


def scale_key(type: str, index: int) -> str:
    """The name of a window scale's model in a saved spotter: the type for the first scale, ``type@i`` after."""
    return type if index == 0 else f"{type}@{index}"


def merge_scales(spots: Sequence[Sequence[Spot]], margins: Sequence[Sequence[float]], min_iou: float = 0.3
                 ) -> tuple[list[Spot], list[float]]:
    """The spots of several window scales of one type as one list, with the margin of each: where spots of
    different scales overlap (IoU >= ``min_iou``) the one furthest above its own threshold (``margins``: per spot,
    its score minus the threshold over the spread of its curve) is kept."""
    from microexp.spot.metrics import iou

    ranked = sorted(((m, i, s) for i, (ss, ms) in enumerate(zip(spots, margins, strict=True))
                     for s, m in zip(ss, ms, strict=True)), key=lambda x: -x[0])
    kept: list[tuple[int, Spot, float]] = []
    for m, i, s in ranked:
        if all(j == i or o.key != s.key or iou((o.onset, o.offset), (s.onset, s.offset)) < min_iou
               for j, o, _ in kept):
            kept.append((i, s, m))
    kept.sort(key=lambda x: (x[1].key, x[1].onset))
    return [s for _, s, _ in kept], [m for _, _, m in kept]


def one_type(spots: Sequence[Spot], margin: Sequence[float], min_share: float = 0.5,
             same_type: bool = False) -> list[Spot]:
    """Spots of all types of one video set as one list where a micro and a macro spot that cover one movement
    (they share at least ``min_share`` of the shorter one's frames) become the one furthest above its own
    threshold (``margin``: as :func:`margins`). One facial movement is one event; without this a micro-expression
    that also lifts the macro curve above its threshold is a false macro alarm, and a macro onset a micro one.

    ``same_type`` (``overlap="one-spot"``): two spots of one type that share any frame are one movement too, and
    only the one furthest above its threshold is kept. Peaks need only be k apart while an interval is about 2k
    long, so one held expression can give two overlapping spots of one window scale (its rise and its fall, or
    the hold's flank), of which at most one can hit."""
    ranked = sorted(zip(margin, range(len(spots)), spots, strict=True), key=lambda x: (-x[0], x[1]))
    kept: list[Spot] = []
    for _, _, sp in ranked:
        if all(o.key != sp.key or (_shared(o, sp) <= 0 if o.type == sp.type and same_type else
                                   o.type == sp.type or _shared(o, sp) < min_share) for o in kept):
            kept.append(sp)
    return sorted(kept, key=lambda s: (s.key, s.onset, s.type))


def one_movement(spots: Sequence[Spot], margin: Sequence[float], overlap: str) -> list[Spot]:
    """The ``overlap`` setting (contract.spotting.OVERLAPS) applied: ``both`` keeps every spot, ``one-type`` and
    ``one-spot`` are :func:`one_type` without and with ``same_type``."""
    return list(spots) if overlap == "both" else one_type(spots, margin, same_type=overlap == "one-spot")


def _shared(a: Spot, b: Spot) -> float:
    inter = min(a.offset, b.offset) - max(a.onset, b.onset) + 1
    return max(inter, 0) / min(a.offset - a.onset + 1, b.offset - b.onset + 1)


def margins(curve: Curve, found: Sequence[Spot], threshold: float) -> list[float]:
    """How far above the threshold each spot's peak is, in units of the curve's spread (comparable across
    scales)."""
    finite = curve.score[np.isfinite(curve.score)]
    spread = float(finite.std()) if len(finite) > 1 else 1.0
    return [(s.score - threshold) / (spread or 1.0) for s in found]


def smooth(x: np.ndarray, width: int) -> np.ndarray:
    if width <= 1 or len(x) == 0:
        return x
    kernel = np.ones(width) / width
    return np.convolve(x, kernel, mode="same")


@dataclass
class Curve:
    """One video's score curve for one type (position t <-> frame ``numbers[t]``); NaN where not scored."""

    dataset: str
    subject: str
    video: str
    numbers: np.ndarray
    score: np.ndarray
    veto: np.ndarray | None = None  # positions where a peak is not an expression (blinks): no spot there


def spots_of(curve: Curve, params: TypeParams, threshold: float | None = None) -> list[Spot]:
    """Peaks of ``curve`` above the threshold, at least k apart, as intervals clipped to the video's frames."""
    from scipy.signal import find_peaks

    th = params.threshold if threshold is None else threshold
    s = np.nan_to_num(curve.score, nan=-np.inf)
    if len(s) == 0:
        return []
    peaks, _ = find_peaks(np.concatenate([[-np.inf], s, [-np.inf]]), height=th, distance=max(params.k, 1))
    first, last = int(curve.numbers[0]), int(curve.numbers[-1])
    out = []
    for p in peaks - 1:
        if curve.veto is not None and curve.veto[p]:
            continue  # the peak of a blink: it still keeps other peaks k away, as one movement
        apex = int(curve.numbers[p])
        out.append(Spot(curve.dataset, curve.subject, curve.video, max(first, apex - params.before),
                        min(last, apex + params.after), params.type, float(curve.score[p])))
    return out


def fit_threshold(curves: Sequence[Curve], gt: Sequence[Interval], params: TypeParams, n_grid: int = 40) -> float:
    """The threshold of a quantile grid of the curves' values with the best F1 on ``gt`` (ties: the higher)."""
    values = np.concatenate([c.score[np.isfinite(c.score)] for c in curves]) if curves else np.zeros(0)
    if len(values) == 0:
        raise ConfigError("no scored frames on the training videos to fit a threshold on")
    grid = np.unique(np.quantile(values, np.linspace(0.5, 0.9995, n_grid)))
    typed = [i for i in gt if i.type == params.type]
    best, best_f1 = float(grid[-1]), -1.0
    for th in grid:
        preds = [s for c in curves for s in spots_of(c, params, float(th))]
        f1 = score(typed, preds).get(type=params.type).f1
        if f1 >= best_f1:
            best, best_f1 = float(th), f1
    return best


def random_shift(onset: int, offset: int, span: tuple[int, int] | None, rng: np.random.Generator) -> int:
    """How far to move the interval ``onset..offset`` to a uniformly random place of its video's frames
    ``span`` (same length; 0 where it does not fit or the span is unknown): the one rule of both controls."""
    if span is None:
        return 0
    room = span[1] - (offset - onset + 1) + 1 - span[0]
    return span[0] + int(rng.integers(0, room + 1)) - onset if room >= 0 else 0


def shuffle_intervals(gt: Sequence[Interval], spans: Mapping[tuple[str, str], tuple[int, int]],
                      rng: np.random.Generator) -> list[Interval]:
    """The shuffled-interval control: each interval moved to a random place of its video (same length and apex
    offset, inside the video's frames)."""
    from dataclasses import replace

    out = []
    for iv in gt:
        shift = random_shift(iv.onset, iv.offset, spans.get(iv.key), rng)
        out.append(replace(iv, onset=iv.onset + shift, offset=iv.offset + shift,
                           apex=None if iv.apex is None else iv.apex + shift))
    return out


def shuffled_prediction_f1(gt: Sequence[Interval], preds: Sequence[Spot],
                           spans: Mapping[tuple[str, str], tuple[int, int]], rng: np.random.Generator,
                           draws: int, type: str | None = None) -> np.ndarray:
    """The F1 of each of ``draws`` shuffles of the predictions: every predicted interval moved to a random place
    of its video (same length, same video)."""
    from dataclasses import replace

    f1 = []
    for _ in range(draws):
        moved = []
        for p in preds:
            shift = random_shift(p.onset, p.offset, spans.get(p.key), rng)
            moved.append(replace(p, onset=p.onset + shift, offset=p.offset + shift))
        f1.append(score(gt, moved).get(type=type).f1)
    return np.array(f1, np.float64)
