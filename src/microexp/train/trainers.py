"""Trainers: how a torch model is fitted on a fold's training rows and how it scores rows.

STUB for the augment branch (the trainer helper owns this module; the lead keeps that version). It carries only
what ``microexp.train.vote`` and ``microexp.train.twostage`` need to register and be tested: the :class:`Trainer`
protocol, :data:`TRAINERS` (listing both modules as built-ins) and the ``clip`` trainer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from microexp.config import TrainConfig
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


TRAINERS: Registry[Trainer] = Registry("trainer", builtin=("microexp.train.trainers", "microexp.train.vote",
                                                          "microexp.train.twostage"))


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
