"""The ``two-stage`` trainer: per-region CNNs first, then the temporal stage on their frozen features (Aouayeb et al.,
MLSP 2019; docs/models.md §4).

A two-stage model exposes ``cnn`` (a ModuleDict: stream name -> per-frame feature extractor, (N, C, H, W) ->
(N, F)), ``feature_size`` (F), ``padding_mask(streams)`` ((N, T), True for padding frames),
``sequence_features(streams)`` (per-stream (N, T, F) inputs of the temporal stage, the path ``forward`` takes) and
``classify(features)`` (those features -> logits), as :class:`microexp.models.regional.RegionalCNNLSTM` does.

- **Stage 1**, for each region: its CNN plus a temporary linear classifier (F -> classes, glorot) trained on the
  frames of the fold's training clips, each frame carrying its clip's label; ``train.stage1_epochs`` and
  ``train.stage1_batch_size`` (MLSP paper: 100 epochs, batch 64; null: ``train.epochs`` / ``train.batch_size``),
  the optimiser and learning rate of ``train``, the last epoch kept (nothing held out is looked at). Padding
  frames (``preprocess.pad_to``) are not samples. Every region
  learns the clip's own label: see docs/models.md, "two-stage training" for why the 2022 code's per-region label
  remapping is left out. The temporary classifiers are discarded.
- **Stage 2**: the CNNs are frozen (no gradient, eval mode: no dropout) and the temporal stage's inputs of the
  clips the fold reads are computed once (``sequence_features``: padding as zero features, placed first); the LSTMs, fusion and classifier train on them with ``train.epochs`` /
  ``train.batch_size`` (MLSP paper: 60 epochs, batch 244) and the run's epoch policy, scheduler and report range.
  The history and chosen epoch are stage 2's.

Scoring is the model's ordinary forward (CNN features -> LSTMs -> classifier), identical to stage 2's path. The CNNs
are trained inside each fold on its training clips only, so the test subject never reaches stage 1 (the 2022 code
split frames of all subjects 50/50, a leak across its LOSO stage).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from microexp.config import TrainConfig
from microexp.errors import ConfigError
from microexp.models.keras import glorot_uniform_
from microexp.train import loop
from microexp.train.trainers import TRAINERS
from microexp.train.vote import frame_count, frame_rows, to_frames

Inputs = dict[str, torch.Tensor]


def stage1_settings(cfg: TrainConfig) -> tuple[int, int]:
    """(epochs, batch size) of stage 1: ``train.stage1_epochs`` / ``train.stage1_batch_size``, else stage 2's."""
    epochs = cfg.epochs if cfg.stage1_epochs is None else cfg.stage1_epochs
    batch = cfg.batch_size if cfg.stage1_batch_size is None else cfg.stage1_batch_size
    return epochs, batch


def _check(model: nn.Module, inputs: Inputs) -> list[str]:
    cnn = getattr(model, "cnn", None)
    methods = ("classify", "sequence_features", "padding_mask")
    if not isinstance(cnn, nn.ModuleDict) or not all(callable(getattr(model, m, None)) for m in methods) \
            or not hasattr(model, "feature_size"):
        raise ConfigError(f"train.trainer=two-stage needs a model with per-region CNNs and a temporal stage "
                          f"(cnn, feature_size, {', '.join(methods)}); {type(model).__name__} has none")
    missing = [r for r in cnn if r not in inputs]
    if missing:
        raise ConfigError(f"train.trainer=two-stage: the model's regions {missing} are not among the streams "
                          f"{sorted(inputs)}")
    return list(cnn)


class RegionClassifier(nn.Module):
    """Stage 1 of one region as the clip loop sees it: one-frame clips (N, C, 1, H, W) of ``stream`` -> logits."""

    def __init__(self, stream: str, cnn: nn.Module, features: int, n_classes: int):
        super().__init__()
        self.stream, self.cnn, self.head = stream, cnn, nn.Linear(features, n_classes)
        glorot_uniform_(self.head)

    def forward(self, **streams: torch.Tensor) -> torch.Tensor:
        return self.head(self.cnn(streams[self.stream][:, :, 0]))


class TemporalStage(nn.Module):
    """Stage 2 as the clip loop sees it: per-region features in, logits out. Only the model's modules other than
    ``cnn`` are registered here, so the optimiser, ``train()`` and the epoch policy's saved state never touch the
    CNNs."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.parts = nn.ModuleDict({name: m for name, m in model.named_children() if name != "cnn"})
        object.__setattr__(self, "_model", model)  # not a submodule: its CNNs stay out of parameters()

    def forward(self, **features: torch.Tensor) -> torch.Tensor:
        return self._model.classify(features)


@torch.no_grad()
def sequence_features(model: nn.Module, inputs: Inputs, rows: np.ndarray, batch_size: int,
                      device: torch.device) -> dict[str, torch.Tensor]:
    """The temporal stage's inputs (per stream (len(rows), T, F), on the CPU) from the frozen CNNs, in eval mode."""
    model.eval()
    chunks: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(rows), batch_size):
        batch = loop._batch(inputs, rows[start:start + batch_size], device)
        for k, v in model.sequence_features(batch).items():
            chunks.setdefault(k, []).append(v.float().cpu())
    return {k: torch.cat(v) for k, v in chunks.items()}


def _stage1_config(cfg: TrainConfig, epochs: int, batch: int) -> TrainConfig:
    return cfg.replace(epochs=epochs, batch_size=batch, epoch_policy="fixed", patience=None, report_epochs=None)


def fit_stage1(model: nn.Module, inputs: Inputs, y: torch.Tensor, fit_idx: np.ndarray, cfg: TrainConfig, seed: int,
               n_classes: int, val_idx: np.ndarray | None = None) -> dict[str, loop.FitResult]:
    """Train each region's CNN on the frames of clips ``fit_idx`` (``val_idx`` frames only feed a val_loss
    scheduler), then freeze the CNNs. Returns each region's stage-1 result."""
    regions = _check(model, inputs)
    epochs, batch = stage1_settings(cfg)
    stage_cfg = _stage1_config(cfg, epochs, batch)
    t = frame_count({r: inputs[r] for r in regions})
    rows = np.unique(np.concatenate([np.asarray(i, dtype=np.int64) for i in (fit_idx, val_idx) if i is not None]))
    frame_y = torch.as_tensor(y).index_select(0, torch.as_tensor(rows)).repeat_interleave(t)
    padding = model.padding_mask({r: inputs[r].index_select(0, torch.as_tensor(rows)) for r in regions})
    real = ~padding.reshape(-1).numpy()  # frame rows in to_frames order

    def frames_of(idx: np.ndarray | None) -> np.ndarray | None:
        if idx is None:
            return None
        f = frame_rows(np.searchsorted(rows, idx), t)
        return f[real[f]]

    fit_frames, val_frames = frames_of(fit_idx), frames_of(val_idx)
    if len(fit_frames) == 0:
        raise ConfigError("train.trainer=two-stage: the training clips have no frames other than padding")
    device = next(model.parameters()).device
    results = {}
    for k, region in enumerate(regions):
        stage = RegionClassifier(region, model.cnn[region], model.feature_size, n_classes).to(device)
        results[region] = loop.fit(stage, to_frames({region: inputs[region]}, rows), frame_y, fit_frames, stage_cfg,
                                   seed + k + 1, n_classes, val_idx=val_frames)
    for p in model.cnn.parameters():
        p.requires_grad_(False)
    return results


def fit_stage2(model: nn.Module, inputs: Inputs, y: torch.Tensor, fit_idx: np.ndarray, cfg: TrainConfig, seed: int,
               n_classes: int, val_idx: np.ndarray | None = None, test_idx: np.ndarray | None = None,
               on_epoch: Callable[[dict[str, Any]], None] | None = None) -> loop.FitResult:
    """Train the temporal stage on the frozen CNN features of the clips the fold reads."""
    regions = _check(model, inputs)
    parts = [np.asarray(i, dtype=np.int64) for i in (fit_idx, val_idx, test_idx) if i is not None]
    rows = np.unique(np.concatenate(parts))
    device = next(model.parameters()).device
    chunk = max(1, stage1_settings(cfg)[1] * 4 // frame_count({r: inputs[r] for r in regions}))  # ~4 stage-1 batches
    features = sequence_features(model, inputs, rows, chunk, device)

    def pos(idx: np.ndarray | None) -> np.ndarray | None:
        return None if idx is None else np.searchsorted(rows, np.asarray(idx))

    stage = TemporalStage(model)
    return loop.fit(stage, features, torch.as_tensor(y).index_select(0, torch.as_tensor(rows)), pos(fit_idx), cfg,
                    seed, n_classes, val_idx=pos(val_idx), test_idx=pos(test_idx), on_epoch=on_epoch)


class TwoStageTrainer:
    """Stage 1 per-region CNNs on frames, stage 2 the temporal model on their frozen features."""

    name = "two-stage"

    def fit(self, model: nn.Module, inputs: Inputs, y: torch.Tensor, fit_idx: np.ndarray, cfg: TrainConfig,
            seed: int, n_classes: int, val_idx: np.ndarray | None = None, test_idx: np.ndarray | None = None,
            on_epoch: Callable[[dict[str, Any]], None] | None = None, *, spec: Any = None,
            preprocess: Any = None) -> loop.FitResult:
        fit_stage1(model, inputs, y, fit_idx, cfg, seed, n_classes, val_idx=val_idx)
        return fit_stage2(model, inputs, y, fit_idx, cfg, seed, n_classes, val_idx=val_idx, test_idx=test_idx,
                          on_epoch=on_epoch)

    def predict_proba(self, model: nn.Module, inputs: Inputs, idx: np.ndarray, batch_size: int,
                      device: torch.device | None) -> np.ndarray:
        return loop.predict_proba(model, inputs, idx, batch_size, device)


TRAINERS.add("two-stage", TwoStageTrainer())
