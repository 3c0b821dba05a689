"""Frame selection and temporal normalisation: fixed windows, first-N, uniform resampling, Joshi's 9 key frames,
the temporal interpolation model (TIM), the Microfacial-exp motion-compensated frame interpolation and zero
padding, and the Microfacial-exp saliency stream."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from microexp.data.records import ClipRecord
from microexp.errors import PreprocessError
from microexp.preprocess.flow import compute_flow


def joshi_keyframes(onset: int, apex: int, offset: int) -> list[int]:
    """Joshi's 9 frame numbers (``get_next_three``, docs/models.md §2.2): onset, onset + k*floor((apex -
    onset)/4) for k=1..3, apex, apex + k*floor((offset - apex)/4) for k=1..3, offset. No interpolation."""
    a, b = (apex - onset) // 4, (offset - apex) // 4
    return [onset, *(onset + k * a for k in (1, 2, 3)), apex, *(apex + k * b for k in (1, 2, 3)), offset]


def select_positions(record: ClipRecord, selection: str) -> list[int]:
    """Positions (indices into ``record.frames``) chosen by ``selection``, in true temporal order."""
    n = record.n_frames
    if selection == "whole" or record.onset is None:
        if selection in ("keyframes9",):
            raise PreprocessError(f"selection={selection!r} needs onset, apex and offset")
        return list(range(n))
    try:
        start = record.position(record.onset)
        if selection == "onset_apex":
            end = record.position(record.apex) if record.apex is not None else n - 1
        elif selection == "keyframes":
            return [record.position(k) for k in (record.onset, record.apex, record.offset) if k is not None]
        elif selection == "keyframes9":
            if record.apex is None or record.offset is None:
                raise PreprocessError("selection='keyframes9' needs onset, apex and offset")
            return [record.position(k) for k in joshi_keyframes(record.onset, record.apex, record.offset)]
        else:
            end = record.position(record.offset) if record.offset is not None else n - 1
    except KeyError as exc:
        raise PreprocessError(str(exc.args[0])) from None
    if end < start:
        raise PreprocessError(f"offset/apex frame precedes the onset ({record.onset})")
    return list(range(start, end + 1))


def temporal_positions(positions: Sequence[int], mode: str, frames: int,
                       window: tuple[int, int] | None = None) -> list[int]:
    """Map the selected positions to exactly ``frames`` positions (``tim`` and ``interpolate_pad`` interpolate
    later, so they keep all). ``window`` (start, stop) keeps positions start..stop-1, as Python slices do."""
    t = frames
    if mode in ("none", "tim", "interpolate_pad"):
        return list(positions)
    if mode == "first":
        if len(positions) < t:
            raise PreprocessError(f"needs {t} frames, has {len(positions)}")
        return list(positions[:t])
    if mode == "window":
        if window is None:
            raise PreprocessError("temporal='window' needs preprocess.window=(start, stop)")
        a, b = window
        if b > len(positions):
            raise PreprocessError(f"window {a}..{b - 1} needs {b} frames, has {len(positions)}")
        return list(positions[a:b])
    # uniform: nearest-frame resampling over the selected span (shorter clips repeat frames)
    idx = np.round(np.linspace(0, len(positions) - 1, t)).astype(int)
    return [positions[i] for i in idx]


def tim_curve(n: int, t: np.ndarray) -> np.ndarray:
    """The continuous path-graph embedding F_n(t) of TIM: row k-1 is sin(pi k t + pi (n - k) / (2n)),
    k = 1..n-1. At t = j/n (j = 1..n) these are the non-trivial Laplacian eigenvectors of the path graph P_n."""
    k = np.arange(1, n)[:, None]
    return np.sin(np.pi * k * np.asarray(t, dtype=np.float64)[None, :] + np.pi * (n - k) / (2 * n))


def tim(clip: np.ndarray, frames: int) -> np.ndarray:
    """Temporal interpolation model (Zhou et al. 2011; Pfister et al. 2011): resample a clip (T, ...) to
    ``frames`` frames along the low-dimensional curve of the path graph.

    Steps of the paper: centre the frames on their mean, reduce them with PCA, find the linear map W that
    sends the reduced frames onto the graph embedding Y = F_n(j/n), and synthesise new frames at
    t in [1/n, 1] as mean + U (W^T)^{-1} F_n(t). Because Y has full row rank n-1 and both Y and the centred
    frames X annihilate the all-ones vector, U (W^T)^{-1} equals X Y^+ exactly whenever the centred frames have
    rank n-1 (the paper's assumption), and X Y^+ is its minimum-norm extension when they do not (repeated or
    static frames), so that closed form is used: new = mean + X Y^T (Y Y^T)^{-1} F_n(t). Input frames are
    reproduced exactly at t = j/n.
    """
    n = clip.shape[0]
    if n == frames:
        return clip.astype(np.float32, copy=True)
    if n == 1:
        return np.repeat(clip, frames, axis=0).astype(np.float32)
    x = clip.reshape(n, -1).astype(np.float64).T  # D x n
    mean = x.mean(axis=1, keepdims=True)
    xc = x - mean
    y = tim_curve(n, np.arange(1, n + 1) / n)  # (n-1) x n
    a = xc @ np.linalg.solve(y @ y.T, y).T  # D x (n-1)
    t_new = np.linspace(1.0 / n, 1.0, frames)
    out = mean + a @ tim_curve(n, t_new)
    return out.T.reshape(frames, *clip.shape[1:]).astype(np.float32)


def saliency(clip: np.ndarray, mode: str = "signed") -> np.ndarray:
    """Microfacial-exp saliency (docs/models.md §3.4): each frame minus the per-pixel temporal median of
    the clip. ``positive`` reproduces the seed's PNG write: clip(round(frame - median), 0, 255)."""
    med = np.median(clip.astype(np.float64), axis=0, keepdims=True)
    s = clip.astype(np.float64) - med
    if mode == "positive":
        s = np.clip(np.round(s), 0, 255)
    return s.astype(np.float32)


# Microfacial-exp interpolation.py: Farneback (pyramid 0.5, 3 levels, window 25, 3 iterations, poly_n 7,
# poly_sigma 1.5, Gaussian window) between each pair of consecutive frames
INTERP_FARNEBACK = (0.5, 3, 25, 3, 7, 1.5, cv2.OPTFLOW_FARNEBACK_GAUSSIAN)
MAX_EXTRA_PER_GAP = 5


def interpolation_schedule(n: int, frames: int) -> list[int]:
    """Frames inserted into each of the n-1 gaps of an n-frame clip so that it has ``frames`` frames, as the
    Microfacial-exp ``interpolation.py`` distributes them (its ``targetfrms`` = frames - 1): every gap gets
    (frames-1) // (n-1) - 1, and the remainder (frames-1) % (n-1) goes one gap after another from the first,
    at most 5 extra per gap. A clip longer than ``frames`` cannot be interpolated up to it."""
    if n < 2:
        raise PreprocessError(f"frame interpolation needs at least 2 frames, the clip has {n}")
    if n > frames:
        raise PreprocessError(f"the clip has {n} frames, more than preprocess.frames={frames} "
                              "(interpolate_pad only inserts frames)")
    gaps = n - 1
    base, extra = divmod(frames - 1, gaps)
    out = []
    for _ in range(gaps):
        z = min(extra, MAX_EXTRA_PER_GAP)
        extra -= z
        out.append(base - 1 + z)
    return out


def _gray_u8(img: np.ndarray) -> np.ndarray:
    x = img if img.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(img, dtype=np.float32), cv2.COLOR_RGB2GRAY)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``img`` sampled at x + flow(x) (bilinear, edges replicated)."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(np.asarray(img, np.float32), gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def interpolate_between(a: np.ndarray, b: np.ndarray, ts: Sequence[float]) -> list[np.ndarray]:
    """Frames at times ``ts`` in (0, 1) between ``a`` (t=0) and ``b`` (t=1), motion compensated with the
    forward and backward Farneback flows. The seed splats the flows bidirectionally (framebooster); here the
    flows from time t back to each frame are approximated from the two flows as in "Super SloMo: High Quality
    Estimation of Multiple Intermediate Frames for Video Interpolation" (Jiang et al., CVPR 2018,
    DOI 10.1109/CVPR.2018.00938), and the two warped frames are blended with weights 1-t and t."""
    if not ts:
        return []
    ga, gb = _gray_u8(a), _gray_u8(b)
    fwd = compute_flow(ga, gb, "farneback", INTERP_FARNEBACK)  # a(x) ~ b(x + fwd(x))
    bwd = compute_flow(gb, ga, "farneback", INTERP_FARNEBACK)
    out = []
    for t in ts:
        f_t0 = -(1 - t) * t * fwd + t * t * bwd
        f_t1 = (1 - t) ** 2 * fwd - t * (1 - t) * bwd
        out.append(((1 - t) * warp(a, f_t0) + t * warp(b, f_t1)).astype(np.float32))
    return out


def flow_interpolate(clip: np.ndarray, frames: int) -> np.ndarray:
    """A clip (T, H, W) or (T, H, W, C) with frames inserted between consecutive frames (at t = j/(k+1) for the
    k frames of a gap, :func:`interpolation_schedule`) so that it has exactly ``frames`` frames; the original
    frames are kept unchanged."""
    schedule = interpolation_schedule(len(clip), frames)
    out: list[np.ndarray] = [clip[0].astype(np.float32)]
    for i, k in enumerate(schedule):
        out.extend(interpolate_between(clip[i], clip[i + 1], [j / (k + 1) for j in range(1, k + 1)]))
        out.append(clip[i + 1].astype(np.float32))
    return np.stack(out)


def pad_frames(arr: np.ndarray, length: int, axis: int = 1) -> np.ndarray:
    """Zero frames appended along ``axis`` up to ``length`` (the two-stream seed's zero padding to 152)."""
    t = arr.shape[axis]
    if t > length:
        raise PreprocessError(f"the clip has {t} frames, more than preprocess.pad_to={length}")
    if t == length:
        return arr
    widths = [(0, 0)] * arr.ndim
    widths[axis] = (0, length - t)
    return np.pad(arr, widths)
