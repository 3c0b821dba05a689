"""Model registry: name -> builder, the streams the model reads, its default preprocessing and its source.

A builder is ``fn(n_classes, input_shapes, **hparams) -> nn.Module`` where ``input_shapes`` maps each stream name
to its (C, T, H, W) shape. A model's ``forward`` takes its streams as keyword tensors shaped (N, C, T, H, W) and
returns logits (softmax lives in the loss).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from microexp.errors import ConfigError
from microexp.preprocess.config import PreprocessConfig
from microexp.registry import Registry

Shape = tuple[int, int, int, int]
Builder = Callable[..., nn.Module]
# "torch": builder returns an nn.Module trained by gradient descent; "sklearn": builder returns an estimator
# with fit(streams, y) / predict_proba(streams) on numpy streams (e.g. LBP-TOP + SVM)
KINDS = ("torch", "sklearn")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Builder
    preprocess: PreprocessConfig
    source: str
    description: str = ""
    hparams: dict[str, Any] = field(default_factory=dict)
    kind: str = "torch"  # one of KINDS
    # number of classes the seed was published with (the default for listings and parameter counts)
    classes: int = 3
    # how it is trained: a name in microexp.train.trainers.TRAINERS ("clip": one sample per clip)
    trainer: str = "clip"
    # what the model reads: "frames" (the preprocessed streams) or "aus" (the clip's annotated AU codes,
    # microexp.train.au; e.g. the emotion-from-AU baseline)
    reads: str = "frames"
    # a model that is not trained on frames runs its own evaluation: fn(config, out, clips, log) -> a result with
    # run_dir, metrics, predictions, history (train.evaluate.evaluate hands the run to it)
    evaluator: Callable[..., Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"model {self.name!r}: kind={self.kind!r} is not one of {list(KINDS)}")
        if self.classes < 2:
            raise ConfigError(f"model {self.name!r}: classes={self.classes} must be >= 2")

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.preprocess.streams)

    def input_shapes(self, preprocess: PreprocessConfig | None = None) -> dict[str, Shape]:
        p = preprocess or self.preprocess
        return {s.name: p.stream_shape(s.name) for s in p.streams}

    def build(self, n_classes: int, preprocess: PreprocessConfig | None = None, **hparams: Any) -> nn.Module:
        return self.builder(n_classes, self.input_shapes(preprocess), **{**self.hparams, **hparams})


# Built-in models, imported on the first lookup (explicitly listed: a module is never picked up by being in a folder)
BUILTIN = (
    "microexp.models.stcnn",
    "microexp.models.fusenet",
    "microexp.models.joshi",
    "microexp.models.twostream",
    "microexp.models.regional",
    "microexp.models.ststnet",
    "microexp.models.offapexnet",
    "microexp.models.htnet",
    "microexp.models.mmnet",
    "microexp.baselines.lbptop",  # non-torch baseline (kind="sklearn")
    "microexp.baselines.au_emotion",  # emotion from annotated AUs (kind="sklearn", reads="aus")
)
MODELS: Registry[ModelSpec] = Registry("model", builtin=BUILTIN)


def register(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` under ``spec.name``; a name registered twice raises :class:`~microexp.errors.ConfigError`."""
    return MODELS.add(spec.name, spec)


def get(name: str) -> ModelSpec:
    """The model registered as ``name``; an unknown name raises ConfigError listing the known ones."""
    return MODELS.get(name)


def names() -> list[str]:
    return MODELS.names()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def parameter_count(spec: ModelSpec, n_classes: int | None = None,
                    preprocess: PreprocessConfig | None = None) -> int | None:
    """Trainable parameters of ``spec`` for its default input (or ``preprocess``) and ``n_classes`` (default: the
    seed's published classes), built on the meta device: nothing is allocated, so a 177M-parameter model costs
    milliseconds. ``None`` for models that are not torch modules (``kind != "torch"``)."""
    if spec.kind != "torch":
        return None
    with torch.device("meta"):
        model = spec.build(n_classes or spec.classes, preprocess)
    return count_parameters(model)
