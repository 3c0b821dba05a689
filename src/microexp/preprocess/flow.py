"""Optical flow (TV-L1, Farneback, DIS from opencv-contrib) and optical strain, in the shapes STSTNet (28x28x3:
u, v, strain) and Off-ApexNet (2x28x28: u, v) expect.

Flow is in pixels of the image it is returned at: resizing a flow field rescales u by the column ratio and v
by the row ratio. Optical strain (Liong et al.; STSTNet) is the magnitude of the infinitesimal strain tensor,
sqrt(u_x^2 + v_y^2 + 1/2 (u_y + v_x)^2), with central differences (``np.gradient``). ``strain_at="full"``
computes it on the flow at the resolution the flow was computed at and resizes the strain map (STSTNet);
``"stream"`` computes it on the flow already resized to the stream size.
"""

from __future__ import annotations

import cv2
import numpy as np

from microexp.errors import PreprocessError

METHODS = ("tvl1", "farneback", "dis")
# cv2.calcOpticalFlowFarneback (pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags)
FARNEBACK = (0.5, 3, 15, 3, 5, 1.2, 0)


def _u8(img: np.ndarray) -> np.ndarray:
    return img if img.dtype == np.uint8 else np.clip(np.round(img), 0, 255).astype(np.uint8)


def compute_flow(prev: np.ndarray, nxt: np.ndarray, method: str = "tvl1",
                 farneback: tuple[float, int, int, int, int, float, int] = FARNEBACK) -> np.ndarray:
    """Dense flow (H, W, 2) float32 from ``prev`` to ``nxt`` (gray images): prev(x) ~ nxt(x + flow(x)).
    ``farneback``: the Farneback parameters (:data:`FARNEBACK` unless a seed used others)."""
    if prev.shape != nxt.shape:
        raise PreprocessError(f"flow frames differ in shape {prev.shape} vs {nxt.shape}")
    if method == "tvl1":
        tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
        flow = tvl1.calc(_u8(prev), _u8(nxt), None)  # 8-bit input: ~15x faster than float, same accuracy
    elif method == "farneback":
        flow = cv2.calcOpticalFlowFarneback(_u8(prev), _u8(nxt), None, *farneback)
    elif method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        flow = dis.calc(_u8(prev), _u8(nxt), None)
    else:
        raise PreprocessError(f"unknown flow method {method!r} (known: {list(METHODS)})")
    return np.asarray(flow, dtype=np.float32)


def resize_flow(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a flow field to (rows, cols) with INTER_AREA and rescale the vectors to the new pixel units."""
    h, w = flow.shape[:2]
    rows, cols = size
    if (h, w) == (rows, cols):
        return flow.astype(np.float32)
    out = cv2.resize(flow, (cols, rows), interpolation=cv2.INTER_AREA).astype(np.float32)
    out[..., 0] *= cols / w
    out[..., 1] *= rows / h
    return out


def optical_strain(flow: np.ndarray) -> np.ndarray:
    """Strain magnitude (H, W) of a flow field (H, W, 2)."""
    u, v = flow[..., 0].astype(np.float64), flow[..., 1].astype(np.float64)
    u_y, u_x = np.gradient(u)
    v_y, v_x = np.gradient(v)
    return np.sqrt(u_x**2 + v_y**2 + 0.5 * (u_y + v_x) ** 2).astype(np.float32)


def resize_strain(strain: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A strain map resized to (rows, cols) with INTER_AREA; strain is a ratio of lengths, so no rescaling."""
    if strain.shape[:2] == tuple(size):
        return strain.astype(np.float32)
    return cv2.resize(strain, (size[1], size[0]), interpolation=cv2.INTER_AREA).astype(np.float32)


def flow_channels(full: np.ndarray, size: tuple[int, int], strain: bool = False,
                  strain_at: str = "stream") -> np.ndarray:
    """(C, H, W) float32 at ``size`` from a flow field ``full`` (h, w, 2) at its computed resolution: u, v and,
    when asked, the strain of the resized flow (``stream``) or of ``full`` resized afterwards (``full``)."""
    if strain_at not in ("stream", "full"):
        raise PreprocessError(f"strain_at={strain_at!r} is not one of ['stream', 'full']")
    f = resize_flow(full, size)
    chans = [f[..., 0], f[..., 1]]
    if strain:
        chans.append(optical_strain(f) if strain_at == "stream" else resize_strain(optical_strain(full), size))
    return np.stack(chans).astype(np.float32)


def flow_stream(prev: np.ndarray, nxt: np.ndarray, size: tuple[int, int], method: str = "tvl1",
                strain: bool = False, strain_at: str = "stream") -> np.ndarray:
    """(C, H, W) float32 at ``size``: u, v (and strain when asked), flow computed on the inputs' resolution."""
    return flow_channels(compute_flow(prev, nxt, method), size, strain, strain_at)
