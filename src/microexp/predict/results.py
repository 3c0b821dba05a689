"""Result types of a prediction and their output formats (terminal table, JSON, CSV)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Prediction:
    """One classified window: frames ``start_frame..end_frame`` (0-based, inclusive), times in seconds."""

    start_frame: int
    end_frame: int
    start_time: float
    end_time: float
    label: str
    probabilities: dict[str, float]

    @property
    def probability(self) -> float:
        return self.probabilities[self.label]


@dataclass(frozen=True)
class Segment:
    """A run of frames where one class dominates (see :func:`merge_segments`)."""

    start_frame: int
    end_frame: int
    start_time: float
    end_time: float
    label: str
    probability: float  # mean over the segment's frames of the label's averaged probability


@dataclass(frozen=True)
class Gap:
    """Frames that no classified window covers (no face found, ...), with the reason."""

    start_frame: int
    end_frame: int
    start_time: float
    end_time: float
    reason: str


@dataclass
class PredictionResult:
    source: str
    fps: float
    n_frames: int
    window: int
    stride: int
    classes: list[str]
    models: list[str]
    windows: list[Prediction] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the input or the options changed (shown, never silent)
    task: str = "recognise"  # "au": classes are AUs, each window's probabilities independent (sigmoids)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def rows(self) -> list[dict[str, Any]]:
        """One row per window (classified) and per gap, in time order: the ``--csv`` table."""
        rows = [{"status": "ok", "start_frame": w.start_frame, "end_frame": w.end_frame,
                 "start_time": round(w.start_time, 4), "end_time": round(w.end_time, 4), "predicted": w.label,
                 **{f"p_{c}": w.probabilities[c] for c in self.classes}, "reason": ""} for w in self.windows]
        rows += [{"status": "gap", "start_frame": g.start_frame, "end_frame": g.end_frame,
                  "start_time": round(g.start_time, 4), "end_time": round(g.end_time, 4), "predicted": "",
                  **{f"p_{c}": "" for c in self.classes}, "reason": g.reason} for g in self.gaps]
        return sorted(rows, key=lambda r: (r["start_frame"], r["status"]))

    def to_csv(self) -> str:
        import pandas as pd

        columns = ["status", "start_frame", "end_frame", "start_time", "end_time", "predicted",
                   *[f"p_{c}" for c in self.classes], "reason"]
        return pd.DataFrame(self.rows(), columns=columns).to_csv(index=False)

    def table(self) -> str:
        """Plain-text report for the terminal."""
        models = ", ".join(self.models) if len(self.models) < 4 else f"mean of {len(self.models)} checkpoints"
        lines = [f"{self.source}: {self.n_frames} frames at {self.fps:g} fps; window {self.window} frames, "
                 f"stride {self.stride}; model {models}"]
        lines += [f"note: {n}" for n in self.notes]
        if self.task == "au":
            lines.append("AU detection: each AU's probability on its own (sigmoid); 'AUs' lists those at or above "
                         "the run's threshold; segments are per AU")
        head = f"{'frames':>13} {'time (s)':>15}  {'AUs' if self.task == 'au' else 'predicted':<12}" + "".join(f"{c[:10]:>11}" for c in self.classes)
        lines += ["", head, "-" * len(head)]
        for w in self.windows:
            lines.append(f"{w.start_frame:>6}-{w.end_frame:<6} {w.start_time:>7.2f}-{w.end_time:<7.2f}  "
                         f"{w.label:<12}" + "".join(f"{w.probabilities[c]:>11.3f}" for c in self.classes))
        lines += ["", "segments:" if self.segments else "segments: none"]
        for s in self.segments:
            lines.append(f"  frames {s.start_frame}-{s.end_frame} ({s.start_time:.2f}-{s.end_time:.2f} s): "
                         f"{s.label} (p={s.probability:.2f})")
        lines.append("gaps:" if self.gaps else "gaps: none")
        for g in self.gaps:
            lines.append(f"  frames {g.start_frame}-{g.end_frame} ({g.start_time:.2f}-{g.end_time:.2f} s): {g.reason}")
        return "\n".join(lines)
