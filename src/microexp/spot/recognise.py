"""Spot-then-recognise: each spotted interval classified by a recognition run (or given its AU probabilities by an
AU-detection run). Used by :meth:`microexp.spot.api.Spotter.spot` and by the spotting evaluation's STRS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from microexp.errors import DataError
from microexp.predict.video import iter_frames
from microexp.spot.metrics import Spot, megc_class


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
