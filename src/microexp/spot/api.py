"""Spotting a new video with a spotting run: ``microexp.load(RUN).spot(video)`` / ``microexp spot VIDEO --run RUN``.

The run's ``spotter.json`` holds what was fitted on all its subjects (k, interval shape, threshold per type, the
feature settings; ``spotter.safetensors`` the networks of the learned spotter). The video is streamed once for the
spotting; with a recognition run the frames of each spotted interval are read in a second pass (only that
interval is held) and classified by :meth:`microexp.predict.Predictor.predict` over the whole interval.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from microexp import runs
from microexp.errors import ConfigError, DataError
from microexp.spot.detect import Curve, TypeParams, spots_of
from microexp.spot.features import FeatureConfig, extract_features, iter_frames, video_fps
from microexp.spot.methods import LearnedSpotter, mdmd_curve, net_inputs
from microexp.spot.metrics import Spot, megc_class
from microexp.spot.outputs import str_csv


@dataclass
class SpotResult:
    source: str
    fps: float
    n_frames: int
    spots: list[Spot]
    gaps: list[tuple[int, int, str]] = field(default_factory=list)
    curves: dict[str, list[float]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "fps": self.fps, "n_frames": self.n_frames,
                "spots": [asdict(s) | {"onset_s": s.onset / self.fps, "offset_s": s.offset / self.fps}
                          for s in self.spots],
                "gaps": [{"first_frame": a, "last_frame": b, "reason": r} for a, b, r in self.gaps]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def to_csv(self) -> str:
        return str_csv(self.spots)

    def table(self) -> str:
        lines = [f"{self.source}: {self.n_frames} frames at {self.fps:g} fps, {len(self.spots)} spotted interval(s)"]
        for s in self.spots:
            lines.append(f"  {s.type:<5} frames {s.onset}-{s.offset} ({s.onset / self.fps:.2f}-"
                         f"{s.offset / self.fps:.2f} s) score {s.score:.3f}" + (f" {s.emotion}" if s.emotion else "")
                         + ("" if not s.aus else " (" + ", ".join(f"{a} {p:.2f}" for a, p in s.aus.items()) + ")"))
        for a, b, r in self.gaps:
            lines.append(f"  gap frames {a}-{b}: {r}")
        return "\n".join(lines)


class Spotter:
    """A spotting run's fitted spotter."""

    def __init__(self, run_dir: Path, body: dict[str, Any], states: dict[str, Any] | None) -> None:
        self.run_dir = run_dir
        self.method = body["method"]
        self.dataset = str(body.get("dataset", "input"))
        self.fps = float(body["fps"])
        self.params = {t: TypeParams(**p) for t, p in body["types"].items()}
        self.features = FeatureConfig(**body["features"])
        self.nets = {t: LearnedSpotter.from_state(s) for t, s in (states or {}).items()}

    @classmethod
    def load(cls, run_dir: str | Path) -> Spotter:
        run_dir = Path(run_dir)
        path = run_dir / runs.SPOTTER
        if not path.is_file():
            raise ConfigError(f"{run_dir}: not a spotting run (no {runs.SPOTTER}); make one with "
                              "microexp evaluate --task spot")
        body = runs.read_json(path, "run file")
        states = None
        if body["method"] == "learned":
            nets = run_dir / runs.SPOTTER_NETS
            if not nets.is_file() and not nets.with_suffix(runs.LEGACY_SUFFIX).is_file():
                raise ConfigError(f"{run_dir}: {nets.name} (the learned spotter's networks) is missing")
            # the one safe checkpoint policy: a run someone sent you cannot run code when loaded
            states = runs.load_checkpoint(nets, keys=tuple(body["types"]))
        return cls(run_dir, body, states)

    def spot(self, video: str | Path, fps: float | None = None, recognise: Any = None,
             subject: str = "", face: str | None = None) -> SpotResult:
        """Spot micro- and macro-expressions in a video file or frame folder; ``recognise``: a recognition run
        directory or a loaded predictor, to classify every spotted interval."""
        fps = float(fps) if fps else video_fps(video, self.fps)
        if abs(fps - self.fps) / self.fps > 0.2:
            # k and the interval shape are in frames: rescale them to this video's frame rate
            r = fps / self.fps
            params = {t: TypeParams(t, max(1, round(p.k * r)), round(p.before * r), round(p.after * r), p.threshold)
                      for t, p in self.params.items()}
        else:
            params = self.params
        config = self.features if face is None else FeatureConfig(**{**asdict(self.features), "face": face})
        feats = extract_features(video, tuple(p.k for p in params.values()), fps, config)
        name = Path(video).stem if Path(video).is_file() else Path(video).name
        spots, curves = [], {}
        for t, p in params.items():
            if self.method == "learned":
                net = self.nets[t]
                if net.k != p.k:
                    net = LearnedSpotter.from_state({**net.state(), "k": p.k})
                values = net.predict(*net_inputs(feats, p.k))
            else:
                values = mdmd_curve(feats, p.k)
            curves[t] = values.tolist()
            spots += spots_of(Curve(self.dataset, subject, name, feats.numbers, values), p)
        spots.sort(key=lambda s: (s.onset, s.type))
        if recognise is not None and spots:
            spots = recognise_spots(video, spots, recognise, fps, face)
        return SpotResult(str(video), fps, feats.n_frames, spots, feats.gaps, curves)


def recognise_spots(video: str | Path, spots: list[Spot], recognise: Any, fps: float,
                    face: str | None = None) -> list[Spot]:
    """Each spot with the class a recognition run gives its frames (mapped to negative / positive / surprise where
    the run's classes allow); with an AU-detection run, each spot's AU probabilities (``aus``) and as its class the
    AUs at or above the run's threshold (``AU4+AU12``, ``none``). ``face`` as for the spotting (``none``: the frames
    are face crops) when ``recognise`` is a run directory."""
    from dataclasses import replace

    from microexp.errors import MicroexpError

    predictor = recognise
    if isinstance(recognise, str | Path):
        from microexp.predict import load as load_predictor

        predictor = load_predictor(recognise, face=face)
    labels: dict[int, str] = {}
    aus: dict[int, dict[str, float]] = {}
    au_run = getattr(predictor, "task", "recognise") == "au"
    held: dict[int, list[np.ndarray]] = {}  # frames of the spots that are open at the current frame, only

    def classify(i: int) -> None:
        frames = held.pop(i)
        try:
            r = predictor.predict(np.stack(frames), window=len(frames), stride=len(frames), fps=fps)
            label = r.windows[0].label if r.windows else ""
            if au_run and r.windows:
                aus[i] = r.windows[0].probabilities
        except MicroexpError as exc:  # no face, interval shorter than the run needs, ...: named, not dropped
            label = f"unrecognised ({exc})"
        labels[i] = label if au_run else megc_class(label) or label

    for n, img in iter_frames(video):  # one pass for all spots
        for i, s in enumerate(spots):
            if s.onset <= n <= s.offset:
                held.setdefault(i, []).append(img)
            if n == s.offset and i in held:
                classify(i)
    for i in list(held):
        classify(i)
    missing = [s for i, s in enumerate(spots) if i not in labels]
    if missing:
        raise DataError(f"{video}: frames {missing[0].onset}..{missing[0].offset} not found for recognition")
    return [replace(s, emotion=labels[i], aus=aus.get(i, {})) for i, s in enumerate(spots)]


def spot(video: str | Path, run: str | Path, recognise: str | Path | None = None, fps: float | None = None
         ) -> SpotResult:
    return Spotter.load(run).spot(video, fps=fps, recognise=recognise)
