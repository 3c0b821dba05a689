"""The one preprocessing path from a clip record to model input, shared by ``evaluate``, ``preprocess`` and
``predict`` so that training and inference can never preprocess differently."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from tqdm.auto import tqdm

from microexp.data.frames import read_frame
from microexp.data.records import ClipRecord, ClipSet, Exclusion
from microexp.errors import MicroexpError, PreprocessError
from microexp.preprocess.config import PreprocessConfig, StreamConfig


def select_positions(record: ClipRecord, config: PreprocessConfig) -> list[int]:
    """Positions (indices into ``record.frames``) chosen by ``config.selection``."""
    n = record.n_frames
    if config.selection == "whole" or record.onset is None:
        return list(range(n))
    start = record.position(record.onset)
    if config.selection == "onset_apex":
        end = record.position(record.apex) if record.apex is not None else n - 1
    elif config.selection == "keyframes":
        keys = [record.onset, record.apex, record.offset]
        return [record.position(k) for k in keys if k is not None]
    else:
        end = record.position(record.offset) if record.offset is not None else n - 1
    return list(range(start, end + 1))


def temporal_positions(positions: Sequence[int], config: PreprocessConfig) -> list[int]:
    """Map the selected positions to exactly ``config.frames`` positions."""
    t = config.frames
    if config.temporal == "none":
        return list(positions)
    if config.temporal == "first":
        if len(positions) < t:
            raise PreprocessError(f"needs {t} frames, has {len(positions)}")
        return list(positions[:t])
    if config.temporal == "window":
        if config.window is None:
            raise PreprocessError("temporal='window' needs preprocess.window=(start, stop)")
        a, b = config.window
        if b > len(positions):
            raise PreprocessError(f"window {a}..{b - 1} needs {b} frames, has {len(positions)}")
        return list(positions[a:b])
    # uniform: nearest-frame resampling over the selected span (shorter clips repeat frames)
    idx = np.round(np.linspace(0, len(positions) - 1, t)).astype(int)
    return [positions[i] for i in idx]


def _crop(frame: np.ndarray, stream: StreamConfig) -> np.ndarray:
    if stream.region not in ("face", "whole"):
        raise PreprocessError(f"region {stream.region!r} needs face landmarks (preprocess.face='dlib')")
    rows, cols = stream.size
    return cv2.resize(frame, (cols, rows), interpolation=cv2.INTER_AREA)


def normalise_clip(x: np.ndarray, mode: str) -> np.ndarray:
    if mode == "zscore":
        return (x - x.mean()) / (x.std() + 1e-6)
    if mode == "minus1to1":
        lo, hi = float(x.min()), float(x.max())
        return 2.0 * (x - lo) / max(hi - lo, 1e-6) - 1.0
    return x  # "global" is fitted on the training fold by the trainer; "none" leaves values in [0, 255]


def preprocess_clip(record: ClipRecord, config: PreprocessConfig) -> dict[str, np.ndarray]:
    """Model input streams for one clip, each float32 (C, T, H, W)."""
    positions = temporal_positions(select_positions(record, config), config)
    frames = [read_frame(record.frames[p], gray=True) for p in positions]
    out: dict[str, np.ndarray] = {}
    for stream in config.streams:
        if stream.kind != "raw":
            raise PreprocessError(f"stream kind {stream.kind!r} is not available in this pipeline")
        clip = np.stack([_crop(f, stream) for f in frames]).astype(np.float32)[None]
        out[stream.name] = normalise_clip(clip, config.normalise).astype(np.float32)
    return out


@dataclass
class Prepared:
    """Preprocessed arrays of a clip set: ``streams[name]`` is (N, C, T, H, W); ``index`` maps rows to records."""

    streams: dict[str, np.ndarray]
    index: np.ndarray
    excluded: list[Exclusion]

    def __len__(self) -> int:
        return len(self.index)


def preprocess_set(clips: ClipSet, config: PreprocessConfig, progress: bool = True) -> Prepared:
    """Preprocess every clip; a clip that fails is excluded with its reason, never silently dropped."""
    arrays: dict[str, list[np.ndarray]] = {s.name: [] for s in config.streams}
    kept: list[int] = []
    excluded: list[Exclusion] = []
    for i, record in enumerate(tqdm(clips.records, desc="preprocess", unit="clip", disable=not progress)):
        try:
            streams = preprocess_clip(record, config)
        except MicroexpError as exc:
            excluded.append(Exclusion(record.key, f"preprocessing failed: {exc}"))
            continue
        for name, arr in streams.items():
            arrays[name].append(arr)
        kept.append(i)
    stacked = {k: (np.stack(v) if v else np.zeros((0,), np.float32)) for k, v in arrays.items()}
    return Prepared(stacked, np.array(kept, dtype=np.int64), excluded)
