"""Typed run configuration with YAML in/out and dotted overrides (``train.lr=0.001``): pydantic models on the
contract's base (:mod:`microexp.contract.values`), overrides and diffs by :mod:`microexp.contract.overrides`.

Every field is coerced to its annotated type and range-checked when the configuration is built (from YAML,
``--set`` or CLI options) or a field is assigned, so a bad value is one line naming the key and the value before
any work starts.

Renamed keys: ``workers`` (preprocessing processes) is now ``preprocess_workers``, apart from the CLI's Dask
``--workers``. An old ``config.yaml`` with ``workers:`` still loads; the value is read as ``preprocess_workers``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import Field, field_validator, model_validator

from microexp.contract.checkpoints import (  # noqa: F401 - re-exported: the checkpoint settings
    CHECKPOINT_DTYPES,
    CHECKPOINT_POLICIES,
    checkpoint_policy,
)
from microexp.contract.overrides import apply_overrides, diff
from microexp.contract.values import ConfigModel, load_yaml
from microexp.errors import ConfigError
from microexp.precision import check_name as check_precision

EPOCH_POLICIES = {
    "fixed": "trained for a fixed number of epochs; the last epoch is scored",
    "validation": "epoch chosen on validation subjects drawn from the training fold only",
    "test-peek": "LEAKY: epoch chosen on the test fold (reproduces published numbers only)",
    "whole-set": "LEAKY: epoch chosen on the whole clip set, test fold included (the FuseNet reference code)",
}
LEAKY_POLICIES = ("test-peek", "whole-set")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("none", "plateau", "exponential")
SCHEDULER_MONITORS = ("train_loss", "val_loss")
EPOCH_METRICS = ("uf1", "accuracy")
VAL_BY = ("subject", "clip")
AUGMENTS = ("none", "joshi3d", "joshi2d")
# LEAKY reproduction switches of the seeds' reference code (name -> what it does); only the code profiles use them
REPRODUCE = {
    "smic-surprise-duplication": "each surprise clip appended twice before the split and the last rows labelled "
                                 "negative, as the FuseNet SMIC scripts did (66 + 47 + 2*43 = 199 samples)",
    "augment-before-split": "augmented copies made before the split, so copies of test clips reach training "
                            "(Joshi 2021 main.py)",
    "reuse-model-across-folds": "one model object trained on fold after fold, never re-initialised (Joshi 2021)",
}
PROTOCOLS = ("loso", "holdout", "kfold", "megc2019", "lodo", "quota")
PROTOCOL_HELP = {
    "loso": "leave one subject out",
    "holdout": "one stratified split (subject-aware unless subject_aware=false, the paper's 80/20 over clips)",
    "kfold": "stratified k-fold (subject-grouped unless subject_aware=false), repeated `repeats` times per seed",
    "megc2019": "MEGC2019 composite: LOSO over dataset-qualified subjects, UF1/UAR overall and per source dataset",
    "lodo": "leave one dataset out: train on the other datasets (or train_datasets), test on each (or test_dataset)",
    "quota": "fixed training clips per class (quota) after a seeded shuffle, the rest test (Joshi 2021, 2D CNN)",
}
CONTROLS = ("none", "shuffle")
TRAINER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")  # checked against the registry by evaluate (lazy imports)
DEVICE = re.compile(r"^(auto|cpu|cuda(:[0-9]+)?|mps)$")
RENAMED = {"workers": "preprocess_workers"}  # old key -> new key; old config.yaml files keep loading


class TrainConfig(ConfigModel):
    """Optimisation. Defaults are the reference code's: Keras ``'SGD'`` = lr 0.01, no momentum."""

    prefix: ClassVar[str] = "train."

    epochs: int = 100
    batch_size: int = 8
    optimizer: str = "sgd"  # sgd | adam | adamw (decoupled weight decay, MMNet)
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    epoch_policy: str = "fixed"
    val_fraction: float = 0.2  # share of training subjects held out for the validation epoch policy
    patience: int | None = None  # stop after this many epochs without validation improvement
    # two-stage trainer, stage 1 (per-region CNNs on frames); null = train.epochs / train.batch_size
    stage1_epochs: int | None = None
    stage1_batch_size: int | None = None
    device: str = "auto"  # auto | cpu | cuda
    trainer: str = "auto"  # auto = the model spec's trainer; else a name in microexp.train.trainers.TRAINERS
    # ReduceLROnPlateau with Keras' rule (mode min, cooldown 0, min_delta 1e-4 absolute), stepped once per epoch
    scheduler: str = "none"  # none | plateau | exponential (lr *= scheduler_factor after each epoch, MMNet)
    scheduler_epochs: int | None = None  # exponential: decay after the first N epochs only, then hold (null: all)
    scheduler_factor: float = 0.1
    scheduler_patience: int = 10
    min_lr: float = 0.0
    scheduler_monitor: str = "train_loss"  # train_loss | val_loss (the validation split of the training fold)
    epoch_metric: str = "uf1"  # uf1 | accuracy: what validation / test-peek / whole-set maximise (ties: lower loss)
    report_epochs: list[int] | None = None  # [first, last]: test fold scored at each, never used for choosing
    val_by: str = "subject"  # subject | clip (stratified): how the validation split is drawn from the training fold
    drop_last: bool = False  # leave out each epoch's last partial batch (Keras steps_per_epoch = len // batch)
    augment: str = "none"  # none | joshi3d | joshi2d: class-wise copies of each fold's training rows
    precision: str = "fp32"  # fp32 | bf16 (autocast; microexp.precision)

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if not self.trainer or not TRAINER_NAME.match(self.trainer):
            raise ConfigError(f"train.trainer={self.trainer!r} is not a trainer name (auto, clip, frames-vote, "
                              "two-stage)")
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
        for key in ("stage1_epochs", "stage1_batch_size"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ConfigError(f"train.{key}={getattr(self, key)} must be >= 1 (or null: the same as stage 2)")
        if not DEVICE.match(self.device):
            raise ConfigError(f"train.device={self.device!r} is not one of auto, cpu, cuda, cuda:N, mps")
        for key, allowed in (("scheduler", SCHEDULERS), ("scheduler_monitor", SCHEDULER_MONITORS),
                             ("epoch_metric", EPOCH_METRICS), ("val_by", VAL_BY), ("augment", AUGMENTS)):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"train.{key}={getattr(self, key)!r} is not one of {list(allowed)}")
        if not 0 < self.scheduler_factor < 1:
            raise ConfigError(f"train.scheduler_factor={self.scheduler_factor} must be in (0, 1)")
        if self.scheduler_patience < 1:
            raise ConfigError(f"train.scheduler_patience={self.scheduler_patience} must be >= 1")
        if self.scheduler_epochs is not None and self.scheduler_epochs < 1:
            raise ConfigError(f"train.scheduler_epochs={self.scheduler_epochs} must be >= 1 (or null: every epoch)")
        if self.min_lr < 0:
            raise ConfigError(f"train.min_lr={self.min_lr} must be >= 0")
        if self.report_epochs is not None:
            first_last = self.report_epochs
            if len(first_last) != 2 or not 1 <= first_last[0] <= first_last[1] <= self.epochs:
                raise ConfigError(f"train.report_epochs={first_last} must be [first, last] with "
                                  f"1 <= first <= last <= train.epochs={self.epochs} (or null)")
        return self

    @property
    def needs_validation(self) -> bool:
        """Whether the training fold loses a validation split (for the epoch choice or the scheduler)."""
        return self.epoch_policy == "validation" or (self.scheduler == "plateau"
                                                     and self.scheduler_monitor == "val_loss")

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


class RunConfig(ConfigModel):
    """Everything that defines a run; saved as ``config.yaml`` in the run directory."""

    dataset: str = "synthetic"
    root: str | None = None
    annotation: str | None = None
    classes: str | None = None  # class protocol; None = the dataset's default
    model: str = "stcnn"
    model_params: dict[str, Any] = Field(default_factory=dict)
    preprocess: dict[str, Any] = Field(default_factory=dict)  # overrides of the model's default preprocessing
    protocol: str = "loso"
    folds: int = 5  # kfold
    repeats: int = 1  # kfold: repeated with fresh shuffles (fold names r{k}-fold{i} when > 1)
    test_size: float = 0.2  # holdout
    subject_aware: bool = True  # holdout, kfold: no subject in both train and test
    stratify: bool = True  # holdout, not subject-aware: False = a plain shuffled split (Reddy's code)
    shuffle: bool = True  # holdout, not subject-aware: False = the tail split, the last test_size of the clips
    quota: dict[str, Any] | None = None  # protocol quota: training clips per class, the rest test
    min_frames: int | None = None  # clips with fewer frames are excluded (listed in excluded.csv)
    max_frames: int | None = None  # clips with more frames are excluded
    reproduce: list[str] = Field(default_factory=list)  # LEAKY switches of the reference code (REPRODUCE)
    seeds: list[int] = Field(default_factory=lambda: [0])
    control: str = "none"  # "shuffle": also run with training labels permuted within subjects
    test_dataset: str | None = None  # lodo: the one target dataset (None = every dataset in turn)
    train_datasets: list[str] | None = None  # lodo: source datasets (None = all but the target)
    save_checkpoints: str = "all"  # all | predict | none (true = all, false = none): microexp.runs
    checkpoint_dtype: str = "fp32"  # fp32 | bf16 | fp16: how checkpoint weights are stored
    cache: bool = True  # reuse preprocessed clips from the on-disk cache ($MICROEXP_CACHE, ~/.cache/microexp)
    preprocess_workers: int | None = None  # processes; None: all cores when faces are detected, else 1
    train: TrainConfig = Field(default_factory=TrainConfig)
    recipe: dict[str, Any] | None = None  # evaluate --recipe: {name, version, profile, deviations} (microexp.recipes)

    @model_validator(mode="before")
    @classmethod
    def _old_keys(cls, d: Any) -> Any:
        return _rename_old_keys(d) if isinstance(d, dict) else d

    @field_validator("save_checkpoints", mode="before")
    @classmethod
    def _policy(cls, value: Any) -> str:
        return checkpoint_policy(value)

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
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
        if self.checkpoint_dtype not in CHECKPOINT_DTYPES:
            raise ConfigError(f"checkpoint_dtype={self.checkpoint_dtype!r} is not one of "
                              f"{', '.join(CHECKPOINT_DTYPES)}")
        if self.preprocess_workers is not None and self.preprocess_workers < 1:
            raise ConfigError(f"preprocess_workers={self.preprocess_workers} must be at least 1")
        self._check_split_keys()
        return self

    def _check_split_keys(self) -> None:
        """Keys that only mean something under some protocols are refused elsewhere, so none is silently ignored."""
        if self.repeats < 1:
            raise ConfigError(f"repeats={self.repeats} must be at least 1")
        if self.repeats > 1 and self.protocol != "kfold":
            raise ConfigError(f"repeats={self.repeats} applies to protocol kfold only (protocol is {self.protocol})")
        clip_holdout = self.protocol == "holdout" and not self.subject_aware
        for key in ("stratify", "shuffle"):
            if not getattr(self, key) and not clip_holdout:
                raise ConfigError(f"{key}=false applies to protocol holdout with subject_aware=false only "
                                  f"(protocol {self.protocol}, subject_aware={self.subject_aware})")
        if not self.shuffle and self.stratify:
            raise ConfigError("shuffle=false (the tail split) cannot be stratified: set stratify=false too")
        if not self.subject_aware and self.protocol not in ("holdout", "kfold", "quota"):
            raise ConfigError(f"subject_aware=false applies to protocols holdout, kfold and quota, "
                              f"not {self.protocol}")
        if self.protocol == "quota":
            if self.subject_aware:
                raise ConfigError("protocol quota splits clips, not subjects: set subject_aware=false")
            if not self.quota:
                raise ConfigError("protocol quota needs quota: {class: training clips, ...}")
            bad = {c: n for c, n in self.quota.items() if isinstance(n, bool) or not isinstance(n, int) or n < 1}
            if bad:
                raise ConfigError(f"quota={self.quota}: every value must be an integer >= 1 (bad: {bad})")
        elif self.quota is not None:
            raise ConfigError(f"quota={self.quota} applies to protocol quota only (protocol is {self.protocol})")
        for key in ("min_frames", "max_frames"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"{key}={value} must be >= 1 (or null)")
        if self.min_frames is not None and self.max_frames is not None and self.min_frames > self.max_frames:
            raise ConfigError(f"min_frames={self.min_frames} is above max_frames={self.max_frames}")
        for name in self.reproduce:
            if name not in REPRODUCE:
                raise ConfigError(f"reproduce: unknown switch {name!r} (known: {', '.join(REPRODUCE)})")
        if "augment-before-split" in self.reproduce and self.train.augment == "none":
            raise ConfigError("reproduce augment-before-split needs train.augment (joshi3d or joshi2d)")
        if len(set(self.reproduce)) != len(self.reproduce):
            raise ConfigError(f"reproduce={self.reproduce} names a switch twice")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        if not isinstance(d, dict):
            raise ConfigError(f"config must be a mapping, got {d!r}")
        return cls(**d)

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
        return RunConfig.from_dict(apply_overrides(self.to_dict(), assignments, RENAMED))


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


def config_diff(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """Dotted keys whose values differ between two (nested) configuration dicts, as (key, a value, b value).
    Old key names (an old run's ``config.yaml``) are compared under their new names."""
    return diff(a, b, renamed=RENAMED)
