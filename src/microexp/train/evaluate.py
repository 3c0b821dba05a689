"""Evaluate a model on a dataset under a protocol: the whole leak-free path, writing a run directory.

The run is a list of independent :class:`~microexp.train.folds.FoldTask` (seed x fold x real/control);
:func:`~microexp.train.folds.run_fold` trains and scores one, and an executor (:mod:`microexp.train.executor`)
maps it over the tasks. Results are pooled per seed. The run directory's layout and files: :mod:`microexp.runs`.

Resuming: ``evaluate(config, out, resume=True)`` (CLI ``microexp evaluate --resume RUN_DIR``) skips the fold
tasks whose ``folds/*.json`` exist and runs the rest, provided the run directory's ``config.yaml`` equals the
resolved configuration (otherwise a :class:`ConfigError` lists the differing keys). Without ``resume`` an ``out``
that already holds a run is refused rather than silently mixed.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from microexp import __version__, runs
from microexp.config import EPOCH_POLICIES, RENAMED, RunConfig, checkpoint_policy, config_diff
from microexp.data.records import ClipSet, Exclusion
from microexp.data.registry import load_dataset
from microexp.errors import ConfigError, DataError
from microexp.fileio import check_writable_dir
from microexp.models import registry as model_registry
from microexp.preprocess.cache import ClipCache, default_cache_dir
from microexp.preprocess.config import PreprocessConfig
from microexp.preprocess.pipeline import preprocess_set
from microexp.runs import checkpoint_path, file_name, fold_path  # noqa: F401 - the run directory's paths
from microexp.train.executor import Executor, LocalExecutor
from microexp.train.folds import (  # noqa: F401 - the fold types and run_fold are importable from here too
    FoldOutput,
    FoldTask,
    RunContext,
    clip_length,
    load_fold_output,
    run_fold,
    save_fold_output,
)
from microexp.train.metrics import compute_metrics, core_metrics, summarise_seeds
from microexp.train.protocols import make_folds
from microexp.train.reproduce import augment_before_split, smic_surprise_duplication


@dataclass
class RunResult:
    run_dir: Path | None
    metrics: dict[str, Any]
    predictions: pd.DataFrame
    history: pd.DataFrame


def resolve_preprocess(config: RunConfig) -> PreprocessConfig:
    """The model's default preprocessing with the run's overrides applied."""
    spec = model_registry.get(config.model)
    return PreprocessConfig.from_dict({**spec.preprocess.to_dict(), **config.preprocess})


def chance_levels(y: np.ndarray, n_classes: int) -> dict[str, float]:
    """Expected scores of uniform random guessing on these labels, averaged over the classes present (the rule of
    :mod:`microexp.train.metrics`)."""
    p = np.bincount(y, minlength=n_classes) / len(y)
    f1 = [2 * pc / n_classes / (pc + 1 / n_classes) for pc in p if pc > 0]
    return {"accuracy": 1 / n_classes, "uar": 1 / n_classes, "uf1": float(np.mean(f1))}


def check_model(config: RunConfig) -> None:
    """Build the model once on the configured input shapes so bad hyper-parameters fail before any training."""
    spec = model_registry.get(config.model)
    if spec.kind == "torch":
        from microexp.train.trainers import get_trainer

        get_trainer(config.train, spec)  # an unknown train.trainer: one line before any loading
    elif config.train.report_epochs is not None:
        raise ConfigError(f"train.report_epochs={config.train.report_epochs}: model {config.model} is not trained "
                          f"by epochs (kind {spec.kind})")
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
            raise ConfigError(f"dataset {config.dataset!r} needs root, the dataset's folder")
        clips = load_dataset(config.dataset, Path(config.root), config.annotation, config.classes)
    if config.min_frames is not None or config.max_frames is not None:
        clips = clips.filter_length(config.min_frames, config.max_frames)
    if len(clips) == 0:
        first = f"; first reason: {clips.excluded[0].reason}" if clips.excluded else ""
        raise DataError(f"{clips.name}: no usable clips ({len(clips.excluded)} excluded{first})")
    workers = config.preprocess_workers
    if workers is None:
        workers = None if pconf.face != "none" else 1
    cache = ClipCache(default_cache_dir()).check_writable() if config.cache else None
    prepared = preprocess_set(clips, pconf, progress=progress, cache=cache, workers=workers)
    kept = clips.subset(prepared.index)
    excluded = list(clips.excluded) + list(prepared.excluded)
    if len(kept) == 0:
        raise DataError(f"{clips.name}: every clip failed preprocessing; first reason: {excluded[0].reason}")
    groups = np.array([f"{r.dataset}/{r.subject}" for r in kept.records], dtype=object)
    ctx = RunContext(config, pconf, kept.records, list(kept.classes),
                     {k: torch.from_numpy(v) for k, v in prepared.streams.items()}, kept.targets, groups, out,
                     excluded)
    return reproduce_data(ctx)


def reproduce_data(ctx: RunContext) -> RunContext:
    """The clip set as the seed's code built it before the split, for the data-side LEAKY ``reproduce`` switches
    (:mod:`microexp.train.reproduce`); unchanged without them."""
    c = ctx.config
    if "smic-surprise-duplication" in c.reproduce:
        rows, labels = smic_surprise_duplication(ctx.y, ctx.classes)
        ctx = _take_rows(ctx, rows, labels)
    if "augment-before-split" in c.reproduce:
        rows, inputs, labels = augment_before_split(c.train.augment, ctx.inputs, ctx.y, c.seeds[0], ctx.classes,
                                                    ctx.preprocess.normalise)
        ctx = _take_rows(ctx, rows, labels, inputs)
    return ctx


def _take_rows(ctx: RunContext, rows: np.ndarray, labels: np.ndarray,
               inputs: dict[str, torch.Tensor] | None = None) -> RunContext:
    index = torch.as_tensor(rows, dtype=torch.long)
    return dataclasses.replace(ctx, records=[ctx.records[i] for i in rows], y=np.asarray(labels),
                               groups=ctx.groups[rows],
                               inputs=inputs if inputs is not None else {k: v.index_select(0, index)
                                                                         for k, v in ctx.inputs.items()})


def fold_tasks(ctx: RunContext, control: bool = False) -> list[FoldTask]:
    c = ctx.config
    return [FoldTask(seed, fold, control) for seed in c.seeds
            for fold in make_folds(c.protocol, ctx.y, ctx.groups, seed=seed, n_splits=c.folds,
                                   test_size=c.test_size, subject_aware=c.subject_aware,
                                   datasets=np.array([r.dataset for r in ctx.records], dtype=object),
                                   test_dataset=c.test_dataset, train_datasets=c.train_datasets, repeats=c.repeats,
                                   stratify=c.stratify, shuffle=c.shuffle, quota=c.quota, classes=ctx.classes)]


def resolved_config(config: RunConfig, pconf: PreprocessConfig) -> dict[str, Any]:
    """The configuration as saved in ``config.yaml``: the run's keys with the full preprocessing filled in."""
    resolved = config.to_dict()
    resolved["preprocess"] = pconf.to_dict()
    return yaml.safe_load(yaml.safe_dump(resolved, sort_keys=False))


def _with_new_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A run's saved configuration with the keys added since it was written set to their defaults (a key the run
    lacks had its default behaviour then), so resuming an older run is not refused over them."""
    defaults = RunConfig().to_dict()
    old_names = {new: old for old, new in RENAMED.items()}
    out = dict(saved)
    for key, value in defaults.items():
        if key == "train" and isinstance(out.get("train"), dict):
            out["train"] = {**value, **out["train"]}
        elif key not in out and old_names.get(key) not in out:
            out[key] = value
    if "save_checkpoints" in out:  # true / false before the all | predict | none policy
        out["save_checkpoints"] = checkpoint_policy(out["save_checkpoints"])
    if isinstance(out.get("preprocess"), dict):  # a preprocessing key added since: the field's own default
        out["preprocess"] = {**PreprocessConfig().to_dict(), **out["preprocess"]}
    return out


def start_run_dir(out: Path, config: RunConfig, pconf: PreprocessConfig, resume: bool) -> None:
    """Check ``out`` can take this run (fresh, or a matching one to resume) and write its ``config.yaml``."""
    out = Path(out)
    saved = out / runs.CONFIG
    has_run = saved.is_file() and ((out / runs.METRICS).is_file() or any((out / runs.FOLDS).glob("*.json")))
    resolved = resolved_config(config, pconf)
    if resume:
        if not saved.is_file():
            raise ConfigError(f"{out}: nothing to resume (no config.yaml)")
        previous = _with_new_defaults(runs.read_config(out))
        diff = config_diff(previous, resolved)
        if diff:
            shown = "; ".join(f"{k}: {a!r} in the run, {b!r} now" for k, a, b in diff[:5])
            raise ConfigError(f"{out}: cannot resume, the configuration differs ({shown})")
    elif has_run:
        raise ConfigError(f"{out} already holds a run; resume it (resume=True; `microexp evaluate --resume {out}`) "
                          f"or choose another output folder")
    check_writable_dir(out)
    runs.write_config(out, resolved)


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


def epoch_range(ctx: RunContext, outputs: list[FoldOutput]) -> dict[str, Any]:
    """``train.report_epochs``: for each epoch of the range, the test predictions of all folds of a seed pooled
    and scored; then the mean and (population) std of those scores over the epochs (and seeds). The test fold is
    only scored here, never chosen on (Reddy et al. 2019, Table VIII: epochs 91-100). An epoch some fold did
    not reach (early stopping) is left out, and ``n_epochs`` says how many were scored."""
    first, last = ctx.config.train.report_epochs or (0, -1)
    per_epoch = []
    for seed in ctx.config.seeds:
        outs = [o for o in outputs if o.task.seed == seed]
        for epoch in range(first, last + 1):
            if not outs or any(epoch not in o.epoch_predictions for o in outs):
                continue
            y_true = np.concatenate([ctx.y[o.task.fold.test] for o in outs])
            y_pred = np.concatenate([np.asarray(o.epoch_predictions[epoch], dtype=int) for o in outs])
            m = core_metrics(y_true, y_pred, len(ctx.classes))
            per_epoch.append({"seed": seed, "epoch": epoch, **{k: m[k] for k in ("accuracy", "uf1", "uar")}})
    stats = summarise_seeds(per_epoch) if per_epoch else {}
    return {"first": first, "last": last, "n_epochs": len(per_epoch), **stats, "per_epoch": per_epoch}


def trainer_label(config: RunConfig) -> str:
    spec = model_registry.get(config.model)
    if spec.kind != "torch":
        return spec.kind
    from microexp.train.trainers import trainer_name

    return trainer_name(config.train, spec)


def evaluate(config: RunConfig, out: Path | None = None, clips: ClipSet | None = None, progress: bool = True,
             log: Callable[[str], None] = print, executor: Executor | None = None,
             resume: bool = False) -> RunResult:
    """Run ``config`` end to end. ``clips`` overrides loading the dataset (already mapped to classes).

    With ``out``, every finished fold is saved under ``out/folds``; ``resume=True`` continues a killed run there.
    """
    own = model_registry.get(config.model).evaluator
    if own is not None:  # a model that reads no frames (e.g. emotion from the annotated AUs) runs its own loop
        result = own(config, out, clips, log)
        return RunResult(result.run_dir, result.metrics, result.predictions, result.history)
    started = time.time()
    check_model(config)  # fail on an unknown model or bad hyper-parameters before any loading
    config.train.check_device()  # and on a GPU this machine lacks
    if out is not None:
        start_run_dir(Path(out), config, resolve_preprocess(config), resume)
    if "reuse-model-across-folds" in config.reproduce and not isinstance(executor, LocalExecutor | None):
        raise ConfigError("reproduce reuse-model-across-folds trains one model fold after fold: it needs the local "
                          "executor (no --workers)")
    ctx = prepare(config, clips, progress=progress, out=out)
    executor = executor or LocalExecutor(progress=progress)
    cfg = config.train
    outputs = run_tasks(ctx, fold_tasks(ctx), executor, log)
    metrics = pooled_metrics(ctx, outputs)
    leak_list = runs.leaks(config)
    metrics.update({
        "dataset": config.dataset, "protocol": config.protocol, "model": config.model, "classes": ctx.classes,
        "n_clips": len(ctx.records), "n_subjects": len(set(ctx.groups.tolist())), "n_excluded": len(ctx.excluded),
        "class_counts": {c: int((np.asarray(ctx.y) == i).sum()) for i, c in enumerate(ctx.classes)},
        "n_repaired": sum(bool(r.meta.get("repairs")) for r in ctx.records),
        "n_folds": len(outputs) // len(config.seeds), "seeds": list(config.seeds),
        "epoch_policy": {"name": cfg.epoch_policy, "description": EPOCH_POLICIES[cfg.epoch_policy],
                         "leaky": bool(leak_list), "metric": cfg.epoch_metric, "epochs": cfg.epochs,
                         "chosen_epochs": sorted({o.chosen_epoch for o in outputs})},
        "leaks": leak_list,
        "chance": chance_levels(ctx.y, len(ctx.classes)), "microexp_version": __version__,
        "training": {"optimizer": cfg.optimizer, "lr": cfg.lr, "momentum": cfg.momentum, "batch_size": cfg.batch_size,
                     "epochs": cfg.epochs, "trainer": trainer_label(config), "augment": cfg.augment,
                     "scheduler": None if cfg.scheduler == "none" else {
                         "name": cfg.scheduler, "factor": cfg.scheduler_factor, "patience": cfg.scheduler_patience,
                         "min_lr": cfg.min_lr, "monitor": cfg.scheduler_monitor}},
        "inputs": {name: list(ctx.preprocess.stream_shape(name)) for name in ctx.inputs},
    })
    if cfg.report_epochs is not None:
        metrics["epoch_range"] = epoch_range(ctx, outputs)
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
        repairs = [(r.key, x) for r in ctx.records for x in r.meta.get("repairs", [])]
        write_run(out, config, ctx.preprocess, metrics, predictions, hist, ctx.excluded, repairs)
        log(f"run written to {out}")
    return RunResult(out, metrics, predictions, hist)


def write_run(out: Path, config: RunConfig, pconf: PreprocessConfig, metrics: dict[str, Any],
              predictions: pd.DataFrame, history: pd.DataFrame, excluded: list[Exclusion],
              repairs: list[tuple[str, str]]) -> None:
    check_writable_dir(out)
    runs.write_config(out, resolved_config(config, pconf))
    runs.write_metrics(out, metrics)
    runs.write_tables(out, predictions, history, excluded, repairs)
