"""A second, independent long-video generator, for evaluation only: spotters are trained on the first renderer
(:mod:`microexp.synth.longvideo`, TPS fields of action units) and tested here, and the other way round, so that a
figure measures spotting and not how well a spotter learned one renderer.

What differs from the first renderer, on purpose:

- **deformation model**: a sum of Gaussian displacement bumps anchored at landmarks (inner brows, brows, lid
  points, lip corners, cheeks below the eyes, chin), not thin-plate splines through AU control points; amplitudes
  in units of the eye distance;
- **faces**: the LFW crops taken from the end of the list (the first renderer takes them from the start);
- **timing**: micro rise 60-200 ms and fall 100-300 ms drawn uniformly, macro rise 0.3-0.8 s, hold 0.3-1.5 s, fall
  0.4-1 s; a smoothstep envelope instead of a raised cosine;
- **distractors**: blinks of varied speed (closing 50-150 ms, opening 100-300 ms) and completeness (closure
  0.4-1), one in five a double blink, about one every 4 s; head turns (a yaw of 10-30 degrees, drawn as a
  horizontal foreshortening of the face with a shift, 0.4-1 s to turn, held 0.5-2 s, back) about every 10 s;
  talking-like mouth motion (the jaw and lower lip at 3-5 Hz for 1-3 s) about every 12 s; a slow drift of the head
  and of the gain; sensor noise; JPEG quality 85.

Expressions never overlap each other; talking and head turns keep 0.3 s clear of them (the ground truth stays
clean); blinks fall anywhere. Every distractor is written to ``distractors.json`` beside the annotation, so the
evaluation can count blinks reported as expressions. The layout is SAMM-LV (``write_bump_layout``), read by the
real loader. Deterministic given the seed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from microexp.errors import ConfigError
from microexp.synth.aus import face_axes
from microexp.synth.faces import LFW_FACES, Face, lfw_face
from microexp.synth.longvideo import Event, LongVideo, LongVideoConfig, write_samm_lv

DISTRACTORS = "distractors.json"

# bump sets: (landmark index or indices averaged, (across, up) direction in face axes, weight, sigma in IOD)
# "across" points to the subject's left; mirrored for the subject's right side where a set is sided
_Bump = tuple[tuple[int, ...], tuple[float, float], float, float]
BUMPS: dict[str, list[_Bump]] = {
    "brow_lower": [((21,), (0.4, -1.0), 1.0, 0.25), ((22,), (-0.4, -1.0), 1.0, 0.25),
                   ((19,), (0.0, -1.0), 0.5, 0.3), ((24,), (0.0, -1.0), 0.5, 0.3)],
    "lip_depress": [((48,), (0.0, -1.0), 1.0, 0.22), ((54,), (0.0, -1.0), 1.0, 0.22), ((57,), (0.0, -1.0), 0.3, 0.3)],
    "lip_pull": [((48,), (-0.7, 0.8), 1.0, 0.25), ((54,), (0.7, 0.8), 1.0, 0.25)],
    "cheek_raise": [((40, 41), (0.0, 1.0), 0.5, 0.3), ((46, 47), (0.0, 1.0), 0.5, 0.3)],
    "brow_raise": [((17, 18, 19), (0.0, 1.0), 1.0, 0.3), ((20, 21), (0.0, 1.0), 1.0, 0.3),
                   ((22, 23), (0.0, 1.0), 1.0, 0.3), ((24, 25, 26), (0.0, 1.0), 1.0, 0.3)],
    "lid_raise": [((37, 38), (0.0, 1.0), 0.35, 0.12), ((43, 44), (0.0, 1.0), 0.35, 0.12)],
    "jaw_drop": [((57,), (0.0, -1.0), 0.8, 0.35), ((8,), (0.0, -1.0), 0.8, 0.4)],
}
CLASS_SETS = {  # each class: alternatives, one drawn per expression (the AU codes they stand for)
    "negative": [(("brow_lower", "lip_depress"), "4+15"), (("brow_lower",), "4"), (("lip_depress",), "15")],
    "positive": [(("lip_pull", "cheek_raise"), "6+12"), (("lip_pull",), "12")],
    "surprise": [(("brow_raise", "lid_raise"), "1+2+5"), (("brow_raise",), "1+2"), (("brow_raise", "jaw_drop"),
                                                                                    "1+2+26")],
}


@dataclass(frozen=True)
class BumpConfig:
    n_subjects: int = 3
    videos_per_subject: int = 2
    n_frames: int = 600
    fps: float = 30.0
    size: int = 64
    micro_per_video: int = 2
    macro_per_video: int = 1
    micro_amplitude: float = 0.08  # peak displacement, in eye distances
    macro_amplitude: float = 0.16
    classes: tuple[str, ...] = ("negative", "positive", "surprise")
    blink_every_s: float = 4.0
    double_blink: float = 0.2
    turn_every_s: float = 10.0
    talk_every_s: float = 12.0
    noise: float = 2.5
    neutral_videos: int = 0
    seed: int = 0

    def validate(self) -> None:
        if not 1 <= self.n_subjects <= LFW_FACES:
            raise ConfigError(f"number of subjects must be 1..{LFW_FACES}, got {self.n_subjects}")
        if self.fps <= 0 or self.size < 32 or self.videos_per_subject < 1:
            raise ConfigError(f"fps {self.fps:g} > 0, size {self.size} >= 32, videos per subject "
                              f"{self.videos_per_subject} >= 1 needed")
        for c in self.classes:
            if c not in CLASS_SETS:
                raise ConfigError(f"unknown class {c!r}; known: {sorted(CLASS_SETS)}")
        need = (self.micro_per_video + self.macro_per_video) * 4.0 * self.fps + self.fps
        if self.n_frames < need:
            raise ConfigError(f"{self.n_frames} frames at {self.fps:g} fps cannot hold {self.micro_per_video} micro "
                              f"+ {self.macro_per_video} macro expressions apart: need >= {need:.0f}")

    def as_longvideo(self) -> LongVideoConfig:
        """The first renderer's config with this one's shape (for the shared SAMM-LV writer)."""
        return LongVideoConfig(n_subjects=self.n_subjects, videos_per_subject=self.videos_per_subject,
                               n_frames=self.n_frames, fps=self.fps, size=self.size,
                               micro_per_video=self.micro_per_video, macro_per_video=self.macro_per_video,
                               neutral_videos=self.neutral_videos, seed=self.seed)


@dataclass
class Distractors:
    """Blinks (first, last frame, closure), head turns (first, last, degrees), talking (first, last)."""

    blinks: list[tuple[int, int, float]] = field(default_factory=list)
    turns: list[tuple[int, int, float]] = field(default_factory=list)
    talk: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class BumpVideo(LongVideo):
    sets: list[tuple[str, ...]] = field(default_factory=list)  # bump sets of each event
    distractors: Distractors = field(default_factory=Distractors)


def other_faces(n: int) -> list[Face]:
    """The LFW crops from the end of the list (the first renderer takes them from the start)."""
    return [lfw_face(LFW_FACES - 1 - i) for i in range(n)]


def _frames(rng: np.random.Generator, lo_s: float, hi_s: float, fps: float, least: int = 2) -> int:
    return max(least, int(round(rng.uniform(lo_s, hi_s) * fps)))


def _free(busy: list[tuple[int, int]], a: int, b: int) -> bool:
    return all(b < s or a > e for s, e in busy)


def plan_bumps(config: BumpConfig) -> list[BumpVideo]:
    """Every video's timeline: expressions, then distractors around them."""
    config.validate()
    fps, n = config.fps, config.n_frames
    videos = []
    for s in range(config.n_subjects):
        for v in range(config.videos_per_subject + (config.neutral_videos if s == 0 else 0)):
            rng = np.random.default_rng(np.random.SeedSequence([config.seed & 0xFFFFFFFF, s, v, 0xB0B5]))
            neutral = v >= config.videos_per_subject
            kinds = [] if neutral else ["micro"] * config.micro_per_video + ["macro"] * config.macro_per_video
            rng.shuffle(kinds)
            events, sets, busy = [], [], []
            slot = n // max(len(kinds), 1)
            for i, kind in enumerate(kinds):
                if kind == "micro":
                    rise, hold, fall = _frames(rng, 0.06, 0.2, fps), 0, _frames(rng, 0.1, 0.3, fps)
                    amp = config.micro_amplitude * float(np.exp(rng.normal(0, 0.2)))
                else:
                    rise, hold, fall = (_frames(rng, 0.3, 0.8, fps), _frames(rng, 0.3, 1.5, fps, 0),
                                        _frames(rng, 0.4, 1.0, fps))
                    amp = config.macro_amplitude * float(np.exp(rng.normal(0, 0.2)))
                label = config.classes[int(rng.integers(len(config.classes)))]
                bump_sets, aus = CLASS_SETS[label][int(rng.integers(len(CLASS_SETS[label])))]
                length = rise + hold + fall + 1
                lo, hi = i * slot + int(0.5 * fps), (i + 1) * slot - length - int(0.5 * fps)
                onset = int(rng.integers(lo, max(hi, lo) + 1)) + 1
                events.append(Event(kind, label, aus, onset, onset + rise, onset + rise + hold + fall,
                                    round(amp, 4), hold))
                sets.append(bump_sets)
                busy.append((onset - int(0.3 * fps), onset + length + int(0.3 * fps)))
            d = Distractors()
            t = rng.exponential(config.blink_every_s * fps)
            while t < n - 0.6 * fps:
                for _ in range(2 if rng.random() < config.double_blink else 1):
                    down, up = _frames(rng, 0.05, 0.15, fps, 1), _frames(rng, 0.1, 0.3, fps, 1)
                    a = int(t) + 1
                    if a + down + up <= n:
                        d.blinks.append((a, a + down + up, round(float(rng.uniform(0.4, 1.0)), 3)))
                    t += down + up + rng.uniform(0.15, 0.3) * fps
                t += rng.exponential(config.blink_every_s * fps)
            for kind, every in (("turn", config.turn_every_s), ("talk", config.talk_every_s)):
                t = rng.exponential(every * fps)
                while t < n - 3 * fps:
                    a = int(t) + 1
                    if kind == "turn":
                        b = a + 2 * _frames(rng, 0.4, 1.0, fps) + _frames(rng, 0.5, 2.0, fps)
                    else:
                        b = a + _frames(rng, 1.0, 3.0, fps)
                    if b <= n and _free(busy, a, b):
                        if kind == "turn":
                            d.turns.append((a, b, round(float(rng.uniform(10, 30) * rng.choice([-1, 1])), 2)))
                        else:
                            d.talk.append((a, b))
                        busy.append((a, b))
                    t = b + rng.exponential(every * fps)
            seed = int(np.random.SeedSequence([config.seed & 0xFFFFFFFF, s, v, 1]).generate_state(1)[0])
            videos.append(BumpVideo(s, v, n, fps, events, seed, sets, d))
    return videos


def bump_field(lm: np.ndarray, size: int, bumps: list[_Bump], scale: float = 1.0) -> np.ndarray:
    """(size, size, 2) displacement of the bump set at unit amplitude (pixels = ``scale`` x IOD x weight)."""
    ex, up, iod, _ = face_axes(lm)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.zeros((size, size, 2), np.float32)
    for idx, (across, upward), weight, sigma in bumps:
        p = lm[list(idx)].mean(0)
        vec = (across * ex + upward * up)
        vec = vec / max(float(np.linalg.norm(vec)), 1e-6) * weight * scale * iod
        g = np.exp(-((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / (2 * (sigma * iod) ** 2))
        out[..., 0] += vec[0] * g
        out[..., 1] += vec[1] * g
    return out


def _lid_field(lm: np.ndarray, size: int) -> np.ndarray:
    """Full closure: upper lid points down to the lower lid, the lower lid a little up."""
    _, _, iod, _ = face_axes(lm)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.zeros((size, size, 2), np.float32)
    for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
        gap = lm[lower] - lm[upper]
        for p, vec in ((lm[upper], 0.9 * gap), (lm[lower], -0.1 * gap)):
            g = np.exp(-((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / (2 * (0.12 * iod) ** 2))
            out[..., 0] += vec[0] * g
            out[..., 1] += vec[1] * g
    return out


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _envelope(n: int, onset: int, apex: int, hold: int, offset: int) -> np.ndarray:
    t = np.arange(1, n + 1, dtype=np.float64)
    top = apex + hold
    rise = _smoothstep((t - onset) / max(apex - onset, 1))
    fall = 1.0 - _smoothstep((t - top) / max(offset - top, 1))
    e = np.where(t <= apex, rise, np.where(t <= top, 1.0, fall))
    e[(t <= onset) | (t >= offset)] = 0.0
    return e.astype(np.float32)


def _face_image(face: Face, size: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = face.image.shape
    img = cv2.resize(face.image, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    lm = (face.landmarks.astype(np.float64) + 0.5) * [size / w, size / h] - 0.5
    return img, lm


def render_bump_video(video: BumpVideo, config: BumpConfig, write: Any) -> None:
    """Render frame by frame, calling ``write(frame_index_1based, uint8 gray frame)``."""
    face = other_faces(config.n_subjects)[video.subject_index]
    size, n, fps = config.size, video.n_frames, video.fps
    base, lm = _face_image(face, size)
    rng = np.random.default_rng(np.random.SeedSequence([video.seed, 0xB1]))
    fields = [(_envelope(n, e.onset, e.apex, e.hold, e.offset),
               sum(bump_field(lm, size, BUMPS[name], e.intensity) for name in sets))
              for e, sets in zip(video.events, video.sets, strict=True)]
    lid = _lid_field(lm, size)
    closure = np.zeros(n, np.float32)
    for a, b, depth in video.distractors.blinks:
        t = np.arange(a, b + 1)
        mid = a + (b - a) * 0.35  # closing is quicker than opening
        shape = np.where(t <= mid, _smoothstep((t - a) / max(mid - a, 1)), 1 - _smoothstep((t - mid) / max(b - mid, 1)))
        closure[a - 1:b] = np.maximum(closure[a - 1:b], depth * shape)
    jaw = bump_field(lm, size, BUMPS["jaw_drop"] + [((57,), (0.0, -1.0), 0.4, 0.2)], 0.1)
    talk = np.zeros(n, np.float32)
    for a, b in video.distractors.talk:
        t = np.arange(a, b + 1)
        f = rng.uniform(3.0, 5.0)
        talk[a - 1:b] = (0.5 - 0.5 * np.cos(2 * np.pi * f * (t - a) / fps)) * rng.uniform(0.5, 1.2)
    yaw = np.zeros(n, np.float32)
    for a, b, deg in video.distractors.turns:
        ramp = max(2, int(round((b - a) * 0.25)))
        t = np.arange(a, b + 1)
        yaw[a - 1:b] = deg * np.minimum(_smoothstep((t - a) / ramp), _smoothstep((b - t) / ramp))
    steps = rng.normal(0, 0.04, (n, 2)).cumsum(0)
    drift = steps - np.linspace(0, 1, n)[:, None] * steps[-1]  # a slow wander that comes back
    gain = 1 + 0.03 * np.sin(2 * np.pi * np.arange(n) / max(n, 1) * rng.uniform(0.5, 2) + rng.uniform(0, 6.3))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cx = float(lm[27:36, 0].mean())
    _, _, iod, _ = face_axes(lm)
    for i in range(n):
        c = float(np.cos(np.deg2rad(yaw[i])))
        shift = float(np.sin(np.deg2rad(yaw[i]))) * 0.35 * iod
        # inverse pose: output pixel -> neutral-face pixel (foreshortening about the nose, then drift)
        qx = (cx + (xx - cx - shift - drift[i, 0]) / c).astype(np.float32)
        qy = (yy - drift[i, 1]).astype(np.float32)
        d = (closure[i] * lid + talk[i] * jaw).astype(np.float32)
        for env, fld in fields:
            if env[i] > 0:
                d = d + env[i] * fld
        dq = cv2.remap(d, qx, qy, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        out = cv2.remap(base, (qx - dq[..., 0]).astype(np.float32), (qy - dq[..., 1]).astype(np.float32), interpolation=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE) * gain[i]
        out = out + rng.normal(0.0, config.noise, out.shape).astype(np.float32)
        write(i + 1, np.clip(np.round(out), 0, 255).astype(np.uint8))


def write_bump_layout(config: BumpConfig, out: Path, progress: Any = None) -> Path:
    """The SAMM-LV layout of the second renderer, ``fps.txt`` and ``distractors.json`` (per video name)."""
    from microexp.spot.data import FPS_FILE

    out = Path(out)
    videos = plan_bumps(config)
    write_samm_lv(config.as_longvideo(), out, progress, videos=videos,
                  render=lambda video, write: render_bump_video(video, config, write), quality=85)
    (out / FPS_FILE).write_text(f"{config.fps:g}\n")
    body = {f"{v.subject_index + 1:03d}_{v.video_index + 1}": asdict(v.distractors) for v in videos}
    (out / DISTRACTORS).write_text(json.dumps({"renderer": "bumps", "config": asdict(config), "videos": body},
                                              indent=1))
    return out
