"""A whole synthetic data set: classes -> AU sets, timing priors, per-clip seeds, and the plain-layout
writer."""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from microexp.errors import ConfigError, DataError
from microexp.synth.faces import load_faces, max_faces
from microexp.synth.render import FLICKER, JITTER, NOISE, SynthClip, render_clip

# class -> AU sets it is drawn from (CASME II / MEGC style composite classes, docs/synthetic.md §7.4);
# repeated entries weight the frequent ones (AU4 dominates real negative MEs)
CLASS_AUS: dict[str, tuple[str, ...]] = {
    "positive": ("6+12", "6+12", "12", "L12", "R12"),
    "negative": ("4", "4+7", "4+7", "4+15", "4+14", "15+17"),
    "surprise": ("1+2", "1+2", "1+2+5"),
    "neutral": ("",),
}

# timing priors from the CASME II coding table (ms): log-normal around the medians with the IQRs of §7.4
RISE_MS = (150.0, 115.0, 208.0)
FALL_MS = (150.0, 106.0, 210.0)


@dataclass(frozen=True)
class SynthConfig:
    """Everything that defines a generated set. Same config -> identical bytes.

    ``intensity`` is the mean AU intensity (each clip draws it with ``intensity_spread`` log-normal spread);
    ``onset_range`` is where the onset may fall, as fractions of the clip length.
    """

    n_subjects: int = 16
    clips_per_class: int = 3
    classes: tuple[str, ...] = ("negative", "positive", "surprise")
    size: tuple[int, int] = (64, 64)
    n_frames: int = 24
    fps: float = 30.0
    intensity: float = 2.0
    intensity_spread: float = 0.15
    onset_range: tuple[float, float] = (0.2, 0.35)
    jitter: float = JITTER
    flicker: float = FLICKER
    noise: float = NOISE
    blink: bool = True
    seed: int = 0
    class_aus: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(CLASS_AUS))

    def validate(self) -> None:
        for name in self.classes:
            if name not in self.class_aus:
                raise ConfigError(f"unknown synthetic class {name!r}; known: {sorted(self.class_aus)}")
        if not 1 <= self.n_subjects <= max_faces():
            raise ConfigError(f"number of subjects must be 1..{max_faces()}, got {self.n_subjects}")
        if self.clips_per_class < 1:
            raise ConfigError(f"clips_per_class must be >= 1, got {self.clips_per_class}")
        if self.fps <= 0:
            raise ConfigError(f"fps must be positive, got {self.fps}")
        if self.n_frames < 10:
            raise ConfigError(
                f"n_frames={self.n_frames} is too short: need >= 10 (event plus neutral padding)"
            )
        if min(self.size) < 16:
            raise ConfigError(f"size {self.size} is too small (>= 16x16)")


def _frames(rng: np.random.Generator, prior: tuple[float, float, float], fps: float) -> int:
    median, q1, q3 = prior
    sigma = np.log(q3 / q1) / 1.349  # IQR of a normal is 1.349 sigma
    ms = float(np.clip(np.exp(rng.normal(np.log(median), sigma)), 60.0, 400.0))
    return max(2, int(round(ms * fps / 1000.0)))


def sample_timing(
    rng: np.random.Generator, n_frames: int, fps: float, onset_range: tuple[float, float] = (0.2, 0.35)
) -> tuple[int, int, int]:
    """(onset, apex, offset), 1-based, with rise/fall drawn from the CASME II priors, inside neutral
    padding."""
    rise, fall = _frames(rng, RISE_MS, fps), _frames(rng, FALL_MS, fps)
    lo = max(2, int(round(onset_range[0] * n_frames)))
    hi = max(lo, int(round(onset_range[1] * n_frames)))
    room = n_frames - 1 - lo  # frames available for the event after the earliest onset
    if rise + fall > room:  # very short clip or low fps: shrink the event, keep its rise/fall ratio
        rise = max(2, int(round(rise * room / (rise + fall))))
        fall = max(2, room - rise)
    onset = int(rng.integers(lo, hi + 1))
    onset = max(1, min(onset, n_frames - 1 - rise - fall))  # keep at least one neutral frame after offset
    return onset, onset + rise, onset + rise + fall


def generate(config: SynthConfig, progress: Callable[[int], None] | None = None) -> list[SynthClip]:
    """Render ``clips_per_class`` clips per class for each of ``n_subjects`` real faces.

    Every clip has its own seed from (config.seed, subject, class, k), so any clip is reproducible on its own.
    ``progress`` (e.g. a tqdm ``update``) is called with 1 after each clip.
    """
    config.validate()
    faces = load_faces(config.n_subjects)
    clips: list[SynthClip] = []
    for si, face in enumerate(faces):
        for ci, label in enumerate(config.classes):
            choices = config.class_aus[label]
            for k in range(config.clips_per_class):
                seq = np.random.SeedSequence([config.seed & 0xFFFFFFFF, si, ci, k])
                rng = np.random.default_rng(seq)
                aus = choices[int(rng.integers(len(choices)))]
                onset, apex, offset = sample_timing(rng, config.n_frames, config.fps, config.onset_range)
                intensity = config.intensity * float(np.exp(rng.normal(0.0, config.intensity_spread)))
                clip = render_clip(
                    face,
                    aus,
                    n_frames=config.n_frames,
                    onset=onset,
                    apex=apex,
                    offset=offset,
                    fps=config.fps,
                    size=config.size,
                    intensity=round(intensity, 4),
                    seed=int(seq.generate_state(1)[0]),
                    jitter=config.jitter,
                    flicker=config.flicker,
                    noise=config.noise,
                    blink=config.blink,
                    label=label,
                    subject=face.name,
                    clip_id=f"{label}_{k + 1:02d}",
                )
                clips.append(clip)
                if progress is not None:
                    progress(1)
    return clips


ANNOTATION_COLUMNS = (
    "subject",
    "clip",
    "emotion",
    "onset",
    "apex",
    "offset",
    "fps",
    "aus",
    "intensity",
    "source",
)


def write_plain(
    clips: Sequence[SynthClip], out_dir: Path | str, progress: Callable[[int], None] | None = None
) -> Path:
    """Write ``out_dir/<subject>/<clip>/frame_0001.png`` ... and ``out_dir/annotations.csv``; returns out_dir.

    The tree is what :func:`microexp.data.plain.load_plain` reads (extra columns go to ``ClipRecord.meta``).
    """
    out = Path(out_dir)
    keys = [(c.subject, c.clip_id) for c in clips]
    if len(set(keys)) != len(keys):
        raise DataError("duplicate (subject, clip_id) among the clips to write")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{out}: cannot create output folder ({exc.strerror})") from None
    rows = []
    for clip in clips:
        folder = out / clip.subject / clip.clip_id
        folder.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(clip.frames, start=1):
            if not cv2.imwrite(str(folder / f"frame_{i:04d}.png"), frame):
                raise DataError(f"{folder / f'frame_{i:04d}.png'}: could not write frame")
        rows.append(
            {
                "subject": clip.subject,
                "clip": clip.clip_id,
                "emotion": clip.label,
                "onset": clip.onset,
                "apex": clip.apex,
                "offset": clip.offset,
                "fps": f"{clip.fps:g}",
                "aus": clip.aus,
                "intensity": f"{clip.intensity:g}",
                "source": clip.source,
            }
        )
        if progress is not None:
            progress(1)
    with open(out / "annotations.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=ANNOTATION_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return out
