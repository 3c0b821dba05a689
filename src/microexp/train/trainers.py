"""Trainers: how a torch model is fitted on a fold's training rows and how it scores rows.

``clip`` (every model but the frame-voting 2D CNN) trains on whole clips: :func:`microexp.train.loop.fit` and
:func:`microexp.train.loop.predict_proba`. Other trainers (``frames-vote``, ``two-stage``) live in their own
modules and register themselves in :data:`TRAINERS`. A run's ``train.trainer`` picks one; ``auto`` takes the
model spec's ``trainer`` field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from microexp.config import TrainConfig
from microexp.errors import ConfigError
from microexp.registry import Registry
from microexp.train.loop import FitResult, fit, predict_proba

Inputs = dict[str, torch.Tensor]


class Trainer(Protocol):
    name: str

    def fit(self, model: nn.Module, inputs: Inputs, y: torch.Tensor, fit_idx: np.ndarray, cfg: TrainConfig,
            seed: int, n_classes: int, val_idx: np.ndarray | None = None, test_idx: np.ndarray | None = None,
            on_epoch: Callable[[dict[str, Any]], None] | None = None, *, spec: Any = None,
            preprocess: Any = None) -> FitResult: ...

    def predict_proba(self, model: nn.Module, inputs: Inputs, idx: np.ndarray, batch_size: int,
                      device: torch.device | None) -> np.ndarray: ...  # (len(idx), n_classes)


# Only this module is listed: Registry imports every builtin module on first lookup and a missing one would
# fail every lookup. The frame-vote and two-stage modules add themselves here once they exist.
TRAINERS: Registry[Trainer] = Registry("trainer", builtin=("microexp.train.trainers", "microexp.train.vote", "microexp.train.twostage"))


class ClipTrainer:
    """One sample per clip: the model reads the clip's streams, cross-entropy on its label."""

    name = "clip"

    def fit(self, model: nn.Module, inputs: Inputs, y: torch.Tensor, fit_idx: np.ndarray, cfg: TrainConfig,
            seed: int, n_classes: int, val_idx: np.ndarray | None = None, test_idx: np.ndarray | None = None,
            on_epoch: Callable[[dict[str, Any]], None] | None = None, *, spec: Any = None,
            preprocess: Any = None) -> FitResult:
        return fit(model, inputs, y, fit_idx, cfg, seed, n_classes, val_idx=val_idx, test_idx=test_idx,
                   on_epoch=on_epoch)

    def predict_proba(self, model: nn.Module, inputs: Inputs, idx: np.ndarray, batch_size: int,
                      device: torch.device | None) -> np.ndarray:
        return predict_proba(model, inputs, idx, batch_size, device)


TRAINERS.add("clip", ClipTrainer())


def trainer_name(cfg: TrainConfig, spec: Any) -> str:
    """The trainer a run uses: ``train.trainer``, or the model spec's own with ``auto``."""
    return getattr(spec, "trainer", "clip") if cfg.trainer == "auto" else cfg.trainer


def get_trainer(cfg: TrainConfig, spec: Any) -> Trainer:
    """The registered trainer for ``cfg``/``spec``; an unknown name is a ConfigError listing the known ones."""
    name = trainer_name(cfg, spec)
    try:
        return TRAINERS.get(name)
    except ConfigError as exc:
        key = f"model {spec.name} (train.trainer=auto)" if cfg.trainer == "auto" else "train.trainer"
        raise ConfigError(f"{key}: {exc}") from None
