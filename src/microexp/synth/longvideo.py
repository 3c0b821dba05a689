"""Synthetic long videos for spotting: a neutral real face with distractors, micro- and macro-expressions of known
class rendered at known onset / apex / offset, written in the SAMM-LV or CAS(ME)^2 long-video layout with its
annotation format (``microexp synth --layout samm_lv|casme_sq-long``), so the real loaders read them.

Reuses the clip generator (:mod:`microexp.synth.render`): the same TPS AU fields, blink field, head-jitter
similarity and flicker/noise model. What is new here is the timeline of a long video:

- distractors everywhere: partial blinks (about one every 3 s), a head random walk whose per-frame step scales
  with ``sqrt(30 / fps)`` (so the drift per second does not depend on the frame rate) plus a slow sway, aliased
  mains flicker and slow illumination drift, sensor noise;
- micro-expressions: AU set of the class, rise and fall drawn from the CASME II priors (about 150 ms each),
  intensity ``micro_intensity`` (subtle);
- macro-expressions: the same AU sets at ``macro_intensity``, 0.5-2.3 s long, lengths spread as the real
  CAS(ME)^2 macro-expressions' (median 1.2 s), rise and fall each 25-45 % of it, held at the apex in between
  (``macro_timing="uniform"``: the former rise and fall of 0.25-0.6 s and hold of 0.2-1 s);
- events never overlap and sit at least 0.5 s apart and away from the ends of the video.

Frames are rendered and written one at a time (memory bounded by one frame whatever the length). Deterministic:
the same config gives identical bytes.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from microexp.errors import ConfigError, DataError
from microexp.synth.aus import format_aus, parse_aus
from microexp.synth.faces import load_faces, max_faces
from microexp.synth.generate import CLASS_AUS, FALL_MS, RISE_MS
from microexp.synth.render import _face_geometry, blink_field, jitter_transforms, unit_field

LAYOUTS = ("samm_lv", "casme_sq-long")


@dataclass(frozen=True)
class LongVideoConfig:
    n_subjects: int = 3
    videos_per_subject: int = 2
    n_frames: int = 300
    fps: float = 30.0
    size: int = 64
    micro_per_video: int = 2
    macro_per_video: int = 1
    micro_intensity: float = 3.0
    macro_intensity: float = 6.0
    classes: tuple[str, ...] = ("negative", "positive", "surprise")
    blink_every_s: float = 3.0
    jitter: float = 0.15
    flicker: float = 0.015
    noise: float = 2.0
    neutral_videos: int = 0  # extra videos per dataset with no expression at all (spotting false alarms)
    seed: int = 0
    macro_timing: str = "varied"  # varied: lengths spread as real ones (_macro_timing) | uniform: the former

    def validate(self) -> None:
        if not 1 <= self.n_subjects <= max_faces():
            raise ConfigError(f"number of subjects must be 1..{max_faces()}, got {self.n_subjects}")
        if self.fps <= 0 or self.size < 16 or self.videos_per_subject < 1:
            raise ConfigError(f"fps {self.fps:g} > 0, size {self.size} >= 16, videos per subject "
                              f"{self.videos_per_subject} >= 1 needed")
        for c in self.classes:
            if c not in CLASS_AUS:
                raise ConfigError(f"unknown synthetic class {c!r}; known: {sorted(CLASS_AUS)}")
        if self.macro_timing not in MACRO_TIMINGS:
            raise ConfigError(f"macro_timing {self.macro_timing!r}: expected {' or '.join(MACRO_TIMINGS)}")
        need = (self.micro_per_video + self.macro_per_video) * (2.8 * self.fps) + self.fps
        if self.n_frames < need:
            raise ConfigError(f"{self.n_frames} frames at {self.fps:g} fps cannot hold {self.micro_per_video} micro "
                              f"+ {self.macro_per_video} macro expressions apart from each other: need >= {need:.0f}")


@dataclass(frozen=True)
class Event:
    """One rendered expression: 1-based frame numbers, inclusive."""

    type: str  # micro | macro
    label: str  # class (negative / positive / surprise)
    aus: str
    onset: int
    apex: int
    offset: int
    intensity: float
    hold: int = 0  # frames held at the apex (macro)


@dataclass
class LongVideo:
    subject_index: int
    video_index: int
    n_frames: int
    fps: float
    events: list[Event] = field(default_factory=list)
    seed: int = 0


def _ms(rng: np.random.Generator, prior: tuple[float, float, float], fps: float) -> int:
    median, q1, q3 = prior
    sigma = np.log(q3 / q1) / 1.349
    ms = float(np.clip(np.exp(rng.normal(np.log(median), sigma)), 80.0, 300.0))
    return max(2, int(round(ms * fps / 1000.0)))


# macro-expression length (s): lognormal, median and spread of the macro lengths of the CAS(ME)^2 annotation
# (median 1.18 s, quartiles 0.80-1.73 s), clipped to 0.5-2.3 s (the event budget of LongVideoConfig.validate)
MACRO_LENGTH_S = (1.2, 0.45, 0.5, 2.3)
MACRO_TIMINGS = ("varied", "uniform")


def _macro_timing(rng: np.random.Generator, config: LongVideoConfig) -> tuple[int, int, int]:
    """(rise, hold, fall) frames of one macro-expression. ``varied``: the whole length from
    :data:`MACRO_LENGTH_S`, rise and fall each 25-45 % of it, the rest held. ``uniform`` (the former): rise and fall
    0.25-0.6 s, hold 0.2-1 s, drawn independently (lengths 0.7-2.2 s bunched around 1.45 s: a spotter trained on
    them sees little of the real spread). Both draw three numbers, so the rest of the plan is the same."""
    fps = config.fps
    if config.macro_timing == "uniform":
        rise = max(3, int(round(rng.uniform(0.25, 0.6) * fps)))
        fall = max(3, int(round(rng.uniform(0.25, 0.6) * fps)))
        return rise, int(round(rng.uniform(0.2, 1.0) * fps)), fall
    median, sigma, lo, hi = MACRO_LENGTH_S
    length = float(np.clip(np.exp(rng.normal(np.log(median), sigma)), lo, hi)) * fps
    rise = max(3, int(round(rng.uniform(0.25, 0.45) * length)))
    fall = max(3, int(round(rng.uniform(0.25, 0.45) * length)))
    return rise, max(0, int(round(length)) - rise - fall), fall


def plan(config: LongVideoConfig) -> list[LongVideo]:
    """The timeline of every video (no pixels): events with type, class, AUs and timing."""
    config.validate()
    videos = []
    for s in range(config.n_subjects):
        for v in range(config.videos_per_subject + (config.neutral_videos if s == 0 else 0)):
            rng = np.random.default_rng(np.random.SeedSequence([config.seed & 0xFFFFFFFF, s, v, 0x10F6]))
            neutral = v >= config.videos_per_subject
            kinds = [] if neutral else ["micro"] * config.micro_per_video + ["macro"] * config.macro_per_video
            rng.shuffle(kinds)
            shapes = []
            for kind in kinds:
                if kind == "micro":
                    rise, fall, hold = _ms(rng, RISE_MS, config.fps), _ms(rng, FALL_MS, config.fps), 0
                    intensity = config.micro_intensity * float(np.exp(rng.normal(0, 0.15)))
                else:
                    rise, hold, fall = _macro_timing(rng, config)
                    intensity = config.macro_intensity * float(np.exp(rng.normal(0, 0.15)))
                label = config.classes[int(rng.integers(len(config.classes)))]
                choices = CLASS_AUS[label]
                shapes.append((kind, label, choices[int(rng.integers(len(choices)))], rise, hold, fall, intensity))
            # events left to right, at least 0.5 s apart and from the ends; the spare frames spread at random
            gap = int(round(0.5 * config.fps))
            total = sum(r + h + f + 1 for _, _, _, r, h, f, _ in shapes)
            free = max(config.n_frames - total - gap * (len(shapes) + 1), 0)
            extra = rng.multinomial(free, [1.0 / (len(shapes) + 1)] * (len(shapes) + 1))
            events, pos = [], 1 + gap + int(extra[0])
            for k, (kind, label, aus, rise, hold, fall, intensity) in enumerate(shapes):
                onset = pos
                events.append(Event(kind, label, format_aus(parse_aus(aus)), onset, onset + rise,
                                    onset + rise + hold + fall, round(intensity, 4), hold))
                pos = onset + rise + hold + fall + 1 + gap + int(extra[k + 1])
            videos.append(LongVideo(s, v, config.n_frames, config.fps, events,
                                    int(np.random.SeedSequence([config.seed & 0xFFFFFFFF, s, v]).generate_state(1)[0])))
    return videos


def envelope(n_frames: int, ev: Event) -> np.ndarray:
    """Raised-cosine rise onset->apex, hold, raised-cosine fall to the offset (1-based frames)."""
    t = np.arange(1, n_frames + 1, dtype=np.float64)
    e = np.zeros(n_frames)
    top = ev.apex + ev.hold
    rise = (t > ev.onset) & (t <= ev.apex)
    e[rise] = 0.5 - 0.5 * np.cos(np.pi * (t[rise] - ev.onset) / (ev.apex - ev.onset))
    e[(t > ev.apex) & (t <= top)] = 1.0
    fall = (t > top) & (t < ev.offset)
    e[fall] = 0.5 + 0.5 * np.cos(np.pi * (t[fall] - top) / (ev.offset - top))
    return e.astype(np.float32)


def _blinks(rng: np.random.Generator, n: int, fps: float, every_s: float) -> np.ndarray:
    b = np.zeros(n)
    t = np.arange(n, dtype=np.float64)
    start = rng.uniform(0, every_s * fps)
    down, up = max(0.1 * fps, 1.0), max(0.15 * fps, 1.0)
    while start < n - down - up:
        depth = rng.uniform(0.3, 0.5)
        r = (t >= start) & (t < start + down)
        b[r] = depth * (0.5 - 0.5 * np.cos(np.pi * (t[r] - start) / down))
        f = (t >= start + down) & (t < start + down + up)
        b[f] = depth * (0.5 + 0.5 * np.cos(np.pi * (t[f] - start - down) / up))
        start += rng.exponential(every_s * fps) + down + up
    return b.astype(np.float32)


def blink_envelope(video: LongVideo, config: LongVideoConfig) -> np.ndarray:
    """The eyelid closure (0..1) of every frame of ``video``, as :func:`render_video` draws it (its generator's
    first draws): the blinks' ground truth."""
    rng = np.random.default_rng(np.random.SeedSequence([video.seed, 0x5E1F]))
    return _blinks(rng, video.n_frames, video.fps, config.blink_every_s)


def blink_intervals(envelope: np.ndarray, floor: float = 0.02) -> list[tuple[int, int]]:
    """(first, last) 1-based frames of every blink of a closure envelope (closure above ``floor``)."""
    on = np.concatenate([[False], envelope > floor, [False]])
    starts = np.flatnonzero(~on[:-1] & on[1:])
    ends = np.flatnonzero(on[:-1] & ~on[1:])
    return [(int(a) + 1, int(b)) for a, b in zip(starts, ends, strict=True)]


def render_video(video: LongVideo, config: LongVideoConfig, write: Callable[[int, np.ndarray], None]) -> None:
    """Render ``video`` frame by frame, calling ``write(frame_index_1based, uint8 gray frame)``."""
    faces = load_faces(config.n_subjects)
    face = faces[video.subject_index]
    size = (config.size, config.size)
    rng = np.random.default_rng(np.random.SeedSequence([video.seed, 0x5E1F]))
    img, lm, _, _ = _face_geometry(face, size)
    n, fps = video.n_frames, video.fps
    fields = [(envelope(n, ev), ev.intensity * unit_field(face, ev.aus, size)) for ev in video.events]
    blink_env = _blinks(rng, n, fps, config.blink_every_s)
    bfield = blink_field(face, size)
    mats = jitter_transforms(rng, n, fps, lm[27], config.jitter * np.sqrt(30.0 / fps))
    mains = rng.choice([100.0, 120.0])
    f_alias = abs(mains - round(mains / fps) * fps) or fps / 3.0
    t = np.arange(n) / fps
    gain = 1 + config.flicker * np.sin(2 * np.pi * f_alias * t + rng.uniform(0, 2 * np.pi))
    gain = gain * (1 + config.flicker * np.sin(2 * np.pi * t / max(t[-1], 1e-6) + rng.uniform(0, 2 * np.pi)))
    yy, xx = np.mgrid[0:size[0], 0:size[1]].astype(np.float32)
    base = img.astype(np.float32)
    for i in range(n):
        inv = cv2.invertAffineTransform(mats[i])
        qx = inv[0, 0] * xx + inv[0, 1] * yy + inv[0, 2]
        qy = inv[1, 0] * xx + inv[1, 1] * yy + inv[1, 2]
        d = blink_env[i] * bfield
        for env, f in fields:
            if env[i] > 0:
                d = d + env[i] * f
        dq = cv2.remap(d, qx, qy, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        out = cv2.remap(base, qx - dq[..., 0], qy - dq[..., 1], interpolation=cv2.INTER_CUBIC,
                        borderMode=cv2.BORDER_REFLECT101) * gain[i]
        if config.noise > 0:
            shot = np.sqrt(np.clip(out, 0, 255) / 255.0) * config.noise * 0.5
            out = out + rng.normal(0.0, 1.0, out.shape).astype(np.float32) * (config.noise + shot)
        write(i + 1, np.clip(np.round(out), 0, 255).astype(np.uint8))


def _imwrite(path: Path, frame: np.ndarray, quality: int = 95) -> None:
    if not cv2.imwrite(str(path), frame, [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise DataError(f"{path}: could not write frame")


# ------------------------------------------------------------------------------------------------------- SAMM-LV
SAMM_NOTES = ["SAMM Long Videos Dataset - FACS Codes (synthetic, microexp synth)", "", "Symbol Key:", "",
              "AU Help:", "", "NOTE: Subjects with Apex Frame not annotated were labelled as -1.", "", ""]
SAMM_HEADER = ["Subject", "Filename", "Inducement Code", "Onset", "Apex", "Offset", "Duration", "Type",
               "Action Units", "Notes"]
MICRO_HEADER = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame", "Duration",
                "Type", "Action Units", "Notes", "Objective Classes", "Estimated Emotion"]
SAMM_EMOTION = {"negative": "Anger", "positive": "Happiness", "surprise": "Surprise"}


Render = Callable[[Any, Callable[[int, np.ndarray], None]], None]  # (video, write frame) -> None


def write_samm_lv(config: LongVideoConfig, out: Path, progress: Callable[[int], None] | None = None,
                  videos: list[Any] | None = None, render: Render | None = None, quality: int = 95) -> Path:
    """``out/SAMM_LongVideos_V2_Release.csv`` + ``out/SAMM_Micro_FACS_Codes_v2.csv`` (the micro sheet the
    emotion join reads) + ``out/SAMM_longvideos/<sss>_<v>/<sss>_<v>_0001.jpg``. ``videos`` and ``render``: another
    generator's timelines and renderer (:mod:`microexp.synth.bumps`), written in the same layout."""
    out = Path(out)
    rows, micro = [], []
    if render is None:
        def render(video: Any, write: Callable[[int, np.ndarray], None]) -> None:
            render_video(video, config, write)
    for video in plan(config) if videos is None else videos:
        subject = f"{video.subject_index + 1:03d}"
        name = f"{subject}_{video.video_index + 1}"
        folder = out / "SAMM_longvideos" / name
        folder.mkdir(parents=True, exist_ok=True)
        render(video, lambda i, f, folder=folder, name=name: _imwrite(folder / f"{name}_{i:04d}.jpg", f, quality))
        for k, ev in enumerate(video.events, 1):
            fn = f"{name}_{k}"
            kind = "Macro" if ev.type == "macro" else "Micro - 1/2"
            rows.append([subject, fn, 1, ev.onset, ev.apex, ev.offset, ev.offset - ev.onset + 1, kind, ev.aus, ""])
            if ev.type == "micro":
                micro.append([subject, fn, 1, ev.onset, ev.apex, ev.offset, ev.offset - ev.onset + 1, "Micro - 1/2",
                              ev.aus, "", "", SAMM_EMOTION[ev.label]])
        if progress is not None:
            progress(1)
    with open(out / "SAMM_LongVideos_V2_Release.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        for note in SAMM_NOTES:
            w.writerow([note] + [""] * (len(SAMM_HEADER) - 1))
        w.writerow(SAMM_HEADER)
        w.writerows(rows)
    with open(out / "SAMM_Micro_FACS_Codes_v2.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(MICRO_HEADER)
        w.writerows(micro)
    return out


# ----------------------------------------------------------------------------------------------------- CAS(ME)^2
def write_casme_sq_long(config: LongVideoConfig, out: Path, progress: Callable[[int], None] | None = None) -> Path:
    """``out/CAS(ME)^2code_final(Updated).csv`` (the header-less export with the rawpic folder appended) +
    ``out/rawpic/s15/15_0401girlcrashing/img001.jpg``."""
    from microexp.data.casme_sq import PARTICIPANT_SUBJECT, VIDEO_CODE, VIDEO_NAME

    out = Path(out)
    names = list(VIDEO_CODE)
    if config.videos_per_subject + config.neutral_videos > len(names):
        raise ConfigError(f"the CAS(ME)^2 layout has {len(names)} video names; asked for "
                          f"{config.videos_per_subject + config.neutral_videos} videos per subject")
    if config.n_subjects > len(PARTICIPANT_SUBJECT):
        raise ConfigError(f"the CAS(ME)^2 layout has {len(PARTICIPANT_SUBJECT)} participants; asked for "
                          f"{config.n_subjects}")
    rows = []
    for video in plan(config):
        part = video.subject_index + 1
        subj = PARTICIPANT_SUBJECT[part]
        vname = names[video.video_index]
        code = VIDEO_CODE[vname]
        rel = f"s{subj}/{subj}_{code}{VIDEO_NAME[code]}"
        folder = out / "rawpic" / rel
        folder.mkdir(parents=True, exist_ok=True)
        render_video(video, config, lambda i, f, folder=folder: _imwrite(folder / f"img{i:03d}.jpg", f))
        for k, ev in enumerate(video.events, 1):
            rows.append([part, f"{vname}_{k}", ev.onset, ev.apex, ev.offset, ev.aus or "NULL", ev.label,
                         f"{ev.type}-expression", ev.label, ev.offset - ev.onset, rel])
        if progress is not None:
            progress(1)
    with open(out / "CAS(ME)^2code_final(Updated).csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return out


def write_layout(layout: str, config: LongVideoConfig, out: Path,
                 progress: Callable[[int], None] | None = None) -> Path:
    """The videos and annotation of ``layout``, plus ``fps.txt``: the real releases have one frame rate each
    (SAMM-LV 200, CAS(ME)^2 30), the synthetic ones any; the spotting loader reads the file
    (:func:`microexp.spot.data.release_fps`)."""
    from microexp.spot.data import FPS_FILE

    if layout not in LAYOUTS:
        raise ConfigError(f"unknown long-video layout {layout!r} (known: {', '.join(LAYOUTS)})")
    out = write_samm_lv(config, out, progress) if layout == "samm_lv" else write_casme_sq_long(config, out, progress)
    (Path(out) / FPS_FILE).write_text(f"{config.fps:g}\n")
    if layout == "samm_lv":  # the blinks' ground truth, as the second renderer writes it (spot.transfer reads it)
        import json

        body = {f"{v.subject_index + 1:03d}_{v.video_index + 1}": {
            "blinks": [(a, b, 1.0) for a, b in blink_intervals(blink_envelope(v, config))], "turns": [], "talk": []}
            for v in plan(config)}
        (Path(out) / "distractors.json").write_text(json.dumps({"renderer": "tps", "videos": body}, indent=1))
    return out


def events_of(config: LongVideoConfig) -> list[tuple[int, int, list[Event]]]:
    """(subject index, video index, events) of every video: the ground truth the writers put in the files."""
    return [(v.subject_index, v.video_index, list(v.events)) for v in plan(config)]


__all__ = ["LAYOUTS", "Event", "LongVideo", "LongVideoConfig", "blink_envelope", "blink_intervals", "envelope",
           "events_of", "plan", "render_video", "write_layout"]


def run_cli(args: Any, renderer: tuple[Any, Any, Any, str] | None = None) -> int:
    """``microexp synth --layout samm_lv|casme_sq-long``: ``--frames`` (frames per video) defaults to 10 s.
    ``renderer``: (config class, planner, writer(config, out, progress), name) of another long-video renderer
    writing the same layout (``--renderer bumps``: :mod:`microexp.synth.bumps`); default this module's."""
    import time

    from tqdm import tqdm

    from microexp.synth.generate import SynthConfig

    d = SynthConfig()
    fps = float(args.fps) if args.fps is not None else d.fps
    frames = int(args.frames) if args.frames is not None else int(round(10 * fps))
    classes = d.classes if args.classes is None else tuple(c.strip() for c in str(args.classes).split(",")
                                                           if c.strip())
    make, planner, writer, name = renderer or (
        LongVideoConfig, plan, lambda c, out, progress: write_layout(args.layout, c, out, progress), "")
    config = make(n_subjects=d.n_subjects if args.subjects is None else args.subjects,
                  videos_per_subject=args.videos, n_frames=frames, fps=fps, size=args.size, classes=classes,
                  seed=args.seed, neutral_videos=1)
    config.validate()
    videos = planner(config)
    start = time.perf_counter()
    with tqdm(total=len(videos), desc=f"synth{f' ({name})' if name else ''}", unit="video",
              disable=args.no_progress) as bar:
        out = writer(config, args.out, bar.update)
    n_micro = sum(e.type == "micro" for v in videos for e in v.events)
    n_macro = sum(e.type == "macro" for v in videos for e in v.events)
    dataset = "samm_lv" if args.layout == "samm_lv" else "casme_sq"
    print(f"wrote {len(videos)} long videos ({config.n_subjects} subjects, {frames} frames {config.size}x"
          f"{config.size} at {fps:g} fps; {n_micro} micro + {n_macro} macro expressions, one neutral video) to "
          f"{out} [{args.layout}{f', second renderer: {name}' if name else ''}] in "
          f"{time.perf_counter() - start:.1f} s; spot with: microexp evaluate --task spot "
          f"--dataset {dataset} --root {out} (its frame rate is in {out}/fps.txt)")
    return 0
