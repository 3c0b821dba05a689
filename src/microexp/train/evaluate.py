"""Evaluate a model on a dataset under a protocol: the whole leak-free path, writing a run directory.

The run is a list of independent :class:`FoldTask` (seed x fold x real/control); :func:`run_fold` trains and
scores one, and an executor (:mod:`microexp.train.executor`) maps it over the tasks. Results are pooled per seed.

Run directory: ``config.yaml``, ``metrics.json``, ``predictions.csv`` (one row per test clip and seed),
``history.csv`` (learning curves per fold), ``excluded.csv`` (clip, reason), ``checkpoints/`` (one per fold),
``folds/<task>.json`` (each finished fold's predictions, history and chosen epoch, written atomically as it ends).

Resuming: ``evaluate(config, out, resume=True)`` (CLI ``microexp evaluate --resume RUN_DIR``) skips the fold
tasks whose ``folds/*.json`` exist and runs the rest, provided the run directory's ``config.yaml`` equals the
resolved configuration (otherwise a :class:`ConfigError` lists the differing keys). Without ``resume`` an ``out``
that already holds a run is refused rather than silently mixed.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import torch
import yaml

from microexp import __version__
from microexp.config import EPOCH_POLICIES, RunConfig, config_diff
from microexp.data.records import ClipRecord, ClipSet, Exclusion
from microexp.data.registry import load_dataset
from microexp.errors import ConfigError, DataError
from microexp.fileio import write_atomic
from microexp.models import registry as model_registry
from microexp.preprocess.cache import default_cache_dir
from microexp.preprocess.config import PreprocessConfig
from microexp.preprocess.pipeline import preprocess_set
from microexp.train.executor import Executor, LocalExecutor
from microexp.train.loop import FitResult, fit, predict_proba, resolve_device, set_seed
from microexp.train.metrics import compute_metrics, summarise_seeds
from microexp.train.protocols import Fold, make_folds, shuffle_within_groups, validation_split


@dataclass
class RunResult:
    run_dir: Path | None
    metrics: dict[str, Any]
    predictions: pd.DataFrame
    history: pd.DataFrame


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


def resolve_preprocess(config: RunConfig) -> PreprocessConfig:
    """The model's default preprocessing with the run's overrides applied."""
    spec = model_registry.get(config.model)
    return PreprocessConfig.from_dict({**spec.preprocess.to_dict(), **config.preprocess})


def chance_levels(y: np.ndarray, n_classes: int) -> dict[str, float]:
    """Expected scores of uniform random guessing on these labels."""
    p = np.bincount(y, minlength=n_classes) / len(y)
    f1 = [2 * pc / n_classes / (pc + 1 / n_classes) for pc in p if pc > 0] + [0.0] * int((p == 0).sum())
    return {"accuracy": 1 / n_classes, "uar": 1 / n_classes, "uf1": float(np.mean(f1))}


def global_normaliser_stats(inputs: dict[str, torch.Tensor], rows: np.ndarray) -> dict[str, dict[str, float]]:
    """The seed code's normalisation statistics (global mean, then max of the centred values) on training rows
    only, as ``{"mean": {stream: m}, "scale": {stream: s}}`` (saved with the checkpoint for inference)."""
    stats: dict[str, dict[str, float]] = {"mean": {}, "scale": {}}
    for name, x in inputs.items():
        train = x[torch.as_tensor(rows)]
        mean = train.mean()
        stats["mean"][name] = float(mean)
        stats["scale"][name] = float((train - mean).max().clamp_min(1e-6))
    return stats


def fit_global_normaliser(inputs: dict[str, torch.Tensor], rows: np.ndarray) -> dict[str, torch.Tensor]:
    """The seed code's normalisation (global mean subtract, then global max divide) fitted on training rows only."""
    return apply_global_normaliser(inputs, global_normaliser_stats(inputs, rows))


def apply_global_normaliser(inputs: dict[str, torch.Tensor],
                            stats: dict[str, dict[str, float]]) -> dict[str, torch.Tensor]:
    return {name: (x - stats["mean"][name]) / stats["scale"][name] for name, x in inputs.items()}


def clip_length(records: list[ClipRecord]) -> dict[str, float]:
    """Median length of the annotated clips (onset->offset where annotated, else all frames), in frames and
    seconds: ``predict`` sizes its sliding window on a new video from it."""
    frames = [(r.position(r.offset) - r.position(r.onset) + 1) if r.onset is not None and r.offset is not None
              else r.n_frames for r in records]
    seconds = [n / r.fps for n, r in zip(frames, records, strict=True)]
    return {"frames": float(np.median(frames)), "seconds": float(np.median(seconds)),
            "fps": float(np.median([r.fps for r in records]))}


def check_model(config: RunConfig) -> None:
    """Build the model once on the configured input shapes so bad hyper-parameters fail before any training."""
    spec = model_registry.get(config.model)
    try:
        with torch.device("meta"):  # shapes only, no memory
            spec.build(2, resolve_preprocess(config), **config.model_params)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"model {config.model} with model_params {config.model_params}: {exc}") from None
    except (NotImplementedError, RuntimeError):
        pass  # an initialiser the meta device cannot run: the real build in each fold still checks


def prepare(config: RunConfig, clips: ClipSet | None = None, progress: bool = True,
            out: Path | None = None) -> RunContext:
    """Load (unless given) and preprocess the clips of a run."""
    pconf = resolve_preprocess(config)
    if clips is None:
        if not config.root:
            raise ConfigError(f"dataset {config.dataset!r} needs --root")
        clips = load_dataset(config.dataset, Path(config.root), config.annotation, config.classes)
    if len(clips) == 0:
        raise DataError(f"{clips.name}: no usable clips ({len(clips.excluded)} excluded)")
    workers = config.workers if config.workers is not None else (None if pconf.face != "none" else 1)
    prepared = preprocess_set(clips, pconf, progress=progress, cache=default_cache_dir() if config.cache else None,
                              workers=workers)
    kept = clips.subset(prepared.index)
    excluded = list(clips.excluded) + list(prepared.excluded)
    if len(kept) == 0:
        raise DataError(f"{clips.name}: every clip failed preprocessing; first reason: {excluded[0].reason}")
    groups = np.array([f"{r.dataset}/{r.subject}" for r in kept.records], dtype=object)
    return RunContext(config, pconf, kept.records, list(kept.classes),
                      {k: torch.from_numpy(v) for k, v in prepared.streams.items()}, kept.targets, groups, out,
                      excluded)


def fold_tasks(ctx: RunContext, control: bool = False) -> list[FoldTask]:
    c = ctx.config
    return [FoldTask(seed, fold, control) for seed in c.seeds
            for fold in make_folds(c.protocol, ctx.y, ctx.groups, seed=seed, n_splits=c.folds,
                                   test_size=c.test_size, subject_aware=c.subject_aware,
                                   datasets=np.array([r.dataset for r in ctx.records], dtype=object),
                                   test_dataset=c.test_dataset, train_datasets=c.train_datasets)]


def run_fold(ctx: RunContext, task: FoldTask, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> FoldOutput:
    """Train on the task's training fold and score its test fold. The test rows never reach training."""
    config, cfg, fold, seed = ctx.config, ctx.config.train, task.fold, task.seed
    spec = model_registry.get(config.model)
    n_classes = len(ctx.classes)
    y = ctx.y
    if task.control:
        y = y.copy()
        y[fold.train] = shuffle_within_groups(y[fold.train], ctx.groups[fold.train],
                                              np.random.default_rng(seed + 7919))
    if cfg.epoch_policy == "validation":
        fit_idx, val_idx = validation_split(fold.train, y, ctx.groups, seed, cfg.val_fraction,
                                            by_subject=config.protocol != "holdout" or config.subject_aware)
    else:
        fit_idx, val_idx = fold.train, None
    inputs = ctx.inputs
    normaliser = None
    if ctx.preprocess.normalise == "global":
        normaliser = global_normaliser_stats(inputs, fit_idx)
        inputs = apply_global_normaliser(inputs, normaliser)
    set_seed(seed)
    if spec.kind == "sklearn":  # e.g. LBP-TOP + SVM: one fit on numpy arrays, no epochs
        estimator = spec.build(n_classes, ctx.preprocess, **config.model_params)
        estimator.fit(_rows(inputs, fit_idx), y[fit_idx])
        probs = estimator.predict_proba(_rows(inputs, fold.test))
        result = FitResult(history=[], chosen_epoch=0)
    else:
        device = resolve_device(cfg.device)
        model = spec.build(n_classes, ctx.preprocess, **config.model_params).to(device)
        result = fit(model, inputs, torch.from_numpy(y), fit_idx, cfg, seed, n_classes, val_idx=val_idx,
                     test_idx=fold.test if cfg.epoch_policy == "test-peek" else None, on_epoch=on_epoch)
        probs = predict_proba(model, inputs, fold.test, cfg.batch_size * 4, device)
    rows = []
    for i, p in zip(fold.test, probs, strict=True):
        rec = ctx.records[i]
        rows.append({"seed": seed, "fold": fold.name, "dataset": rec.dataset, "subject": rec.subject,
                     "clip_id": rec.clip_id, "true": ctx.classes[ctx.y[i]],
                     "predicted": ctx.classes[int(p.argmax())],
                     **{f"p_{c}": float(v) for c, v in zip(ctx.classes, p, strict=True)},
                     "epoch": result.chosen_epoch})
    history = [{"control": task.control, "seed": seed, "fold": fold.name, **h} for h in result.history]
    if ctx.out is not None and config.save_checkpoints and not task.control and spec.kind == "sklearn":
        path = checkpoint_path(ctx.out, seed, fold.name).with_suffix(".joblib")
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump({"model": config.model, "model_params": config.model_params, "estimator": estimator,
                     "preprocess": ctx.preprocess.to_dict(), "classes": ctx.classes, "seed": seed, "fold": fold.name,
                     "microexp_version": __version__}, path)
    elif ctx.out is not None and config.save_checkpoints and not task.control:
        path = checkpoint_path(ctx.out, seed, fold.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": config.model, "model_params": config.model_params, "state_dict": model.state_dict(),
                    "preprocess": ctx.preprocess.to_dict(), "classes": ctx.classes, "seed": seed,
                    "fold": fold.name, "epoch": result.chosen_epoch, "microexp_version": __version__,
                    "normaliser": normaliser, "clip": clip_length([ctx.records[i] for i in fold.train])},
                   path)
    output = FoldOutput(task, rows, history, result.chosen_epoch)
    if ctx.out is not None:
        save_fold_output(ctx.out, output)
    return output


def _rows(inputs: dict[str, torch.Tensor], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[torch.as_tensor(idx)].numpy() for k, v in inputs.items()}


def file_name(name: str) -> str:
    """A fold or task name as a file name: dataset-qualified subjects (``casme2/sub01``) become ``casme2__sub01``."""
    return name.replace("/", "__").replace("\\", "__")


def checkpoint_path(out: Path, seed: int, fold: str) -> Path:
    return Path(out) / "checkpoints" / f"seed{seed}-{file_name(fold)}.pt"


def fold_path(out: Path, task: FoldTask) -> Path:
    return Path(out) / "folds" / f"{file_name(task.name)}.json"


def save_fold_output(out: Path, output: FoldOutput) -> Path:
    path = fold_path(out, output.task)
    write_atomic(path, json.dumps({"task": output.task.name, "seed": output.task.seed, "fold": output.task.fold.name,
                                    "control": output.task.control, "test": output.task.fold.test.tolist(),
                                    "chosen_epoch": output.chosen_epoch, "rows": output.rows,
                                    "history": output.history}))
    return path


def load_fold_output(out: Path, task: FoldTask) -> FoldOutput | None:
    """The saved output of ``task`` in run directory ``out``, or None when that fold has not finished."""
    path = fold_path(out, task)
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable fold result ({exc}); delete it to recompute that fold") from None
    if d.get("test") != task.fold.test.tolist():
        raise ConfigError(f"{path}: its test clips differ from this run's fold {task.fold.name}; the data changed")
    return FoldOutput(task, d["rows"], d["history"], int(d["chosen_epoch"]))


def resolved_config(config: RunConfig, pconf: PreprocessConfig) -> dict[str, Any]:
    """The configuration as saved in ``config.yaml``: the run's keys with the full preprocessing filled in."""
    resolved = config.to_dict()
    resolved["preprocess"] = pconf.to_dict()
    return yaml.safe_load(yaml.safe_dump(resolved, sort_keys=False))


def start_run_dir(out: Path, config: RunConfig, pconf: PreprocessConfig, resume: bool) -> None:
    """Check ``out`` can take this run (fresh, or a matching one to resume) and write its ``config.yaml``."""
    out = Path(out)
    saved = out / "config.yaml"
    has_run = saved.is_file() and ((out / "metrics.json").is_file() or any((out / "folds").glob("*.json")))
    resolved = resolved_config(config, pconf)
    if resume:
        if not saved.is_file():
            raise ConfigError(f"{out}: nothing to resume (no config.yaml)")
        try:
            previous = yaml.safe_load(saved.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{saved}: unreadable ({exc})") from None
        diff = config_diff(previous, resolved)
        if diff:
            shown = "; ".join(f"{k}: {a!r} in the run, {b!r} now" for k, a, b in diff[:5])
            raise ConfigError(f"{out}: cannot resume, the configuration differs ({shown})")
    elif has_run:
        raise ConfigError(f"{out} already holds a run; resume it with `microexp evaluate --resume {out}` "
                          f"or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(saved, yaml.safe_dump(resolved, sort_keys=False))


def run_tasks(ctx: RunContext, tasks: list[FoldTask], executor: Executor,
              log: Callable[[str], None] = print) -> list[FoldOutput]:
    """Outputs of ``tasks`` in order: finished folds loaded from the run directory, the rest run by ``executor``."""
    done = {t.name: o for t in tasks if ctx.out is not None and (o := load_fold_output(ctx.out, t)) is not None}
    todo = [t for t in tasks if t.name not in done]
    if done:
        log(f"resuming: {len(done)} of {len(tasks)} fold(s) already finished, running {len(todo)}")
    new = {o.task.name: o for o in (executor.run(ctx, todo) if todo else [])}
    return [done.get(t.name) or new[t.name] for t in tasks]


def pooled_metrics(ctx: RunContext, outputs: list[FoldOutput]) -> dict[str, Any]:
    """Metrics per seed on the pooled predictions of all its folds, then aggregated over seeds."""
    index = {c: i for i, c in enumerate(ctx.classes)}
    per_seed = []
    for seed in ctx.config.seeds:
        rows = [r for o in outputs if o.task.seed == seed for r in o.rows]
        m = compute_metrics([index[r["true"]] for r in rows], [index[r["predicted"]] for r in rows], ctx.classes,
                            subjects=[f"{r['dataset']}/{r['subject']}" for r in rows],
                            datasets=[r["dataset"] for r in rows],
                            per_dataset=True if ctx.config.protocol in ("megc2019", "lodo") else None)
        per_seed.append({"seed": seed, **m})
    agg: dict[str, Any] = copy.deepcopy({k: v for k, v in per_seed[0].items() if k != "seed"})
    if len(per_seed) > 1:
        for key, stats in summarise_seeds(per_seed).items():
            agg[key], agg[f"{key}_std"] = stats["mean"], stats["std"]
        agg["confusion"] = np.sum([m["confusion"] for m in per_seed], axis=0).tolist()
        if "per_dataset" in agg:  # composite scores per source dataset as mean ± std over seeds too
            for d, m in agg["per_dataset"].items():
                for key, stats in summarise_seeds([ps["per_dataset"][d] for ps in per_seed]).items():
                    m[key], m[f"{key}_std"] = stats["mean"], stats["std"]
    agg["per_seed"] = per_seed
    return agg


def evaluate(config: RunConfig, out: Path | None = None, clips: ClipSet | None = None, progress: bool = True,
             log: Callable[[str], None] = print, executor: Executor | None = None,
             resume: bool = False) -> RunResult:
    """Run ``config`` end to end. ``clips`` overrides loading the dataset (already mapped to classes).

    With ``out``, every finished fold is saved under ``out/folds``; ``resume=True`` continues a killed run there.
    """
    started = time.time()
    check_model(config)  # fail on an unknown model or bad hyper-parameters before any loading
    if out is not None:
        start_run_dir(Path(out), config, resolve_preprocess(config), resume)
    ctx = prepare(config, clips, progress=progress, out=out)
    executor = executor or LocalExecutor(progress=progress)
    cfg = config.train
    outputs = run_tasks(ctx, fold_tasks(ctx), executor, log)
    metrics = pooled_metrics(ctx, outputs)
    metrics.update({
        "dataset": config.dataset, "protocol": config.protocol, "model": config.model, "classes": ctx.classes,
        "n_clips": len(ctx.records), "n_subjects": len(set(ctx.groups.tolist())), "n_excluded": len(ctx.excluded),
        "n_folds": len(outputs) // len(config.seeds), "seeds": list(config.seeds),
        "epoch_policy": {"name": cfg.epoch_policy, "description": EPOCH_POLICIES[cfg.epoch_policy],
                         "leaky": cfg.epoch_policy == "test-peek", "epochs": cfg.epochs,
                         "chosen_epochs": sorted({o.chosen_epoch for o in outputs})},
        "chance": chance_levels(ctx.y, len(ctx.classes)), "microexp_version": __version__,
        "training": {"optimizer": cfg.optimizer, "lr": cfg.lr, "momentum": cfg.momentum, "batch_size": cfg.batch_size,
                     "epochs": cfg.epochs},
        "inputs": {name: list(ctx.preprocess.stream_shape(name)) for name in ctx.inputs},
    })
    history = [h for o in outputs for h in o.history]
    if config.control == "shuffle":
        control = run_tasks(ctx, fold_tasks(ctx, control=True), executor, log)
        metrics["control"] = {"kind": "shuffle (training labels permuted within subjects)",
                              **pooled_metrics(ctx, control), "seeds": list(config.seeds)}
        history += [h for o in control for h in o.history]
    metrics["seconds"] = round(time.time() - started, 2)
    predictions = pd.DataFrame([r for o in outputs for r in o.rows])
    hist = pd.DataFrame(history)
    if out is not None:
        write_run(out, config, ctx.preprocess, metrics, predictions, hist, ctx.excluded)
        log(f"run written to {out}")
    return RunResult(out, metrics, predictions, hist)


def write_run(out: Path, config: RunConfig, pconf: PreprocessConfig, metrics: dict[str, Any],
              predictions: pd.DataFrame, history: pd.DataFrame, excluded: list[Exclusion]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "config.yaml", yaml.safe_dump(resolved_config(config, pconf), sort_keys=False))
    write_atomic(out / "metrics.json", json.dumps(metrics, indent=2))
    predictions.to_csv(out / "predictions.csv", index=False)
    history.to_csv(out / "history.csv", index=False)
    pd.DataFrame([{"clip": e.clip, "reason": e.reason} for e in excluded], columns=["clip", "reason"]).to_csv(
        out / "excluded.csv", index=False)
