"""Evaluate a model on a dataset under a protocol: the whole leak-free path, writing a run directory.

Run directory: ``config.yaml``, ``metrics.json``, ``predictions.csv`` (one row per test clip and seed),
``history.csv`` (learning curves per fold), ``excluded.csv`` (clip, reason), ``checkpoints/`` (one per fold).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from tqdm.auto import tqdm

from microexp import __version__
from microexp.config import EPOCH_POLICIES, RunConfig
from microexp.data.records import ClipSet
from microexp.data.registry import load_dataset
from microexp.errors import ConfigError, DataError
from microexp.models import registry as model_registry
from microexp.preprocess.config import PreprocessConfig
from microexp.preprocess.pipeline import preprocess_set
from microexp.train.loop import fit, predict_proba, resolve_device, set_seed
from microexp.train.metrics import compute_metrics, summarise_seeds
from microexp.train.protocols import make_folds, shuffle_within_groups, validation_split


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
    """Expected scores of uniform random guessing on these labels."""
    p = np.bincount(y, minlength=n_classes) / len(y)
    f1 = [2 * pc / n_classes / (pc + 1 / n_classes) for pc in p if pc > 0] + [0.0] * int((p == 0).sum())
    return {"accuracy": 1 / n_classes, "uar": 1 / n_classes, "uf1": float(np.mean(f1))}


def _fit_global_normaliser(inputs: dict[str, torch.Tensor], rows: np.ndarray) -> dict[str, torch.Tensor]:
    """The seed code's normalisation (global mean subtract, then global max divide) fitted on training rows only."""
    out = {}
    for name, x in inputs.items():
        train = x[torch.as_tensor(rows)]
        mean = train.mean()
        scale = (train - mean).max().clamp_min(1e-6)
        out[name] = (x - mean) / scale
    return out


def evaluate(config: RunConfig, out: Path | None = None, clips: ClipSet | None = None, progress: bool = True,
             log: Callable[[str], None] = print) -> RunResult:
    """Run ``config`` end to end. ``clips`` overrides loading the dataset (already mapped to classes)."""
    spec = model_registry.get(config.model)
    pconf = resolve_preprocess(config)
    if clips is None:
        if not config.root:
            raise ConfigError(f"dataset {config.dataset!r} needs --root")
        clips = load_dataset(config.dataset, Path(config.root), config.annotation, config.classes)
    if len(clips) == 0:
        raise DataError(f"{clips.name}: no usable clips ({len(clips.excluded)} excluded)")
    started = time.time()
    prepared = preprocess_set(clips, pconf, progress=progress)
    kept = clips.subset(prepared.index)
    excluded = list(clips.excluded) + list(prepared.excluded)
    if len(kept) == 0:
        raise DataError(f"{clips.name}: every clip failed preprocessing; first reason: {excluded[0].reason}")
    classes = list(kept.classes)
    n_classes = len(classes)
    y = kept.targets
    groups = np.array([f"{r.dataset}/{r.subject}" for r in kept.records], dtype=object)
    inputs = {k: torch.from_numpy(v) for k, v in prepared.streams.items()}
    device = resolve_device(config.train.device)
    cfg = config.train

    def run_protocol(control: bool) -> tuple[list[dict], list[dict], list[dict], int]:
        rows: list[dict] = []
        hist: list[dict] = []
        per_seed: list[dict] = []
        n_folds = 0
        for seed in config.seeds:
            folds = make_folds(config.protocol, y, groups, seed=seed, n_splits=config.folds,
                               test_size=config.test_size, subject_aware=config.subject_aware)
            n_folds = len(folds)
            bar = tqdm(total=len(folds) * cfg.epochs, disable=not progress, unit="epoch",
                       desc=f"{'control ' if control else ''}seed {seed}")
            seed_rows: list[dict] = []
            for fold in folds:
                train_y = y
                if control:
                    rng = np.random.default_rng(seed + 7919)
                    train_y = y.copy()
                    train_y[fold.train] = shuffle_within_groups(y[fold.train], groups[fold.train], rng)
                if cfg.epoch_policy == "validation":
                    fit_idx, val_idx = validation_split(fold.train, train_y, groups, seed, cfg.val_fraction,
                                                        by_subject=config.protocol != "holdout" or config.subject_aware)
                else:
                    fit_idx, val_idx = fold.train, None
                fold_inputs = inputs
                if pconf.normalise == "global":
                    fold_inputs = _fit_global_normaliser(inputs, fit_idx)
                set_seed(seed)
                model = spec.build(n_classes, pconf, **config.model_params).to(device)
                bar.set_postfix_str(f"fold {fold.name}")
                result = fit(model, fold_inputs, torch.from_numpy(train_y), fit_idx, cfg, seed, n_classes,
                             val_idx=val_idx, test_idx=fold.test if cfg.epoch_policy == "test-peek" else None,
                             on_epoch=lambda _r, b=bar: b.update(1))
                bar.update(cfg.epochs - len(result.history))
                probs = predict_proba(model, fold_inputs, fold.test, cfg.batch_size * 4, device)
                for i, row_probs in zip(fold.test, probs, strict=True):
                    rec = kept.records[i]
                    seed_rows.append({"seed": seed, "fold": fold.name, "dataset": rec.dataset, "subject": rec.subject,
                                      "clip_id": rec.clip_id, "true": classes[y[i]],
                                      "predicted": classes[int(row_probs.argmax())],
                                      **{f"p_{c}": float(p) for c, p in zip(classes, row_probs, strict=True)},
                                      "epoch": result.chosen_epoch})
                for h in result.history:
                    hist.append({"control": control, "seed": seed, "fold": fold.name, **h})
                if out is not None and config.save_checkpoints and not control:
                    ckpt_dir = out / "checkpoints"
                    ckpt_dir.mkdir(parents=True, exist_ok=True)
                    torch.save({"model": config.model, "model_params": config.model_params,
                                "state_dict": model.state_dict(), "preprocess": pconf.to_dict(),
                                "classes": classes, "seed": seed, "fold": fold.name,
                                "epoch": result.chosen_epoch, "microexp_version": __version__},
                               ckpt_dir / f"seed{seed}-{fold.name}.pt")
            bar.close()
            idx = {c: i for i, c in enumerate(classes)}
            m = compute_metrics([idx[r["true"]] for r in seed_rows], [idx[r["predicted"]] for r in seed_rows],
                                classes, subjects=[f"{r['dataset']}/{r['subject']}" for r in seed_rows],
                                datasets=[r["dataset"] for r in seed_rows])
            per_seed.append({"seed": seed, **m})
            rows += seed_rows
        return rows, hist, per_seed, n_folds

    rows, hist, per_seed, n_folds = run_protocol(control=False)
    metrics = _aggregate(per_seed)
    metrics.update({
        "dataset": config.dataset, "class_protocol": clips.name, "protocol": config.protocol, "model": config.model,
        "classes": classes, "n_clips": len(kept), "n_subjects": len(set(groups.tolist())),
        "n_excluded": len(excluded), "n_folds": n_folds, "seeds": list(config.seeds),
        "epoch_policy": {"name": cfg.epoch_policy, "description": EPOCH_POLICIES[cfg.epoch_policy],
                         "leaky": cfg.epoch_policy == "test-peek",
                         "epochs": cfg.epochs, "chosen_epochs": sorted({r["epoch"] for r in rows})},
        "chance": chance_levels(y, n_classes), "per_seed": per_seed, "microexp_version": __version__,
    })
    if config.control == "shuffle":
        c_rows, c_hist, c_seed, _ = run_protocol(control=True)
        metrics["control"] = {"kind": "shuffle (training labels permuted within subjects)", **_aggregate(c_seed),
                              "seeds": list(config.seeds)}
        hist += c_hist
    metrics["seconds"] = round(time.time() - started, 2)
    predictions = pd.DataFrame(rows)
    history = pd.DataFrame(hist)
    if out is not None:
        write_run(out, config, pconf, metrics, predictions, history, excluded)
        log(f"run written to {out}")
    return RunResult(out, metrics, predictions, history)


def _aggregate(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Headline numbers: the single seed's, or the mean over seeds with ``*_std`` beside them."""
    first = per_seed[0]
    agg: dict[str, Any] = {k: v for k, v in first.items() if k != "seed"}
    if len(per_seed) > 1:
        for key, stats in summarise_seeds(per_seed).items():
            agg[key], agg[f"{key}_std"] = stats["mean"], stats["std"]
        agg["confusion"] = np.sum([m["confusion"] for m in per_seed], axis=0).tolist()
    return agg


def write_run(out: Path, config: RunConfig, pconf: PreprocessConfig, metrics: dict[str, Any],
              predictions: pd.DataFrame, history: pd.DataFrame, excluded: list) -> None:
    out.mkdir(parents=True, exist_ok=True)
    resolved = config.to_dict()
    resolved["preprocess"] = pconf.to_dict()
    (out / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    predictions.to_csv(out / "predictions.csv", index=False)
    history.to_csv(out / "history.csv", index=False)
    pd.DataFrame([{"clip": e.clip, "reason": e.reason} for e in excluded], columns=["clip", "reason"]).to_csv(
        out / "excluded.csv", index=False)
