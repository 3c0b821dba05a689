"""Spotting a new video with a spotting run: ``microexp.load(RUN).spot(video)`` / ``microexp spot VIDEO --run RUN``.

The run's ``spotter.json`` holds what was fitted on all its subjects (k, interval shape, threshold per type, the
feature settings; ``spotter.safetensors`` the networks of the learned spotter). The video is streamed once for the
spotting; with a recognition run the frames of each spotted interval are read in a second pass (only that
interval is held) and classified by :meth:`microexp.predict.Predictor.predict` over the whole interval.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from microexp import runs
from microexp.errors import ConfigError
from microexp.spot.blinks import Blink, blink_mask, blinks_of, drop_lone_blinks
from microexp.spot.detect import (
    Curve,
    TypeParams,
    margins,
    merge_scales,
    one_movement,
    scale_key,
    spots_of,
)
from microexp.spot.features import FeatureConfig, extract_features, video_fps
from microexp.spot.methods import get_spot_method
from microexp.spot.metrics import Spot
from microexp.spot.outputs import str_csv
from microexp.spot.recognise import recognise_spots  # noqa: F401 - re-exported


@dataclass
class SpotResult:
    source: str
    fps: float
    n_frames: int
    spots: list[Spot]
    gaps: list[tuple[int, int, str]] = field(default_factory=list)
    curves: dict[str, list[float]] = field(default_factory=dict, repr=False)
    blinks: list[Blink] = field(default_factory=list)
    subject: str = ""
    name: str = ""  # the video's name in the CSV

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "fps": self.fps, "n_frames": self.n_frames,
                "spots": [asdict(s) | {"onset_s": s.onset / self.fps, "offset_s": s.offset / self.fps}
                          for s in self.spots],
                "blinks": [b.to_dict() | {"onset_s": b.onset / self.fps, "offset_s": b.offset / self.fps}
                           for b in self.blinks],
                "gaps": [{"first_frame": a, "last_frame": b, "reason": r} for a, b, r in self.gaps]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def to_csv(self) -> str:
        """The spot-then-recognise CSV; blinks are rows too, with ``blink`` as their emotion."""
        blinks = [Spot("input", self.subject, self.name, b.onset, b.offset, "blink", b.score, "blink")
                  for b in self.blinks]
        return str_csv(self.spots + blinks)

    def table(self) -> str:
        lines = [f"{self.source}: {self.n_frames} frames at {self.fps:g} fps, {len(self.spots)} spotted interval(s), "
                 f"{len(self.blinks)} blink(s)"]
        events = [(s.onset, s.offset, s.type, s.score, s.emotion, s.aus) for s in self.spots]
        events += [(b.onset, b.offset, "blink", b.score, "", {}) for b in self.blinks]
        for onset, offset, kind, value, emotion, aus in sorted(events, key=lambda e: e[:5]):
            lines.append(f"  {kind:<5} frames {onset}-{offset} ({onset / self.fps:.2f}-"
                         f"{offset / self.fps:.2f} s) score {value:.3f}" + (f" {emotion}" if emotion else "")
                         + ("" if not aus else " (" + ", ".join(f"{a} {p:.2f}" for a, p in aus.items()) + ")"))
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
        self.params = {t: TypeParams(**p) for t, p in body["types"].items()}  # the first window scale of each type
        # every window scale of each type (runs before multi-scale windows: one per type)
        self.scales = {t: [TypeParams(**d) for d in (body.get("scales") or {}).get(t, [body["types"][t]])]
                       for t in body["types"]}
        self.features = FeatureConfig(**body["features"])
        self.blinks = str(body.get("blinks", "ignore"))  # runs made before blinks were separated: as they were
        self.long_events = str(body.get("long_events", "direct"))  # runs made before chained long events: direct
        self.overlap = str(body.get("overlap", "both"))  # runs made before one-type spots: both kept
        spot_method = get_spot_method(self.method)
        self.models = {scale_key(t, i): spot_method.from_state((states or {}).get(scale_key(t, i)))
                       for t, ps in self.scales.items() for i in range(len(ps))}

    @classmethod
    def load(cls, run_dir: str | Path) -> Spotter:
        run_dir = Path(run_dir)
        path = run_dir / runs.SPOTTER
        if not path.is_file():
            raise ConfigError(f"{run_dir}: not a spotting run (no {runs.SPOTTER}); make one with "
                              "microexp evaluate --task spot")
        body = runs.read_json(path, "run file")
        states = None
        if get_spot_method(str(body["method"])).trained:
            nets = run_dir / runs.SPOTTER_NETS
            if not nets.is_file() and not nets.with_suffix(runs.LEGACY_SUFFIX).is_file():
                raise ConfigError(f"{run_dir}: {nets.name} (the {body['method']} spotter's networks) is missing")
            # the one safe checkpoint policy: a run someone sent you cannot run code when loaded
            keys = [scale_key(t, i) for t in body["types"]
                    for i in range(len((body.get("scales") or {}).get(t, [None])))]
            states = runs.load_checkpoint(nets, keys=tuple(keys))
        return cls(run_dir, body, states)

    def spot(self, video: str | Path, fps: float | None = None, recognise: Any = None,
             subject: str = "", face: str | None = None, fps_name: str = "fps",
             progress_callback: Callable[[int, int | None], None] | None = None) -> SpotResult:
        """Spot micro- and macro-expressions in a video file or frame folder; ``recognise``: a recognition run
        directory or a loaded predictor, to classify every spotted interval; ``progress_callback(done, total)``:
        called after every frame read, as :meth:`microexp.predict.Predictor.predict`'s (total: None, the stream's
        length is not known before it ends)."""
        from microexp.predict.video import check_fps

        given = check_fps(fps, fps_name)  # 0 or negative: one line, as predict's (0 used to mean "the video's")
        fps = given if given is not None else video_fps(video, self.fps)
        r = fps / self.fps if abs(fps - self.fps) / self.fps > 0.2 else 1.0
        # k and the interval shape are in frames: rescaled to this video's frame rate
        scales = {t: [TypeParams(t, max(1, round(p.k * r)), round(p.before * r), round(p.after * r), p.threshold)
                      for p in ps] for t, ps in self.scales.items()}
        config = self.features if face is None else FeatureConfig(**{**asdict(self.features), "face": face})
        spot_method = get_spot_method(self.method)
        ks = {k for t, ps in scales.items() for p in ps for k in spot_method.feature_ks(t, p.k, self.long_events)}
        feats = extract_features(video, tuple(sorted(ks)), fps, config,
                                 progress=None if progress_callback is None else lambda n: progress_callback(n, None))
        name = Path(video).stem if Path(video).is_file() else Path(video).name
        spots, curves = [], {}
        spot_margins: list[float] = []
        blink_k = min(p.k for ps in scales.values() for p in ps)  # a chained window's step does not count
        veto = blink_mask(feats, blink_k) if self.blinks != "ignore" else None
        for t, ps in scales.items():
            found, margin = [], []
            for i, p in enumerate(ps):
                values = spot_method.curve(self.models[scale_key(t, i)], feats, p.k)
                if i == 0:
                    curves[t] = values.tolist()
                curve = Curve(self.dataset, subject, name, feats.numbers, values, veto)
                found.append(spots_of(curve, p))
                margin.append(margins(curve, found[-1], p.threshold))
            merged, merged_margin = merge_scales(found, margin)
            spots += merged
            spot_margins += merged_margin
        spots = one_movement(spots, spot_margins, self.overlap)
        if self.blinks == "spans":
            spots = drop_lone_blinks(feats, spots, blink_k)
        spots.sort(key=lambda s: (s.onset, s.type))
        if recognise is not None and spots:
            spots = recognise_spots(video, spots, recognise, fps, face)
        return SpotResult(str(video), fps, feats.n_frames, spots, feats.gaps, curves, blinks_of(feats, blink_k),
                          subject, name)
