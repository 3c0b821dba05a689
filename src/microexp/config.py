"""Typed run configuration with YAML in/out and dotted overrides (``train.lr=0.001``).

Every field is coerced to its annotated type and range-checked when the configuration is built (from YAML,
``--set`` or CLI options), so a bad value is one line naming the key and the value before any work starts.

Renamed keys: ``workers`` (preprocessing processes) is now ``preprocess_workers``, apart from the CLI's Dask
``--workers``. An old ``config.yaml`` with ``workers:`` still loads; the value is read as ``preprocess_workers``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from microexp.errors import ConfigError
from microexp.precision import check_name as check_precision
from microexp.typed import coerce_fields, load_yaml

EPOCH_POLICIES = {
    "fixed": "trained for a fixed number of epochs; the last epoch is scored",
    "validation": "epoch chosen on validation subjects drawn from the training fold only",
    "test-peek": "LEAKY: epoch chosen on the test fold (reproduces published numbers only)",
}
OPTIMIZERS = ("sgd", "adam")
PROTOCOLS = ("loso", "holdout", "kfold", "megc2019", "lodo")
PROTOCOL_HELP = {
    "loso": "leave one subject out",
    "holdout": "one stratified split (subject-aware unless subject_aware=false, the paper's 80/20 over clips)",
    "kfold": "subject-grouped stratified k-fold, repeatable per seed",
    "megc2019": "MEGC2019 composite: LOSO over dataset-qualified subjects, UF1/UAR overall and per source dataset",
    "lodo": "leave one dataset out: train on the other datasets (or train_datasets), test on each (or test_dataset)",
}
CONTROLS = ("none", "shuffle")
DEVICE = re.compile(r"^(auto|cpu|cuda(:[0-9]+)?|mps)$")
RENAMED = {"workers": "preprocess_workers"}  # old key -> new key; old config.yaml files keep loading


@dataclass
class TrainConfig:
    """Optimisation. Defaults are the reference code's: Keras ``'SGD'`` = lr 0.01, no momentum."""

    epochs: int = 100
    batch_size: int = 8
    optimizer: str = "sgd"  # sgd | adam
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    epoch_policy: str = "fixed"
    val_fraction: float = 0.2  # share of training subjects held out for the validation epoch policy
    patience: int | None = None  # stop after this many epochs without validation improvement
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "fp32"  # fp32 | bf16 (autocast; microexp.precision)

    def __post_init__(self) -> None:
        coerce_fields(self, "train.")
        check_precision(self.precision, "train.precision")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"train.optimizer={self.optimizer!r} is not one of {list(OPTIMIZERS)}")
        if self.epoch_policy not in EPOCH_POLICIES:
            raise ConfigError(f"train.epoch_policy={self.epoch_policy!r} is not one of {list(EPOCH_POLICIES)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"train.epochs={self.epochs} and train.batch_size={self.batch_size} must be >= 1")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"train.val_fraction={self.val_fraction} must be in (0, 1)")
        if self.lr <= 0:
            raise ConfigError(f"train.lr={self.lr} must be > 0")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"train.momentum={self.momentum} must be in [0, 1)")
        if self.weight_decay < 0:
            raise ConfigError(f"train.weight_decay={self.weight_decay} must be >= 0")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"train.patience={self.patience} must be >= 1 (or null: no early stopping)")
        if not DEVICE.match(self.device):
            raise ConfigError(f"train.device={self.device!r} is not one of auto, cpu, cuda, cuda:N, mps")

    def check_device(self) -> None:
        """Refuse a GPU device this machine lacks (imports torch only when one is asked for)."""
        if self.device in ("auto", "cpu"):
            return
        import torch

        if self.device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise ConfigError(f"train.device={self.device!r}: CUDA is not available on this machine "
                                  "(use --device cpu or auto)")
            index = int(self.device.split(":")[1]) if ":" in self.device else 0
            if index >= torch.cuda.device_count():
                raise ConfigError(f"train.device={self.device!r}: this machine has {torch.cuda.device_count()} "
                                  "CUDA device(s)")
        elif self.device == "mps" and not torch.backends.mps.is_available():
            raise ConfigError("train.device='mps': MPS is not available on this machine (use --device cpu or auto)")


@dataclass
class RunConfig:
    """Everything that defines a run; saved as ``config.yaml`` in the run directory."""

    dataset: str = "synthetic"
    root: str | None = None
    annotation: str | None = None
    classes: str | None = None  # class protocol; None = the dataset's default
    model: str = "stcnn"
    model_params: dict[str, Any] = field(default_factory=dict)
    preprocess: dict[str, Any] = field(default_factory=dict)  # overrides of the model's default preprocessing
    protocol: str = "loso"
    folds: int = 5  # kfold
    test_size: float = 0.2  # holdout
    subject_aware: bool = True  # holdout: no subject in both train and test
    seeds: list[int] = field(default_factory=lambda: [0])
    control: str = "none"  # "shuffle": also run with training labels permuted within subjects
    test_dataset: str | None = None  # lodo: the one target dataset (None = every dataset in turn)
    train_datasets: list[str] | None = None  # lodo: source datasets (None = all but the target)
    save_checkpoints: bool = True
    cache: bool = True  # reuse preprocessed clips from the on-disk cache ($MICROEXP_CACHE, ~/.cache/microexp)
    preprocess_workers: int | None = None  # processes; None: all cores when faces are detected, else 1
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if isinstance(self.train, dict):
            self.train = _build(TrainConfig, self.train, "train")
        coerce_fields(self)
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"protocol {self.protocol!r} is not one of {list(PROTOCOLS)}")
        if self.control not in CONTROLS:
            raise ConfigError(f"control {self.control!r} is not one of {list(CONTROLS)}")
        if not self.seeds:
            raise ConfigError("seeds=[] is empty: give at least one seed")
        if min(self.seeds) < 0 or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds={self.seeds} must be distinct and >= 0")
        if self.folds < 2:
            raise ConfigError(f"folds={self.folds} must be at least 2")
        if not 0 < self.test_size < 1:
            raise ConfigError(f"test_size={self.test_size} must be in (0, 1)")
        if self.preprocess_workers is not None and self.preprocess_workers < 1:
            raise ConfigError(f"preprocess_workers={self.preprocess_workers} must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        return _build(cls, d, "")

    def to_yaml(self, path: Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_yaml(cls, path: Path) -> RunConfig:
        try:
            data = load_yaml(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read run configuration ({exc})") from None
        return cls.from_dict(data)

    def with_overrides(self, assignments: list[str]) -> RunConfig:
        """Apply ``key.sub=value`` strings (values parsed as YAML, ``1e-3`` as a number)."""
        d = self.to_dict()
        for item in assignments:
            if "=" not in item:
                raise ConfigError(f"override {item!r} is not KEY=VALUE")
            key, raw = item.split("=", 1)
            key = RENAMED.get(key.strip(), key.strip())
            target = d
            parts = key.split(".")
            for p in parts[:-1]:
                if not isinstance(target.get(p), dict):
                    target[p] = {} if p in ("model_params", "preprocess") or target.get(p) is None else target[p]
                    if not isinstance(target[p], dict):
                        raise ConfigError(f"override {item!r}: {p} is not a section")
                target = target[p]
            try:
                target[parts[-1]] = load_yaml(raw)
            except yaml.YAMLError:
                raise ConfigError(f"override {item!r}: the value is not valid YAML") from None
        return RunConfig.from_dict(d)


def _build(cls: type, d: dict[str, Any], prefix: str) -> Any:
    if not isinstance(d, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {d!r}")
    if cls is RunConfig:
        d = _rename_old_keys(d)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ConfigError(f"unknown option(s) {[f'{prefix}.{u}' if prefix else u for u in unknown]}")
    kwargs = dict(d)
    if cls is RunConfig and isinstance(kwargs.get("train"), dict):
        kwargs["train"] = _build(TrainConfig, kwargs["train"], "train")
    try:
        obj = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad {prefix or 'run'} configuration: {exc}") from None
    assert is_dataclass(obj)
    return obj


def _rename_old_keys(d: dict[str, Any]) -> dict[str, Any]:
    d = dict(d)
    for old, new in RENAMED.items():
        if old in d:
            value = d.pop(old)
            if d.get(new) is not None and value is not None and d[new] != value:
                raise ConfigError(f"{old!r} is the old name of {new!r}; give only {new}={d[new]!r}")
            if d.get(new) is None:
                d[new] = value
    return d


def config_diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """Dotted keys whose values differ between two (nested) configuration dicts, as (key, a value, b value).
    Old key names (an old run's ``config.yaml``) are compared under their new names."""
    if not prefix:
        a, b = ({RENAMED.get(k, k) if RENAMED.get(k, k) not in d else k: v for k, v in d.items()} for d in (a, b))
    out: list[tuple[str, Any, Any]] = []
    for key in sorted(set(a) | set(b), key=str):
        va, vb = a.get(key), b.get(key)
        name = f"{prefix}{key}"
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_diff(va, vb, f"{name}.")
        elif va != vb:
            out.append((name, va, vb))
    return out
