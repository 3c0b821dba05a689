"""The MEGC spotting metric and the spot-then-recognise score (docs/spotting.md).

- Frames are counted inclusively; a predicted interval *hits* a ground-truth interval of the same video and
  expression type when IoU >= 0.5.
- Matching is one-to-one and optimal: per (dataset, video, type), the assignment with the most hits
  (``scipy.optimize.linear_sum_assignment`` on the hit matrix, ties broken by IoU), not greedy in prediction order.
- TP = matched pairs; precision = TP / predictions; recall = TP / ground-truth intervals; F1 from the counts.
  Every ground-truth interval given counts (a subject or video without any prediction contributes false
  negatives) and every prediction counts (one in a video without ground truth is a false positive).
- Per dataset and type, pooled over types, and overall (counts pooled over datasets).
- STRS = F1_spot x F1_analysis; the analysis scores the class of each true positive (negative / positive /
  surprise), F1_analysis = harmonic mean of the macro precision and macro recall over those classes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from microexp.spot.groundtruth import TYPES, Interval

IOU_THRESHOLD = 0.5
ANALYSIS_CLASSES = ("negative", "positive", "surprise")
# raw emotions of the releases -> MEGC 3 classes (others / other / macro without emotion: not analysed)
MEGC_CLASS = {
    "negative": "negative", "anger": "negative", "contempt": "negative", "disgust": "negative", "fear": "negative",
    "sadness": "negative", "sad": "negative", "repression": "negative",
    "positive": "positive", "happiness": "positive", "happy": "positive",
    "surprise": "surprise",
}


@dataclass(frozen=True)
class Spot:
    """One predicted interval (frames inclusive) of a video, with its type and, after recognition, its class."""

    dataset: str
    subject: str
    video: str
    onset: int
    offset: int
    type: str  # micro | macro
    score: float = 0.0
    emotion: str = ""
    aus: dict[str, float] = field(default_factory=dict, hash=False)  # recognised by an AU run: p per AU

    @property
    def key(self) -> tuple[str, str]:
        return self.dataset, self.video


def iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Intersection over union of two inclusive frame intervals."""
    inter = min(a[1], b[1]) - max(a[0], b[0]) + 1
    if inter <= 0:
        return 0.0
    union = (a[1] - a[0] + 1) + (b[1] - b[0] + 1) - inter
    return inter / union


def match(gt: Sequence[Interval], preds: Sequence[Spot], threshold: float = IOU_THRESHOLD
          ) -> list[tuple[int, int, float]]:
    """Optimal one-to-one matching of one video's intervals of one type: (gt index, pred index, IoU) pairs.

    The assignment maximises the number of hits; among those, the summed IoU."""
    if not gt or not preds:
        return []
    from scipy.optimize import linear_sum_assignment

    m = np.array([[iou((g.onset, g.offset), (p.onset, p.offset)) for p in preds] for g in gt])
    hit = m >= threshold
    if not hit.any():
        return []
    # the IoU term sums to < 1 over any assignment, so it only breaks ties between equally many hits
    weight = np.where(hit, 1.0 + m / (min(len(gt), len(preds)) + 1), 0.0)
    rows, cols = linear_sum_assignment(weight, maximize=True)
    return [(int(r), int(c), float(m[r, c])) for r, c in zip(rows, cols, strict=True) if hit[r, c]]


@dataclass
class Counts:
    tp: int = 0
    n_pred: int = 0
    n_gt: int = 0

    def __iadd__(self, other: Counts) -> Counts:
        self.tp += other.tp
        self.n_pred += other.n_pred
        self.n_gt += other.n_gt
        return self

    @property
    def precision(self) -> float:
        return self.tp / self.n_pred if self.n_pred else 0.0

    @property
    def recall(self) -> float:
        return self.tp / self.n_gt if self.n_gt else 0.0

    @property
    def f1(self) -> float:
        return 2 * self.tp / (self.n_pred + self.n_gt) if self.n_pred + self.n_gt else 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {"tp": self.tp, "fp": self.n_pred - self.tp, "fn": self.n_gt - self.tp, "n_pred": self.n_pred,
                "n_gt": self.n_gt, "precision": self.precision, "recall": self.recall, "f1": self.f1}


@dataclass(frozen=True)
class LogRow:
    """One line of the MEGC spotting log: a hit, a miss (FN) or a false positive."""

    dataset: str
    video: str
    type: str
    gt: tuple[int, int] | None
    pred: tuple[int, int] | None
    outcome: str  # TP | FP | FN
    iou: float = 0.0
    gt_index: int | None = None  # into the ground truth given to :func:`score`
    pred_index: int | None = None  # into the predictions given


@dataclass
class SpotScore:
    """Counts per (dataset, type); ``rows`` the matching, one :class:`LogRow` per pair / miss / false alarm."""

    counts: dict[tuple[str, str], Counts]
    rows: list[LogRow] = field(default_factory=list)

    @property
    def datasets(self) -> list[str]:
        return sorted({d for d, _ in self.counts})

    def get(self, dataset: str | None = None, type: str | None = None) -> Counts:
        """Counts pooled over what is left None (``get()`` = overall, all types)."""
        out = Counts()
        for (d, t), c in self.counts.items():
            if (dataset is None or d == dataset) and (type is None or t == type):
                out += c
        return out

    def to_dict(self) -> dict[str, Any]:
        def block(dataset: str | None) -> dict[str, Any]:
            return {**{t: self.get(dataset, t).to_dict() for t in TYPES}, "overall": self.get(dataset).to_dict()}

        return {"datasets": {d: block(d) for d in self.datasets}, "overall": block(None),
                "iou_threshold": IOU_THRESHOLD}

    def table(self) -> str:
        lines = [f"{'dataset':<10} {'type':<8} {'TP':>5} {'FP':>5} {'FN':>5} {'P':>7} {'R':>7} {'F1':>7}"]
        for d in [*self.datasets, None]:
            for t in [*TYPES, None]:
                c = self.get(d, t)
                lines.append(f"{d or 'all':<10} {t or 'overall':<8} {c.tp:>5} {c.n_pred - c.tp:>5} "
                             f"{c.n_gt - c.tp:>5} {c.precision:>7.4f} {c.recall:>7.4f} {c.f1:>7.4f}")
        return "\n".join(lines)


def score(gt: Sequence[Interval], preds: Sequence[Spot], threshold: float = IOU_THRESHOLD) -> SpotScore:
    """Match every prediction against every ground-truth interval (see the module docstring)."""
    for p in preds:
        if p.type not in TYPES:
            from microexp.errors import ConfigError

            raise ConfigError(f"prediction {p.video} {p.onset}..{p.offset}: type {p.type!r} is not micro or macro")
    groups: dict[tuple[str, str, str], tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    for i, g in enumerate(gt):
        groups[(g.dataset, g.video, g.type)][0].append(i)
    for j, p in enumerate(preds):
        groups[(p.dataset, p.video, p.type)][1].append(j)
    counts: dict[tuple[str, str], Counts] = defaultdict(Counts)
    for d in {g.dataset for g in gt} | {p.dataset for p in preds}:
        for t in TYPES:
            counts[(d, t)] = Counts()
    rows: list[LogRow] = []
    for (d, video, t), (gi, pj) in sorted(groups.items()):
        pairs = match([gt[i] for i in gi], [preds[j] for j in pj], threshold)
        c = counts[(d, t)]
        c.tp += len(pairs)
        c.n_gt += len(gi)
        c.n_pred += len(pj)
        hit_g = {gi[a]: (pj[b], v) for a, b, v in pairs}
        hit_p = {pj[b] for _, b, _ in pairs}
        for i in gi:
            g = gt[i]
            if i in hit_g:
                j, v = hit_g[i]
                rows.append(LogRow(d, video, t, (g.onset, g.offset), (preds[j].onset, preds[j].offset), "TP", v, i, j))
            else:
                rows.append(LogRow(d, video, t, (g.onset, g.offset), None, "FN", 0.0, i, None))
        for j in pj:
            if j not in hit_p:
                rows.append(LogRow(d, video, t, None, (preds[j].onset, preds[j].offset), "FP", 0.0, None, j))
    rows.sort(key=lambda r: (r.dataset, r.video, (r.gt or r.pred or (0, 0))[0], r.outcome))
    return SpotScore(dict(counts), rows)


def megc_class(emotion: str) -> str | None:
    """MEGC analysis class (negative / positive / surprise) of a raw emotion; None: not analysed."""
    return MEGC_CLASS.get(emotion.strip().lower())


@dataclass
class Analysis:
    f1_spot: float
    precision: float  # macro over the analysis classes
    recall: float
    f1_analysis: float
    strs: float
    n_tp: int
    n_analysed: int  # true positives whose ground truth has an analysis class
    per_class: dict[str, dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def strs(gt: Sequence[Interval], preds: Sequence[Spot], result: SpotScore | None = None,
         classes: Iterable[str] = ANALYSIS_CLASSES, type: str | None = None) -> Analysis:
    """Spot-then-recognise score over the true positives of ``result`` (computed when None).

    A true positive whose ground truth has no analysis class (``others``, a macro interval without emotion) is left
    out of the analysis (counted in ``n_tp`` but not ``n_analysed``); a predicted class outside ``classes`` is a
    wrong answer. Per class c (one-vs-rest): precision = hits / predicted c, recall = hits / true c, 0 when the
    denominator is 0; macro averages over the classes that occur among the analysed truths or answers."""
    result = result if result is not None else score(gt, preds)
    classes = tuple(classes)
    truth, answer = [], []
    n_tp = 0
    for r in result.rows:
        if r.outcome != "TP" or (type is not None and r.type != type):
            continue
        n_tp += 1
        assert r.gt_index is not None and r.pred_index is not None
        t = megc_class(gt[r.gt_index].emotion)
        if t is None or t not in classes:
            continue
        truth.append(t)
        answer.append(preds[r.pred_index].emotion.strip().lower())
    used = [c for c in classes if c in truth or c in answer]
    per: dict[str, dict[str, float]] = {}
    for c in used:
        hits = sum(1 for t, a in zip(truth, answer, strict=True) if t == c and a == c)
        n_ans, n_true = answer.count(c), truth.count(c)
        per[c] = {"precision": hits / n_ans if n_ans else 0.0, "recall": hits / n_true if n_true else 0.0,
                  "n_true": n_true, "n_pred": n_ans}
    p = float(np.mean([v["precision"] for v in per.values()])) if per else 0.0
    r = float(np.mean([v["recall"] for v in per.values()])) if per else 0.0
    f1a = 2 * p * r / (p + r) if p + r else 0.0
    f1s = result.get(type=type).f1
    return Analysis(f1s, p, r, f1a, f1s * f1a, n_tp, len(truth), per)
