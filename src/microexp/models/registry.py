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

Shape = tuple[int, int, int, int]
Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Builder
    preprocess: PreprocessConfig
    source: str
    description: str = ""
    hparams: dict[str, Any] = field(default_factory=dict)
    # "torch": builder returns an nn.Module trained by gradient descent; "sklearn": builder returns an estimator
    # with fit(streams, y) / predict_proba(streams) on numpy streams (e.g. LBP-TOP + SVM)
    kind: str = "torch"
    # number of classes the seed was published with (the default for listings and parameter counts)
    classes: int = 3

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.preprocess.streams)

    def input_shapes(self, preprocess: PreprocessConfig | None = None) -> dict[str, Shape]:
        p = preprocess or self.preprocess
        return {s.name: p.stream_shape(s.name) for s in p.streams}

    def build(self, n_classes: int, preprocess: PreprocessConfig | None = None, **hparams: Any) -> nn.Module:
        return self.builder(n_classes, self.input_shapes(preprocess), **{**self.hparams, **hparams})


_MODELS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    _MODELS[spec.name] = spec
    return spec


def _load_builtin() -> None:
    import importlib
    import pkgutil

    import microexp.baselines
    import microexp.models as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name not in {"registry", "layout"}:
            importlib.import_module(f"microexp.models.{mod.name}")
    for mod in pkgutil.iter_modules(microexp.baselines.__path__):  # non-torch baselines (kind="sklearn")
        importlib.import_module(f"microexp.baselines.{mod.name}")


def get(name: str) -> ModelSpec:
    _load_builtin()
    try:
        return _MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r} (known: {', '.join(sorted(_MODELS))})") from None


def names() -> list[str]:
    _load_builtin()
    return sorted(_MODELS)


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
