"""The ``frames-vote`` trainer: frame-level training, clip-level majority vote (Joshi 2021's 2D CNN, docs/models.md
§2.5).

Training: every frame of a training clip is one 2D sample carrying its clip's label (the model's
``frame_logits(**streams)`` gives (N, T, K) per-frame logits); the loop, optimiser, scheduler and epoch policy
are :func:`microexp.train.loop.fit`'s, run on the frames (with run_fold's augmented copies among the training
clips). The epoch policy therefore scores
frames, as the seed's ``val_acc`` on its frame-level validation split did. Validation and test frames come from the
clips the caller gives (``val_idx`` drawn from the training fold), so frames of one clip never straddle a split.

Scoring: each frame of a clip is classified (binary: class 0 when p0 > 0.5, the seed's rule; otherwise the most
probable class), and the clip's class probabilities are the **vote shares** (votes for each class / frames). The
clip's prediction is the class with most votes; **ties go to the lowest class index** (numpy ``argmax``; the seed's
modal prediction for the multiclass confusion matrix). The seed's accuracy rule, a clip is correct when at least 5
of its 9 frames are correct (more than half), is :func:`clip_correct`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from microexp.config import TrainConfig
from microexp.errors import ConfigError
from microexp.train import loop
from microexp.train.augment import check_augment
from microexp.train.trainers import TRAINERS

Inputs = dict[str, torch.Tensor]


def frame_classes(probs: np.ndarray) -> np.ndarray:
    """Per-frame class from probabilities (..., K): with two classes class 0 when p0 > 0.5 (so 0.5 -> 1, the
    seed's binary rule), else the most probable class (ties: the lowest index)."""
    probs = np.asarray(probs)
    if probs.shape[-1] == 2:
        return np.where(probs[..., 0] > 0.5, 0, 1)
    return probs.argmax(axis=-1)


def vote_counts(frame_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(N, T) frame classes -> (N, K) number of frames voting for each class."""
    frame_pred = np.asarray(frame_pred, dtype=np.int64)
    counts = np.zeros((len(frame_pred), n_classes), np.int64)
    np.add.at(counts, (np.arange(len(frame_pred))[:, None], frame_pred), 1)
    return counts


def vote_shares(frame_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(N, T) frame classes -> (N, K) vote shares (sum 1 per clip): the clip's class probabilities. Their argmax
    is the majority class, ties to the lowest index."""
    frame_pred = np.asarray(frame_pred)
    return (vote_counts(frame_pred, n_classes) / max(frame_pred.shape[1], 1)).astype(np.float32)


def clip_correct(frame_pred: np.ndarray, y: np.ndarray, min_votes: int | None = None) -> np.ndarray:
    """The seed's test rule: a clip is correct when at least ``min_votes`` of its frames are correct (default more
    than half: 5 of 9)."""
    frame_pred = np.asarray(frame_pred)
    need = frame_pred.shape[1] // 2 + 1 if min_votes is None else min_votes
    return (frame_pred == np.asarray(y)[:, None]).sum(axis=1) >= need


def frame_count(inputs: Inputs) -> int:
    frames = {k: int(v.shape[2]) for k, v in inputs.items()}
    if len(set(frames.values())) != 1:
        raise ConfigError(f"train.trainer=frames-vote needs one frame count across streams, got {frames}")
    return next(iter(frames.values()))


def to_frames(inputs: Inputs, rows: np.ndarray) -> Inputs:
    """Clips (N, C, T, H, W) at ``rows`` -> one-frame clips (len(rows) * T, C, 1, H, W), clip by clip, frames in
    order: clip ``i``'s frame ``t`` is row ``i * T + t``."""
    index = torch.as_tensor(np.asarray(rows), dtype=torch.long)
    out = {}
    for k, v in inputs.items():
        x = v.index_select(0, index)
        n, c, t, h, w = x.shape
        out[k] = x.permute(0, 2, 1, 3, 4).reshape(n * t, c, 1, h, w)
    return out


def frame_rows(positions: np.ndarray, t: int) -> np.ndarray:
    """Clip positions -> the frame rows of those clips in :func:`to_frames` order."""
    return (np.asarray(positions, dtype=np.int64)[:, None] * t + np.arange(t)).ravel()


class FrameModel(nn.Module):
    """A frame-level model seen by the clip loop: one-frame clips in, (N, K) frame logits out."""

    def __init__(self, model: nn.Module):
        super().__init__()
        if not callable(getattr(model, "frame_logits", None)):
            raise ConfigError(f"train.trainer=frames-vote needs a model with per-frame outputs (frame_logits); "
                              f"{type(model).__name__} has none")
        self.model = model

    def forward(self, **streams: torch.Tensor) -> torch.Tensor:
        return self.model.frame_logits(**streams).flatten(0, 1)


class FramesVoteTrainer:
    """Each frame a 2D sample in training; a clip's probabilities are its frames' vote shares."""

    name = "frames-vote"

    def fit(self, model: nn.Module, inputs: Inputs, y: torch.Tensor, fit_idx: np.ndarray, cfg: TrainConfig,
            seed: int, n_classes: int, val_idx: np.ndarray | None = None, test_idx: np.ndarray | None = None,
            on_epoch: Callable[[dict[str, Any]], None] | None = None, *, spec: Any = None,
            preprocess: Any = None) -> loop.FitResult:
        frames_model = FrameModel(model)
        check_augment(getattr(cfg, "augment", "none"), preprocess)
        t = frame_count(inputs)
        parts = [np.asarray(i, dtype=np.int64) for i in (fit_idx, val_idx, test_idx) if i is not None]
        rows = np.unique(np.concatenate(parts))  # only the clips this fold reads become frames
        frames = to_frames(inputs, rows)
        frame_y = torch.as_tensor(y).index_select(0, torch.as_tensor(rows)).repeat_interleave(t)

        def expand(idx: np.ndarray | None) -> np.ndarray | None:
            return None if idx is None else frame_rows(np.searchsorted(rows, np.asarray(idx)), t)

        test_frames = expand(test_idx)
        result = loop.fit(frames_model, frames, frame_y, expand(fit_idx), cfg, seed, n_classes,
                          val_idx=expand(val_idx), test_idx=test_frames, on_epoch=on_epoch)
        scored = getattr(result, "test_probs", None)  # train.report_epochs: frame probabilities -> vote shares
        if scored:
            result.test_probs = {e: vote_shares(frame_classes(p.reshape(-1, t, p.shape[-1])), p.shape[-1])
                                 for e, p in scored.items()}
        return result

    def frame_proba(self, model: nn.Module, inputs: Inputs, idx: np.ndarray, batch_size: int,
                    device: torch.device | None) -> np.ndarray:
        """Per-frame class probabilities (len(idx), T, K) of the clips ``idx``."""
        t = frame_count(inputs)
        if len(idx) == 0:
            return np.zeros((0, t, 0), np.float32)
        frames = to_frames(inputs, idx)
        probs = loop.predict_proba(FrameModel(model), frames, np.arange(len(idx) * t), batch_size, device)
        return probs.reshape(len(idx), t, -1)

    def predict_proba(self, model: nn.Module, inputs: Inputs, idx: np.ndarray, batch_size: int,
                      device: torch.device | None) -> np.ndarray:
        probs = self.frame_proba(model, inputs, idx, batch_size, device)
        if len(probs) == 0:
            return np.zeros((0, 0), np.float32)  # as loop.predict_proba on no rows
        return vote_shares(frame_classes(probs), probs.shape[-1])


TRAINERS.add("frames-vote", FramesVoteTrainer())
