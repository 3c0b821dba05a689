"""The one place where Keras frame-last notation meets PyTorch's (N, C, T, H, W).

The seed code (Keras, channels_first) feeds (N, 1, rows, cols, frames) and writes kernels as (rows, cols, frames).
microexp keeps tensors (N, C, T, H, W), so a paper kernel (3, 3, 15) -> torch kernel (15, 3, 3). The convolution and
pooling arithmetic is identical; only the flatten order differs (C,T,H,W here versus C,H,W,T in Keras), which is a
fixed permutation of the first Dense layer's rows and matters only when porting Keras weights
(:func:`keras_flatten_permutation`).
"""

from __future__ import annotations

import numpy as np


def paper_to_torch(kernel: tuple[int, int, int]) -> tuple[int, int, int]:
    """(rows, cols, frames) -> (frames, rows, cols)."""
    rows, cols, frames = kernel
    return frames, rows, cols


def keras_flatten_permutation(c: int, t: int, h: int, w: int) -> np.ndarray:
    """Index array ``p`` such that ``torch_flat[p] == keras_flat`` for a (C, T, H, W) feature map."""
    return np.arange(c * t * h * w).reshape(c, t, h, w).transpose(0, 2, 3, 1).reshape(-1)
