"""Synthetic tensor tasks and a minimal training loop for the model tests.

The loop stands in for ``microexp.train`` until that lands; it is kept here, in one place, so it can be swapped.
It follows the dispatch documented by the models: frame-level models (``model.frame_level``) train on per-frame
logits with the clip label repeated and are scored by majority vote; ``ModelSpec.kind == "sklearn"`` estimators
are fitted directly.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def blob_clips(n: int, n_classes: int, shape: tuple[int, int, int], seed: int, noise: float = 0.3,
               radius: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1, T, H, W) float32 clips and labels: class c shows a Gaussian blob that starts near a class-specific
    position and moves in a class-specific direction, on Gaussian noise. Position jitters by +-1 pixel."""
    rng = np.random.default_rng(seed)
    t, h, w = shape
    y = np.arange(n) % n_classes
    rng.shuffle(y)
    angles = 2 * np.pi * np.arange(n_classes) / n_classes
    yy, xx = np.mgrid[0:h, 0:w]
    clips = rng.normal(0.0, noise, size=(n, 1, t, h, w)).astype(np.float32)
    for i, c in enumerate(y):
        # class-specific start around the centre, moving outwards along the class angle
        cy0 = h / 2 + 0.2 * h * np.sin(angles[c]) + rng.uniform(-1, 1)
        cx0 = w / 2 + 0.2 * w * np.cos(angles[c]) + rng.uniform(-1, 1)
        step = 0.25 * min(h, w) / max(t - 1, 1)
        for k in range(t):
            cy = cy0 + k * step * np.sin(angles[c])
            cx = cx0 + k * step * np.cos(angles[c])
            clips[i, 0, k] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
    return clips, y


def pulse_clips(n: int, shape: tuple[int, int, int], seed: int, noise: float = 0.3, radius: float = 2.0
                ) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1, T, H, W) clips and 3-class labels where only the temporal order tells the classes apart: a blob at a
    random place whose amplitude rises (class 0), falls (class 1) or peaks mid-clip (class 2). Every frame looks
    alike up to amplitude, so position-invariant per-frame features + a recurrent stage are needed."""
    rng = np.random.default_rng(seed)
    t, h, w = shape
    y = np.arange(n) % 3
    rng.shuffle(y)
    ramp = np.linspace(0.0, 1.0, t)
    profiles = (ramp, ramp[::-1], 1.0 - np.abs(2 * ramp - 1))
    yy, xx = np.mgrid[0:h, 0:w]
    clips = rng.normal(0.0, noise, size=(n, 1, t, h, w)).astype(np.float32)
    for i, c in enumerate(y):
        cy, cx = rng.uniform(0.25 * h, 0.75 * h), rng.uniform(0.25 * w, 0.75 * w)
        blob = 2.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
        clips[i, 0] += profiles[c][:, None, None] * blob
    return clips, y


def saliency_of(clips: np.ndarray) -> np.ndarray:
    """Positive deviation of each frame from the clip's per-pixel temporal median (the two-stream seed's saliency)."""
    return np.maximum(clips - np.median(clips, axis=2, keepdims=True), 0).astype(np.float32)


def flow_fields(n: int, n_classes: int, size: int, seed: int, strain: bool, noise: float = 0.3
                ) -> tuple[np.ndarray, np.ndarray]:
    """(N, C, 1, size, size) onset->apex flow: class c moves a localized patch (random place) along the class
    angle, on noisy background flow. C = 2 (u, v) or 3 (u, v, strain magnitude from the flow gradients)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    rng.shuffle(y)
    angles = 2 * np.pi * np.arange(n_classes) / n_classes
    yy, xx = np.mgrid[0:size, 0:size]
    out = np.zeros((n, 3 if strain else 2, 1, size, size), np.float32)
    for i, c in enumerate(y):
        cy, cx = rng.uniform(0.3 * size, 0.7 * size, 2)
        patch = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (0.12 * size) ** 2))
        u = np.cos(angles[c]) * patch + rng.normal(0, noise, patch.shape)
        v = np.sin(angles[c]) * patch + rng.normal(0, noise, patch.shape)
        out[i, 0, 0], out[i, 1, 0] = u, v
        if strain:
            uy, ux = np.gradient(u)
            vy, vx = np.gradient(v)
            out[i, 2, 0] = np.sqrt(ux**2 + vy**2 + 0.5 * (uy + vx) ** 2)
    return out, y


def _predict(model: nn.Module, streams: dict[str, torch.Tensor]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        if getattr(model, "frame_level", False):
            return model.vote(**streams)[0]
        return model(**streams).argmax(dim=1)


def train_and_score(model: nn.Module, train: dict[str, np.ndarray], y_train: np.ndarray,
                    test: dict[str, np.ndarray], y_test: np.ndarray, epochs: int = 20, lr: float = 1e-3,
                    batch: int = 16, seed: int = 0, optimizer: str = "adam") -> float:
    """Train ``model`` with cross-entropy and return accuracy on the test set."""
    torch.manual_seed(seed)
    xs = {k: torch.from_numpy(v) for k, v in train.items()}
    ys = torch.from_numpy(np.asarray(y_train, dtype=np.int64))
    opt = (torch.optim.Adam(model.parameters(), lr=lr) if optimizer == "adam"
           else torch.optim.SGD(model.parameters(), lr=lr))
    gen = torch.Generator().manual_seed(seed)
    n = len(ys)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch):
            idx = order[start:start + batch]
            if len(idx) < 2:
                continue  # BatchNorm needs two samples
            inputs = {k: v[idx] for k, v in xs.items()}
            if getattr(model, "frame_level", False):
                logits = model.frame_logits(**inputs)
                loss = F.cross_entropy(logits.flatten(0, 1), ys[idx].repeat_interleave(logits.shape[1]))
            else:
                loss = F.cross_entropy(model(**inputs), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    pred = _predict(model, {k: torch.from_numpy(v) for k, v in test.items()})
    return float((pred.numpy() == np.asarray(y_test)).mean())


def shuffled(y: np.ndarray, seed: int = 123) -> np.ndarray:
    """Control labels independent of the true class: within every true class the labels are spread exactly
    evenly over all classes, in random order (a plain permutation leaves chance agreement that a separable task
    turns into a class-to-label mapping, so its control would swing between 0 and 2/3). Needs every class count to
    be a multiple of the number of classes."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    k = int(y.max()) + 1
    out = np.empty_like(y)
    for c in range(k):
        idx = np.flatnonzero(y == c)
        if len(idx) % k:
            raise ValueError(f"class {c} has {len(idx)} samples, not a multiple of {k}")
        out[idx] = rng.permutation(np.tile(np.arange(k), len(idx) // k))
    return out
