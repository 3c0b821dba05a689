"""One fold task of a run: its types and :func:`run_fold`, which trains on the task's training fold and scores
its test fold. Executors (:mod:`microexp.train.executor`, :mod:`microexp.train.dask_executor`) map
:func:`run_fold` over the tasks; :mod:`microexp.train.evaluate` builds the tasks and pools their outputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from microexp import __version__
from microexp.config import LEAKY_POLICIES, RunConfig
from microexp.data.records import ClipRecord, Exclusion
from microexp.errors import ConfigError, DataError
from microexp.models import registry as model_registry
from microexp.preprocess.config import PreprocessConfig
from microexp.preprocess.normalise import GlobalNormaliser
from microexp.runs import (
    checkpoint_path,
    fold_path,
    keeps_checkpoint,
    read_json,
    save_checkpoint,
    save_sklearn_checkpoint,
    write_json,
)
from microexp.train.loop import FitResult, resolve_device, set_seed
from microexp.train.protocols import Fold, shuffle_within_groups, validation_split
from microexp.train.trainers import get_trainer


@dataclass(frozen=True)
class FoldTask:
    seed: int
    fold: Fold
    control: bool = False

    @property
    def name(self) -> str:
        return f"{'control-' if self.control else ''}seed{self.seed}-{self.fold.name}"


@dataclass
class FoldOutput:
    task: FoldTask
    rows: list[dict[str, Any]]
    history: list[dict[str, Any]]
    chosen_epoch: int
    # train.report_epochs: predicted class index of each test row (fold.test order) per epoch of the range
    epoch_predictions: dict[int, list[int]] = field(default_factory=dict)


@dataclass
class RunContext:
    """Everything a fold needs: the configuration and the preprocessed arrays of the kept clips."""

    config: RunConfig
    preprocess: PreprocessConfig
    records: list[ClipRecord]
    classes: list[str]
    inputs: dict[str, torch.Tensor]
    y: np.ndarray
    groups: np.ndarray
    out: Path | None = None
    excluded: list[Exclusion] = field(default_factory=list)
    # reproduce: reuse-model-across-folds keeps one model per (seed, control) here (a local executor only)
    shared_models: dict[tuple[int, bool], Any] = field(default_factory=dict, repr=False)


def clip_length(records: list[ClipRecord]) -> dict[str, float]:
    """Median length of the annotated clips (onset->offset where annotated, else all frames), in frames and
    seconds: ``predict`` sizes its sliding window on a new video from it."""
    frames = [(r.position(r.offset) - r.position(r.onset) + 1) if r.onset is not None and r.offset is not None
              else r.n_frames for r in records]
    seconds = [n / r.fps for n, r in zip(frames, records, strict=True)]
    return {"frames": float(np.median(frames)), "seconds": float(np.median(seconds)),
            "fps": float(np.median([r.fps for r in records]))}


def run_fold(ctx: RunContext, task: FoldTask, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> FoldOutput:
    """Train on the task's training fold and score its test fold. The test rows never reach training, unless a
    LEAKY ``reproduce`` switch or epoch policy of the run says so (:func:`microexp.runs.leaks` lists them)."""
    config, cfg, fold, seed = ctx.config, ctx.config.train, task.fold, task.seed
    if "augment-before-split" in config.reproduce:  # the copies were made once before the split
        cfg = cfg.replace(augment="none")
    spec = model_registry.get(config.model)
    n_classes = len(ctx.classes)
    y = ctx.y
    if task.control:
        y = y.copy()
        y[fold.train] = shuffle_within_groups(y[fold.train], ctx.groups[fold.train],
                                              np.random.default_rng(seed + 7919))
    if cfg.needs_validation:  # the epoch choice or the scheduler's val_loss: drawn from the training fold
        fit_idx, val_idx = validation_split(fold.train, y, ctx.groups, seed, cfg.val_fraction,
                                            by_subject=cfg.val_by == "subject")
    else:
        fit_idx, val_idx = fold.train, None
    inputs = ctx.inputs
    if cfg.augment != "none":  # the seed's composition: the training rows plus their class-wise augmented copies
        inputs, y, fit_idx = augment_training_rows(ctx, inputs, y, fit_idx, seed)
        cfg = cfg.replace(augment="none")
    normaliser = None
    if ctx.preprocess.normalise == "global":  # fitted on the rows the model trains on, saved for inference
        norm = GlobalNormaliser().fit(inputs, fit_idx)
        inputs = norm.transform(inputs)
        normaliser = norm.to_dict()
    set_seed(seed)
    if spec.kind == "sklearn":  # e.g. LBP-TOP + SVM: one fit on numpy arrays, no epochs
        estimator = spec.build(n_classes, ctx.preprocess, **config.model_params)
        estimator.fit(_rows(inputs, fit_idx), y[fit_idx])
        probs = estimator.predict_proba(_rows(inputs, fold.test))
        result = FitResult(history=[], chosen_epoch=0)
    else:
        device = resolve_device(cfg.device)
        if "reuse-model-across-folds" in config.reproduce:  # LEAKY (Joshi): one model object through the folds
            model = ctx.shared_models.get((seed, task.control))
            if model is None:
                model = ctx.shared_models[(seed, task.control)] = spec.build(n_classes, ctx.preprocess,
                                                                             **config.model_params).to(device)
        else:
            model = spec.build(n_classes, ctx.preprocess, **config.model_params).to(device)
        trainer = get_trainer(cfg, spec)
        sees_test = cfg.epoch_policy in LEAKY_POLICIES or cfg.report_epochs is not None
        result = trainer.fit(model, inputs, torch.from_numpy(y), fit_idx, cfg, seed, n_classes, val_idx=val_idx,
                             test_idx=fold.test if sees_test else None, on_epoch=on_epoch,
                             spec=spec, preprocess=ctx.preprocess)
        probs = trainer.predict_proba(model, inputs, fold.test, cfg.batch_size * 4, device)
    rows = []
    for i, p in zip(fold.test, probs, strict=True):
        rec = ctx.records[i]
        rows.append({"seed": seed, "fold": fold.name, "dataset": rec.dataset, "subject": rec.subject,
                     "clip_id": rec.clip_id, "true": ctx.classes[ctx.y[i]],
                     "predicted": ctx.classes[int(p.argmax())],
                     **{f"p_{c}": float(v) for c, v in zip(ctx.classes, p, strict=True)},
                     "epoch": result.chosen_epoch})
    history = [{"control": task.control, "seed": seed, "fold": fold.name, **h} for h in result.history]
    keep = ctx.out is not None and not task.control and keeps_checkpoint(config, seed)
    if keep and spec.kind == "sklearn":
        save_sklearn_checkpoint(checkpoint_path(ctx.out, seed, fold.name).with_suffix(".joblib"),
                                {"model": config.model, "model_params": config.model_params, "estimator": estimator,
                                 "preprocess": ctx.preprocess.to_dict(), "classes": ctx.classes, "seed": seed,
                                 "fold": fold.name, "microexp_version": __version__})
    elif keep:
        save_checkpoint(checkpoint_path(ctx.out, seed, fold.name),
                        # a pretrained file only initialises: the checkpoint's weights replace it, so predict and
                        # explain never need the file again
                        {"model": config.model, "state_dict": model.state_dict(),
                         "model_params": {k: v for k, v in config.model_params.items() if k != "pretrained"},
                         "preprocess": ctx.preprocess.to_dict(), "classes": ctx.classes, "seed": seed,
                         "fold": fold.name, "epoch": result.chosen_epoch, "microexp_version": __version__,
                         "trainer": trainer.name,
                         "normaliser": normaliser, "clip": clip_length([ctx.records[i] for i in fold.train])},
                        dtype=config.checkpoint_dtype)
    output = FoldOutput(task, rows, history, result.chosen_epoch,
                        {e: p.argmax(1).tolist() for e, p in getattr(result, "test_probs", {}).items()})
    if ctx.out is not None:
        save_fold_output(ctx.out, output)
    return output


def augment_training_rows(ctx: RunContext, inputs: dict[str, torch.Tensor], y: np.ndarray, fit_idx: np.ndarray,
                          seed: int) -> tuple[dict[str, torch.Tensor], np.ndarray, np.ndarray]:
    """``train.augment`` on the rows the model trains on only (never validation or test rows): the augmented
    copies (:func:`microexp.train.augment.augment_set`) are appended after the clip set and join ``fit_idx``."""
    from microexp.train import augment

    rng = np.random.default_rng(seed + 104729)
    name = ctx.config.train.augment
    out, labels = augment.augment_set(name, {k: v[torch.as_tensor(fit_idx)] for k, v in inputs.items()},
                                      y[fit_idx], ctx.classes, rng,
                                      value_range=augment.value_range(ctx.preprocess.normalise))
    n, added = len(y), len(labels) - len(fit_idx)
    if added == 0:
        return inputs, y, fit_idx
    grown = {k: torch.cat([v, out[k][len(fit_idx):].to(v.dtype)]) for k, v in inputs.items()}
    return (grown, np.concatenate([y, np.asarray(labels)[len(fit_idx):]]),
            np.concatenate([fit_idx, np.arange(n, n + added)]))


def _rows(inputs: dict[str, torch.Tensor], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[torch.as_tensor(idx)].numpy() for k, v in inputs.items()}


def save_fold_output(out: Path, output: FoldOutput) -> Path:
    return write_json(fold_path(out, output.task),
                      {"task": output.task.name, "seed": output.task.seed, "fold": output.task.fold.name,
                       "control": output.task.control, "test": output.task.fold.test.tolist(),
                       "chosen_epoch": output.chosen_epoch, "rows": output.rows, "history": output.history,
                       "epoch_predictions": {str(e): p for e, p in output.epoch_predictions.items()}})


def load_fold_output(out: Path, task: FoldTask) -> FoldOutput | None:
    """The saved output of ``task`` in run directory ``out``, or None when that fold has not finished."""
    path = fold_path(out, task)
    if not path.is_file():
        return None
    try:
        d = read_json(path, "fold result")
    except DataError as exc:
        raise DataError(f"{exc}; delete it to recompute that fold") from None
    if d.get("test") != task.fold.test.tolist():
        raise ConfigError(f"{path}: its test clips differ from this run's fold {task.fold.name}; the data changed")
    return FoldOutput(task, d["rows"], d["history"], int(d["chosen_epoch"]),
                      {int(e): p for e, p in d.get("epoch_predictions", {}).items()})
