"""The one preprocessing path from a clip record to model input, shared by ``evaluate``, ``preprocess`` and
``predict`` so that training and inference can never preprocess differently.

Per clip: select frames -> temporal positions -> read gray (and, with ``color: rgb``, colour) frames -> face +
68 landmarks on the reference (onset, else first selected) frame -> one source->aligned transform per frame
(the reference one for ``align`` none/onset; rigid registration for ``track``; every frame's own landmarks and
boxes for ``per-frame``) -> region crops per stream -> TIM or flow interpolation when asked -> raw / saliency /
flow / flow+strain -> per-clip normalisation -> zero padding to ``pad_to``.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from microexp.data.records import ClipRecord, ClipSet, Exclusion
from microexp.errors import MicroexpError, PreprocessError
from microexp.preprocess import align as al
from microexp.preprocess import regions as rg
from microexp.preprocess import temporal as tp
from microexp.preprocess.cache import ClipCache, clip_key, config_digest
from microexp.preprocess.config import PreprocessConfig, StreamConfig
from microexp.preprocess.face import TEMPLATE, Face, NoFaceError, find_face, get_backend
from microexp.preprocess.flow import flow_stream
from microexp.preprocess.normalise import normalise_clip
from microexp.preprocess.temporal import flow_interpolate, pad_frames, saliency, tim

__all__ = ["Prepared", "ClipGeometry", "clip_geometry", "preprocess_clip", "preprocess_set",
           "select_positions", "temporal_positions"]


def select_positions(record: ClipRecord, config: PreprocessConfig) -> list[int]:
    """Positions (indices into ``record.frames``) chosen by ``config.selection`` (see :mod:`.temporal`)."""
    return tp.select_positions(record, config.selection)


def temporal_positions(positions: list[int], config: PreprocessConfig) -> list[int]:
    """The selected positions mapped to ``config.frames`` positions (``tim`` keeps them all)."""
    return tp.temporal_positions(positions, config.temporal, config.frames, config.window)


@dataclass
class ClipGeometry:
    """Where the face is: ``transforms[pos]`` maps source pixels of frame ``pos`` to aligned pixels;
    ``landmarks`` (68, 2) and ``face_box`` are in aligned coordinates; ``face`` is the reference detection.
    ``frame_faces`` (``align: per-frame`` only): every loaded frame's own face, whose landmarks place that
    frame's regions (its transform is the identity)."""

    ref: int
    transforms: dict[int, np.ndarray]
    landmarks: np.ndarray
    face_box: al.Box
    face: Face | None
    frame_faces: dict[int, Face] | None = None

    def landmarks_at(self, pos: int) -> np.ndarray:
        return self.frame_faces[pos].landmarks if self.frame_faces is not None else self.landmarks

    def face_box_at(self, pos: int) -> al.Box:
        if self.frame_faces is None:
            return self.face_box
        return al.face_box(*self.frame_faces[pos].eyes)


def _key_positions(record: ClipRecord, selected: list[int]) -> tuple[int, int]:
    """Onset and apex positions for onset->apex flow (apex missing: the middle selected frame, as MEB does
    for SMIC)."""
    try:
        onset = record.position(record.onset) if record.onset is not None else selected[0]
        apex = record.position(record.apex) if record.apex is not None else selected[len(selected) // 2]
    except KeyError as exc:
        raise PreprocessError(str(exc.args[0])) from None
    return onset, apex


def clip_geometry(frames: dict[int, np.ndarray], ref: int, config: PreprocessConfig) -> ClipGeometry:
    """Face, landmarks and per-frame transforms of a clip whose needed frames are loaded in ``frames``."""
    ref_img = frames[ref]
    h, w = ref_img.shape[:2]
    if config.face == "none":
        # frames are face crops already: the canonical template places the eyes/mouth regions
        ident = al.identity()
        return ClipGeometry(ref, dict.fromkeys(frames, ident), TEMPLATE * (w, h), (0.0, 0.0, float(w), float(h)),
                            None)
    try:
        face = find_face(ref_img, fallback_frame=config.on_no_face == "frame")
    except NoFaceError:
        raise NoFaceError(f"no face detected in the reference frame (position {ref})") from None
    left, right = face.eyes
    a_ref = al.eye_alignment(left, right, rotate=config.align in ("onset", "track"))
    lm = al.apply(a_ref, face.landmarks)
    box = al.face_box(*al.apply(a_ref, np.array([left, right])))
    if config.align == "per-frame":
        # the FuseNet seed: a detection and 68 landmarks on every frame, crops sliced at that frame's own boxes
        own = {pos: face if pos == ref else _frame_face(img, face) for pos, img in frames.items()}
        return ClipGeometry(ref, dict.fromkeys(frames, a_ref), lm, box, face, own)
    transforms: dict[int, np.ndarray] = {}
    src_box = _source_box(a_ref, box)
    for pos, img in frames.items():
        if pos == ref or config.align in ("none", "onset"):
            transforms[pos] = a_ref
        else:  # track: rigid registration of each frame onto the reference frame
            transforms[pos] = al.compose(a_ref, al.register_rigid(ref_img, img, src_box))
    return ClipGeometry(ref, transforms, lm, box, face)


def _frame_face(img: np.ndarray, ref_face: Face) -> Face:
    """The face of one frame; where the detector misses it, landmarks fitted inside the reference face's box."""
    f = get_backend().detect(img)
    if f is not None:
        return f
    return Face(ref_face.box, 0.0, get_backend().landmarks(img, ref_face.box))


def _source_box(a: np.ndarray, box: al.Box) -> al.Box:
    corners = np.array([[box[0], box[1]], [box[2], box[1]], [box[0], box[3]], [box[2], box[3]]])
    src = al.apply(al.invert(a), corners)
    return (*src.min(0), *src.max(0))


class _Regions:
    """Region crops of one clip, memoised per (region, size, position, colour). ``color``: the frames in R, G, B
    (``preprocess.color: rgb``), cropped with the same boxes as the gray ones."""

    def __init__(self, frames: dict[int, np.ndarray], geo: ClipGeometry, roi_enlarge: bool = False,
                 how: str = "area", color: dict[int, np.ndarray] | None = None) -> None:
        self.frames, self.geo, self.roi_enlarge, self.how, self.color = frames, geo, roi_enlarge, how, color
        self.areas_mode = "paper"  # HTNet's face areas: "paper" or the code's transposed crop ("code")
        self._memo: dict[tuple[str, tuple[int, int], int, bool], np.ndarray] = {}
        self._canvas: dict[tuple[int, bool], np.ndarray] = {}
        self._boxes: dict[tuple[str, int | None], al.Box] = {}

    def box(self, region: str, pos: int) -> al.Box:
        key = (region, pos if self.geo.frame_faces is not None else None)  # per-frame: each frame its own box
        if key not in self._boxes:
            lm = self.geo.landmarks_at(pos)
            self._boxes[key] = {"face": lambda: self.geo.face_box_at(pos), "eyes": lambda: rg.eyes_box(lm),
                                "mouth": lambda: rg.mouth_box(lm)}[region]()
        return self._boxes[key]

    def _frame(self, pos: int, color: bool) -> np.ndarray:
        if not color:
            return self.frames[pos]
        if self.color is None:
            raise PreprocessError("colour frames were not loaded")
        return self.color[pos]

    def areas(self, img: np.ndarray, pos: int, mode: str) -> np.ndarray:
        """HTNet's four facial areas of a face-region image (C, H, W) (:func:`regions.face_areas`), placed by the
        landmarks of frame ``pos`` in the face box."""
        x0, y0, x1, y1 = self.box("face", pos)
        rows, cols = img.shape[1:]
        pts = (rg.five_points(self.geo.landmarks_at(pos)) - (x0, y0)) / (x1 - x0, y1 - y0) * (cols, rows)
        return rg.face_areas(img, pts, mode)

    def get(self, region: str, size: tuple[int, int], pos: int, color: bool = False) -> np.ndarray:
        key = (region, tuple(size), pos, color)
        if key not in self._memo:
            frame = self._frame(pos, color)
            if region == "face_areas":  # HTNet: the face, then its four areas tiled (raw frames; flow: below)
                face = self.get("face", size, pos, color)
                tiled = self.areas(np.moveaxis(face, -1, 0) if face.ndim == 3 else face[None], pos,
                                   self.areas_mode)
                out = np.moveaxis(tiled, 0, -1) if face.ndim == 3 else tiled[0]
            elif region == "whole":
                out = al.resize(frame, size, self.how).astype(np.float32)
            elif region.startswith("roi"):
                out = rg.aouayeb_roi(self.canvas(pos, color), int(region[3:]), size, self.how)
            else:
                out = al.extract(frame, self.geo.transforms[pos], self.box(region, pos), size, how=self.how)
            self._memo[key] = out
        return self._memo[key]

    def canvas(self, pos: int, color: bool = False) -> np.ndarray:
        if (pos, color) not in self._canvas:
            frame = self._frame(pos, color)
            if self.geo.face is None:
                face = frame.astype(np.float32)  # face crops: the frame is the face box
            else:
                white = (255.0, 255.0, 255.0) if color else 255.0
                face = al.extract(frame, self.geo.transforms[pos], rg.aouayeb_face_box(self.geo.landmarks_at(pos)),
                                  None, border=cv2.BORDER_CONSTANT, border_value=white)  # type: ignore[arg-type]
            self._canvas[pos, color] = rg.contain_canvas(face, self.roi_enlarge)
        return self._canvas[pos, color]


def _flow_dims(stream: StreamConfig, flow_size: int) -> tuple[int, int]:
    rows, cols = stream.size
    side = max(flow_size, rows, cols)
    s = side / max(rows, cols)
    return max(int(round(rows * s)), 8), max(int(round(cols * s)), 8)


def preprocess_clip(record: ClipRecord, config: PreprocessConfig) -> dict[str, np.ndarray]:
    """Model input streams for one clip, each float32 (C, T, H, W). Raises PreprocessError (or a DataError
    for unreadable frames) when the clip cannot be preprocessed."""
    selected = select_positions(record, config)
    if not selected:
        raise PreprocessError("no frames selected")
    positions = temporal_positions(selected, config)
    needs_frames = any(s.kind in ("raw", "saliency") or config.flow_pairs == "consecutive" for s in config.streams)
    needs_pair = any(s.kind in ("flow", "flowstrain") and config.flow_pairs == "onset_apex" for s in config.streams)
    onset, apex = (_key_positions(record, selected) if needs_pair or config.face != "none"
                   else (selected[0], selected[0]))
    # landmarks come from the onset frame (first selected frame when there is no onset) only
    ref = onset if config.face != "none" else (positions[0] if positions else onset)
    load = set(positions if needs_frames else []) | ({onset, apex} if needs_pair else set()) | {ref}
    rgb = config.color == "rgb" and any(s.is_image for s in config.streams)
    if rgb:
        color = {p: rg.read_rgb(record.frames[p]) for p in sorted(load)}
        frames = {p: rg.to_gray(img, config.gray, order="rgb") for p, img in color.items()}
    else:
        color, frames = None, {p: rg.read_gray(record.frames[p], config.gray) for p in sorted(load)}
    shapes = {f.shape for f in frames.values()}
    if len(shapes) > 1:
        raise PreprocessError(f"frames differ in size {sorted(shapes)}")
    geo = clip_geometry(frames, ref, config)
    reg = _Regions(frames, geo, bool(dict(config.extra).get("roi_enlarge", False)), config.resize, color)
    reg.areas_mode = str(dict(config.extra).get("face_areas", "paper"))

    out: dict[str, np.ndarray] = {}
    interpolated: dict[tuple[str, tuple[int, int]], np.ndarray] = {}  # streams of one region share the frames
    for stream in config.streams:
        if stream.is_image:
            if config.temporal == "interpolate_pad":
                # flow interpolation works at flow_size (the seed interpolates 150x150 frames), then resizes
                dims = _flow_dims(stream, config.flow_size)
                if (stream.region, dims) not in interpolated:
                    seq = np.stack([reg.get(stream.region, dims, p, rgb) for p in positions])
                    interpolated[stream.region, dims] = flow_interpolate(seq, config.frames)
                clip = np.stack([al.resize(f, stream.size, config.resize) for f in interpolated[stream.region, dims]])
            else:
                clip = np.stack([reg.get(stream.region, stream.size, p, rgb) for p in positions])
            if config.temporal == "tim":
                clip = tim(clip, config.frames)
            if stream.kind == "saliency":
                clip = saliency(clip, config.saliency)
            arr = np.moveaxis(clip, -1, 0) if rgb else clip[None]  # (C, T, H, W)
        else:
            strain = stream.kind == "flowstrain"
            dims = _flow_dims(stream, config.flow_size)
            areas = stream.region == "face_areas"  # HTNet: flow of the whole face, then its four areas tiled
            if areas:
                stream = StreamConfig(stream.name, "face", stream.size, stream.kind)
            if config.flow_pairs == "onset_apex":
                pairs = [(reg.get(stream.region, dims, onset), reg.get(stream.region, dims, apex))]
            else:
                seq = np.stack([reg.get(stream.region, dims, p) for p in positions])
                if config.temporal == "tim":
                    seq = tim(seq, config.frames)
                elif config.temporal == "interpolate_pad":
                    seq = flow_interpolate(seq, config.frames)
                if len(seq) < 2:
                    raise PreprocessError("consecutive flow needs at least 2 frames")
                pairs = list(zip(seq[:-1], seq[1:], strict=True))
            arr = np.stack([flow_stream(a, b, stream.size, config.flow, strain, config.strain_at)
                            for a, b in pairs], axis=1)
            if areas:
                arr = np.stack([reg.areas(arr[:, i], onset, reg.areas_mode) for i in range(arr.shape[1])], axis=1)
        arr = normalise_clip(arr.astype(np.float32), config.normalise)
        if config.pad_to is not None:
            arr = pad_frames(arr, config.stream_shape(stream.name)[1])
        out[stream.name] = arr
    return out


@dataclass
class Prepared:
    """Preprocessed arrays of a clip set: ``streams[name]`` is (N, C, T, H, W); ``index`` maps rows to records."""

    streams: dict[str, np.ndarray]
    index: np.ndarray
    excluded: list[Exclusion]

    def __len__(self) -> int:
        return len(self.index)


def _reason(exc: MicroexpError) -> str:
    return f"preprocessing failed: {exc}"


def _work(args: tuple[int, ClipRecord, PreprocessConfig, str | None, str]) -> tuple[int, dict[str, np.ndarray] | str]:
    """One clip in a worker process: preprocess and store in the cache (so an interrupted run resumes)."""
    i, record, config, cache_root, key = args
    cv2.setNumThreads(1)  # one clip per core; no oversubscription
    try:
        value: dict[str, np.ndarray] | str = preprocess_clip(record, config)
    except MicroexpError as exc:
        value = _reason(exc)
    except cv2.error as exc:  # e.g. a degenerate image OpenCV refuses: the clip is excluded, the run goes on
        value = _reason(PreprocessError(f"OpenCV: {str(exc).strip().splitlines()[-1]}"))
    if cache_root is not None:
        ClipCache(cache_root).put(key, value)
    return i, value


def _pool_context() -> multiprocessing.context.BaseContext:
    # spawn, not fork: a child forked after OpenCV has started its thread pool can wait forever on it
    # (observed: both workers asleep at 0 % CPU). Scripts that call preprocess_set with workers > 1 therefore
    # need the usual ``if __name__ == "__main__":`` guard.
    return multiprocessing.get_context("spawn")


def preprocess_set(clips: ClipSet, config: PreprocessConfig, progress: bool = True,
                   cache: ClipCache | str | Path | None = None, workers: int | None = 1,
                   on_result: Callable[[int, str], None] | None = None) -> Prepared:
    """Preprocess every clip; a clip that fails is excluded with its reason, never silently dropped.

    cache: a :class:`ClipCache` or folder; cached clips (and cached exclusions) are not recomputed, so an
    interrupted run resumes. workers: processes for the clips that are not cached (None: all cores; 1: in
    this process). on_result(i, "cached" | "computed" | "excluded") is called per clip (for reports).
    """
    records = clips.records
    store = ClipCache(cache) if isinstance(cache, str | Path) else cache
    digest = config_digest(config)
    keys = [clip_key(r, config, digest) if store is not None else "" for r in records]
    results: dict[int, dict[str, np.ndarray] | str] = {}
    todo: list[int] = []
    for i in range(len(records)):
        hit = store.get(keys[i]) if store is not None else None
        if hit is None:
            todo.append(i)
        else:
            results[i] = hit
            if on_result:
                on_result(i, "cached")
    n_workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    root = str(store.root) if store is not None else None
    bar = tqdm(total=len(records), initial=len(records) - len(todo), desc="preprocess", unit="clip",
               disable=not progress)
    jobs = [(i, records[i], config, root, keys[i]) for i in todo]
    if n_workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=min(n_workers, len(todo)), mp_context=_pool_context()) as pool:
            futures = [pool.submit(_work, job) for job in jobs]
            for fut in as_completed(futures):
                i, value = fut.result()
                results[i] = value
                bar.update(1)
                if on_result:
                    on_result(i, "excluded" if isinstance(value, str) else "computed")
    else:
        for job in jobs:
            i, value = _work(job)
            results[i] = value
            bar.update(1)
            if on_result:
                on_result(i, "excluded" if isinstance(value, str) else "computed")
    bar.close()

    arrays: dict[str, list[np.ndarray]] = {s.name: [] for s in config.streams}
    kept: list[int] = []
    excluded: list[Exclusion] = []
    for i, record in enumerate(records):
        value = results[i]
        if isinstance(value, str):
            excluded.append(Exclusion(record.key, value))
            continue
        for name in arrays:
            arrays[name].append(value[name])
        kept.append(i)
    stacked: dict[str, np.ndarray] = {}
    for name, v in arrays.items():
        if not v:
            stacked[name] = np.zeros((0, *config.stream_shape(name)), np.float32)
            continue
        shapes = sorted({a.shape for a in v})
        if len(shapes) > 1:
            raise PreprocessError(f"stream {name!r}: clips give different shapes {shapes}; "
                                  "use a temporal mode that fixes the frame count")
        stacked[name] = np.stack(v)
    return Prepared(stacked, np.array(kept, dtype=np.int64), excluded)
