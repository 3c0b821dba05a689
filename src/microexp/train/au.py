"""Action units as targets: multi-label AU detection (``microexp evaluate --task au``) and emotion from AUs.

**AU detection.** Each clip's target is the multi-hot vector of its *certain* AU codes (side and intensity
ignored; :mod:`microexp.data.aus`). In every fold the AU set is chosen from that fold's training clips alone: the
AUs with at least ``min_positive`` positive training clips; the run reports every AU chosen in some fold, and a fold
that did not choose an AU predicts it absent. A registered torch model is built with one output per chosen AU (its
published body unchanged, only the width of its last layer) and trained with binary cross-entropy on the sigmoid of
each output (``pos_weight``: negatives/positives of the training clips per AU, optional), for a fixed number of
epochs; a clip is positive for an AU when its probability reaches ``threshold`` (fixed, 0.5). Nothing is chosen on
the test fold. Each fold's model is kept as a checkpoint of the run (``save_checkpoints`` as for recognition runs)
with its AU set as its ``classes`` and ``task: au``: ``microexp predict --run`` / :func:`microexp.load` then give
each window's AU probabilities (:class:`microexp.predict.predictor.AUPredictor`). Metrics are MEB's (Varanka et al., "Data leakage and evaluation issues in micro-expression
analysis", IEEE TAFFC 15(1), 2024, doi:10.1109/TAFFC.2023.3265063): on the predictions of all folds pooled, per AU
the F1 of the positive class, precision, recall and support, and the macro F1 (mean of the positive- and
negative-class F1, MEB's headline), then their means over the AUs. The control trains on AU sets shuffled within
subjects (the rows of a subject's training clips permuted) and must score at chance; chance is given per AU
(a guess at the AU's prevalence: F1 = prevalence, macro F1 = 0.5).

Protocols: ``loso`` inside one dataset and ``lodo`` (MEB's cross-dataset protocol: leave one dataset out) over
several datasets loaded together (``dataset: casme2,samm`` with ``root: A,B``); clips without AU codes (SMIC) or
with no certain code are excluded with the reason.

**Emotion from AUs** (model ``sklearn-aus``, :mod:`microexp.baselines.au_emotion`): a scikit-learn classifier on the
multi-hot of each clip's annotated AUs predicts its class under the run's class protocol and protocol, scored with
the same UF1/UAR as every recognition run, with the shuffled-label control.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import f1_score, precision_recall_fscore_support
from torch import nn

from microexp import __version__, runs
from microexp.config import RunConfig
from microexp.data.aus import au_numbers
from microexp.data.records import ClipRecord, ClipSet, Exclusion
from microexp.data.registry import load_dataset
from microexp.errors import ConfigError, DataError
from microexp.fileio import check_writable_dir
from microexp.models import registry as model_registry
from microexp.preprocess.normalise import GlobalNormaliser
from microexp.train.folds import clip_length
from microexp.train.loop import batch_bounds, resolve_device, set_seed
from microexp.train.metrics import compute_metrics
from microexp.train.protocols import Fold, make_folds

AU_PROTOCOLS = ("loso", "lodo", "kfold")
N_AU_COLUMNS = 100  # AU numbers 0..99: the fixed multi-hot width of the emotion-from-AU features


@dataclass(frozen=True)
class AUTask:
    """The AU-detection settings a run records."""

    min_positive: int = 5
    pos_weight: bool = True
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.min_positive < 1:
            raise ConfigError(f"au min_positive={self.min_positive} must be at least 1")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"au threshold={self.threshold} must be in (0, 1)")


@dataclass
class AUResult:
    run_dir: Path | None
    metrics: dict[str, Any]
    predictions: pd.DataFrame
    history: pd.DataFrame = field(default_factory=pd.DataFrame)


# ------------------------------------------------------------------------------------------------ data

def load_clips(config: RunConfig, classes: str | None = "all") -> ClipSet:
    """The run's clips: one dataset, or several (``dataset: a,b`` with ``root: A,B``) pooled for ``lodo``."""
    names = [d.strip() for d in str(config.dataset).split(",") if d.strip()]
    roots = [r.strip() for r in str(config.root or "").split(",") if r.strip()]
    if not roots:
        raise ConfigError(f"dataset {config.dataset!r} needs root, the dataset's folder")
    if len(roots) != len(names):
        raise ConfigError(f"{len(names)} dataset(s) {names} but {len(roots)} root(s): give one root per dataset, "
                          "comma-separated in the same order")
    if len(names) > 1 and config.annotation:
        raise ConfigError("annotation applies to one dataset; with several datasets each is read from its root")
    chosen = config.classes if config.classes is not None else classes
    sets = [load_dataset(n, Path(r), config.annotation, chosen if len(names) == 1 else classes)
            for n, r in zip(names, roots, strict=True)]
    if len(sets) == 1:
        return sets[0]
    classes_all = tuple(sorted({c for s in sets for c in s.classes}))
    return ClipSet(",".join(names), [r for s in sets for r in s.records], classes_all,
                   [e for s in sets for e in s.excluded])


def with_aus(clips: ClipSet) -> ClipSet:
    """The clips that have at least one certain AU code; the others excluded with the reason."""
    kept, excluded = [], list(clips.excluded)
    for r in clips.records:
        if au_numbers(r.au_codes):
            kept.append(r)
        elif r.au_codes:
            excluded.append(Exclusion(r.key, f"no certain AU code (AUs {r.aus!r}: alternatives or ref() only)"))
        else:
            excluded.append(Exclusion(r.key, "no AU codes" + (f" (AUs {r.aus!r} not understood)" if r.aus else "")))
    if not kept:
        raise DataError(f"{clips.name}: no clip has AU codes ({len(excluded)} excluded; SMIC has none)")
    return ClipSet(clips.name, kept, clips.classes, excluded)


def au_matrix(records: list[ClipRecord], numbers: list[int]) -> np.ndarray:
    """(N, K) 0/1 float32: clip i has the certain AU ``numbers[k]``."""
    out = np.zeros((len(records), len(numbers)), np.float32)
    col = {n: k for k, n in enumerate(numbers)}
    for i, r in enumerate(records):
        for n in au_numbers(r.au_codes):
            if n in col:
                out[i, col[n]] = 1.0
    return out


def choose_aus(records: list[ClipRecord], rows: np.ndarray, min_positive: int) -> list[int]:
    """AU numbers with at least ``min_positive`` positive clips among ``rows`` (the training fold)."""
    counts: dict[int, int] = {}
    for i in rows:
        for n in au_numbers(records[i].au_codes):
            counts[n] = counts.get(n, 0) + 1
    return sorted(n for n, c in counts.items() if c >= min_positive)


def shuffle_within_groups(rows: np.ndarray, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``rows`` with the rows of each group permuted among themselves (the control's label source)."""
    out = np.array(rows, copy=True)
    for g in sorted(set(groups[rows].tolist())):
        pos = np.flatnonzero(groups[rows] == g)
        out[pos] = rows[pos][rng.permutation(len(pos))]
    return out


def folds_of(config: RunConfig, records: list[ClipRecord], groups: np.ndarray, seed: int) -> list[Fold]:
    if config.protocol not in AU_PROTOCOLS:
        raise ConfigError(f"protocol {config.protocol!r} is not one of {list(AU_PROTOCOLS)} for this task")
    y = np.zeros(len(records), dtype=np.int64)
    datasets = np.array([r.dataset for r in records], dtype=object)
    return make_folds(config.protocol, y, groups, seed=seed, n_splits=config.folds, datasets=datasets,
                      test_dataset=config.test_dataset, train_datasets=config.train_datasets, stratify=False)


# ------------------------------------------------------------------------------------------------ metrics

def au_metrics(y_true: np.ndarray, y_pred: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Per AU F1 (positive class), macro F1 (positive and negative classes), precision, recall, support and
    prevalence, on pooled predictions; then the means over the AUs."""
    per: dict[str, dict[str, float]] = {}
    for k, name in enumerate(names):
        t, p = y_true[:, k].astype(int), y_pred[:, k].astype(int)
        prec, rec, f1, sup = precision_recall_fscore_support(t, p, labels=[1], zero_division=0)
        per[name] = {"f1": float(f1[0]), "macro_f1": float(f1_score(t, p, labels=[0, 1], average="macro",
                                                                     zero_division=0)),
                     "precision": float(prec[0]), "recall": float(rec[0]), "support": int(sup[0]),
                     "prevalence": float(t.mean()) if len(t) else 0.0}
    mean = {k: float(np.mean([m[k] for m in per.values()])) if per else 0.0
            for k in ("f1", "macro_f1", "precision", "recall")}
    return {"per_au": per, **{f"mean_{k}": v for k, v in mean.items()}, "n": int(len(y_true))}


def au_chance(y_true: np.ndarray, names: list[str]) -> dict[str, Any]:
    """A guess that marks each clip positive with the AU's prevalence: F1 = prevalence, macro F1 = 0.5."""
    prevalence = {n: float(y_true[:, k].mean()) for k, n in enumerate(names)}
    return {"per_au_f1": prevalence, "mean_f1": float(np.mean(list(prevalence.values()))) if names else 0.0,
            "mean_macro_f1": 0.5}


# ------------------------------------------------------------------------------------------------ training

def _batch(inputs: dict[str, torch.Tensor], rows: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.index_select(0, rows).to(device) for k, v in inputs.items()}


def fit_multilabel(model: nn.Module, inputs: dict[str, torch.Tensor], targets: torch.Tensor, fit_idx: np.ndarray,
                   config: RunConfig, seed: int, pos_weight: torch.Tensor | None) -> list[dict[str, Any]]:
    """Train ``model`` (one logit per AU) on rows ``fit_idx`` with BCE on sigmoids for ``train.epochs`` epochs."""
    cfg = config.train
    device = next(model.parameters()).device
    set_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    if cfg.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=None if pos_weight is None else pos_weight.to(device))
    rows_all = torch.as_tensor(fit_idx, dtype=torch.long)
    history = []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = rows_all[torch.randperm(len(rows_all), generator=gen)]
        total, seen = 0.0, 0
        for start, stop in batch_bounds(len(order), cfg.batch_size, cfg.drop_last):
            rows = order[start:stop]
            opt.zero_grad(set_to_none=True)
            logits = model(**_batch(inputs, rows, device))
            loss = loss_fn(logits.float(), targets.index_select(0, rows).to(device))
            loss.backward()
            opt.step()
            total += float(loss.item()) * len(rows)
            seen += len(rows)
        history.append({"epoch": epoch, "train_loss": total / max(seen, 1)})
    return history


@torch.no_grad()
def predict_sigmoid(model: nn.Module, inputs: dict[str, torch.Tensor], idx: np.ndarray,
                    batch_size: int = 64) -> np.ndarray:
    """(len(idx), K) probabilities: the sigmoid of each output."""
    model.eval()
    device = next(model.parameters()).device
    rows = torch.as_tensor(idx, dtype=torch.long)
    out = [torch.sigmoid(model(**_batch(inputs, rows[s:s + batch_size], device)).float()).cpu()
           for s in range(0, len(rows), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


# ------------------------------------------------------------------------------------------------ AU detection

def evaluate_au(config: RunConfig, task: AUTask | None = None, out: Path | None = None, clips: ClipSet | None = None,
                progress: bool = False, log: Callable[[str], None] = print) -> AUResult:
    """Multi-label AU detection of ``config.model`` under ``config.protocol`` (module docstring)."""
    from microexp.train.evaluate import check_model, prepare

    task = task or AUTask()
    started = time.time()
    spec = model_registry.get(config.model)
    if spec.kind != "torch":
        raise ConfigError(f"--task au trains a multi-label head: model {config.model} is kind {spec.kind}, "
                          "choose a torch model (see `microexp models`)")
    if config.train.epoch_policy != "fixed":
        raise ConfigError(f"--task au trains for a fixed number of epochs: train.epoch_policy="
                          f"{config.train.epoch_policy!r} is not supported (use fixed)")
    if config.reproduce:
        raise ConfigError(f"--task au has no reproduce switches (got {list(config.reproduce)})")
    check_model(config)
    if out is not None:
        check_writable_dir(Path(out))
        if (Path(out) / runs.METRICS).is_file():
            raise ConfigError(f"{out} already holds a run; choose another output folder")
    clips = with_aus(clips if clips is not None else load_clips(config))
    ctx = prepare(config, clips, progress=progress)
    records, groups = ctx.records, ctx.groups
    device = resolve_device(config.train.device)
    per_seed, control_seed, rows_out, history = [], [], [], []
    fold_aus: dict[str, list[str]] = {}
    for seed in config.seeds:
        folds = folds_of(config, records, groups, seed)
        for control in ([False, True] if config.control == "shuffle" else [False]):
            probs_all = {}
            for fold in folds:
                numbers = choose_aus(records, fold.train, task.min_positive)
                fold_aus[fold.name] = [f"AU{n}" for n in numbers]
                if not numbers:
                    raise DataError(f"fold {fold.name}: no AU has {task.min_positive} positive training clips; "
                                    "lower au.min_positive")
                label_rows = fold.train
                if control:
                    label_rows = shuffle_within_groups(fold.train, groups, np.random.default_rng(seed))
                y = np.zeros((len(records), len(numbers)), np.float32)
                y[fold.train] = au_matrix([records[i] for i in label_rows], numbers)
                targets = torch.from_numpy(y)
                weight = None
                if task.pos_weight:
                    pos = y[fold.train].sum(0)
                    weight = torch.from_numpy(((len(fold.train) - pos) / np.maximum(pos, 1)).astype(np.float32))
                inputs, normaliser = ctx.inputs, None
                if ctx.preprocess.normalise == "global":  # fitted on the training rows, saved for predict
                    norm = GlobalNormaliser().fit(inputs, fold.train)
                    inputs, normaliser = norm.transform(inputs), norm.to_dict()
                set_seed(seed)
                model = spec.build(len(numbers), ctx.preprocess, **config.model_params).to(device)
                hist = fit_multilabel(model, inputs, targets, fold.train, config, seed, weight)
                history += [{"seed": seed, "fold": fold.name, "control": control, **h} for h in hist]
                probs = predict_sigmoid(model, inputs, fold.test, config.train.batch_size * 4)
                if out is not None and not control and runs.keeps_checkpoint(config, seed):
                    runs.save_checkpoint(runs.checkpoint_path(out, seed, fold.name), {
                        "task": "au", "model": config.model, "model_params": config.model_params,
                        "state_dict": model.state_dict(), "preprocess": ctx.preprocess.to_dict(),
                        "classes": fold_aus[fold.name], "threshold": task.threshold, "seed": seed,
                        "fold": fold.name, "epoch": config.train.epochs, "microexp_version": __version__,
                        "normaliser": normaliser, "clip": clip_length([records[i] for i in fold.train])},
                        dtype=config.checkpoint_dtype)
                for j, i in enumerate(fold.test):
                    probs_all[int(i)] = (fold.name, dict(zip(numbers, probs[j].tolist(), strict=True)))
            reported = sorted({n for _, p in probs_all.values() for n in p})
            names = [f"AU{n}" for n in reported]
            order = sorted(probs_all)
            truth = au_matrix([records[i] for i in order], reported)
            prob = np.array([[probs_all[i][1].get(n, 0.0) for n in reported] for i in order], np.float32)
            pred = (prob >= task.threshold).astype(np.float32)
            m = au_metrics(truth, pred, names)
            per_ds = {}
            ds = np.array([records[i].dataset for i in order], dtype=object)
            if len(set(ds.tolist())) > 1:
                per_ds = {d: {k: v for k, v in au_metrics(truth[ds == d], pred[ds == d], names).items()
                              if k != "per_au"} for d in sorted(set(ds.tolist()))}
            entry = {"seed": seed, **m, **({"per_dataset": per_ds} if per_ds else {}),
                     "chance": au_chance(truth, names)}
            (control_seed if control else per_seed).append(entry)
            if not control:
                for j, i in enumerate(order):
                    r = records[i]
                    row: dict[str, Any] = {"seed": seed, "fold": probs_all[i][0], "dataset": r.dataset,
                                           "subject": r.subject, "clip": r.clip_id, "aus": r.aus}
                    row.update({f"true_{n}": int(truth[j, k]) for k, n in enumerate(names)})
                    row.update({f"prob_{n}": round(float(prob[j, k]), 6) for k, n in enumerate(names)})
                    rows_out.append(row)
    metrics = _aggregate(per_seed)
    if control_seed:
        metrics["control"] = {"kind": "shuffle (training AU sets permuted within subjects)", **_aggregate(control_seed)}
    cfg = config.train
    metrics.update({
        "task": "au", "dataset": config.dataset, "protocol": config.protocol, "model": config.model,
        "au": {"min_positive": task.min_positive, "pos_weight": task.pos_weight, "threshold": task.threshold,
               "chosen_per_fold": fold_aus, "reported": list(metrics["per_au"]),
               "positives": "certain AU codes (no 'or' alternatives, no ref()); side and intensity ignored"},
        "n_clips": len(records), "n_subjects": len(set(groups.tolist())), "n_excluded": len(ctx.excluded),
        "n_folds": len(folds), "seeds": list(config.seeds), "leaks": [],
        "epoch_policy": {"name": "fixed", "epochs": cfg.epochs, "leaky": False,
                         "description": "the last epoch of a fixed number; nothing chosen on held-out data"},
        "training": {"optimizer": cfg.optimizer, "lr": cfg.lr, "batch_size": cfg.batch_size, "epochs": cfg.epochs,
                     "loss": "binary cross-entropy on sigmoids" + (" with pos_weight" if task.pos_weight else "")},
        "au_unparsed": [f"{r.source}: {u!r}" for r in records for u in r.au_unparsed],
        "microexp_version": __version__, "seconds": round(time.time() - started, 2),
    })
    predictions, hist = pd.DataFrame(rows_out), pd.DataFrame(history)
    if out is not None:
        from microexp.train.evaluate import resolved_config

        saved = resolved_config(config, ctx.preprocess)
        saved["task"] = "au"
        saved["au"] = {"min_positive": task.min_positive, "pos_weight": task.pos_weight, "threshold": task.threshold}
        runs.write_config(out, saved)
        runs.write_metrics(out, metrics)
        runs.write_tables(out, predictions, hist, ctx.excluded, [])
        log(f"run written to {out}")
    return AUResult(out, metrics, predictions, hist)


def _aggregate(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """The first seed's pooled metrics, means over seeds for the summary numbers, and every seed kept."""
    agg = {k: v for k, v in per_seed[0].items() if k != "seed"}
    if len(per_seed) > 1:
        for key in ("mean_f1", "mean_macro_f1", "mean_precision", "mean_recall"):
            values = [m[key] for m in per_seed]
            agg[key], agg[f"{key}_std"] = float(np.mean(values)), float(np.std(values))
    agg["per_seed"] = per_seed
    return agg


def au_table(metrics: dict[str, Any]) -> str:
    """The run as text: per AU F1 / macro F1 / precision / recall / support against the control and chance."""
    control = metrics.get("control", {})
    chance = metrics.get("chance", {}).get("per_au_f1", {})
    lines = [f"AU detection: {metrics['model']} on {metrics['dataset']}, protocol {metrics['protocol']} "
             f"({metrics['n_folds']} folds, {metrics['n_clips']} clips); AUs with >= "
             f"{metrics['au']['min_positive']} positive training clips",
             f"{'AU':6s} {'F1':>6s} {'macroF1':>8s} {'prec':>6s} {'recall':>6s} {'support':>8s} {'control F1':>11s} "
             f"{'chance F1':>10s}"]
    for name, m in metrics["per_au"].items():
        c = control.get("per_au", {}).get(name, {}).get("f1")
        lines.append(f"{name:6s} {m['f1']:6.3f} {m['macro_f1']:8.3f} {m['precision']:6.3f} {m['recall']:6.3f} "
                     f"{m['support']:8d} {'' if c is None else f'{c:11.3f}':>11s} {chance.get(name, 0.0):10.3f}")
    line = f"mean   {metrics['mean_f1']:6.3f} {metrics['mean_macro_f1']:8.3f}"
    if control:
        line += f"   control mean F1 {control['mean_f1']:.3f}, macro F1 {control['mean_macro_f1']:.3f}"
    lines.append(line + f"; chance mean F1 {metrics['chance']['mean_f1']:.3f}, macro F1 0.500")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ emotion from AUs

def au_features(records: list[ClipRecord]) -> np.ndarray:
    """(N, 100) multi-hot of each clip's certain AU numbers (a fixed width: no column depends on the data)."""
    out = np.zeros((len(records), N_AU_COLUMNS), np.float32)
    for i, r in enumerate(records):
        for n in au_numbers(r.au_codes):
            if n < N_AU_COLUMNS:
                out[i, n] = 1.0
    return out


def evaluate_emotion_from_aus(config: RunConfig, out: Path | None = None, clips: ClipSet | None = None,
                              log: Callable[[str], None] = print) -> AUResult:
    """A clip's class under the run's class protocol predicted from its annotated AUs alone (model
    ``sklearn-aus``), under the run's protocol, scored as every recognition run (UF1, UAR, accuracy, pooled)."""
    started = time.time()
    spec = model_registry.get(config.model)
    if config.train.epoch_policy != "fixed" or config.reproduce:
        raise ConfigError(f"model {config.model} is fitted once per fold: epoch policies and reproduce switches "
                          "do not apply")
    if out is not None:
        check_writable_dir(Path(out))
        if (Path(out) / runs.METRICS).is_file():
            raise ConfigError(f"{out} already holds a run; choose another output folder")
    clips = with_aus(clips if clips is not None else load_clips(config, classes=None))
    records = clips.records
    x, y = au_features(records), clips.targets
    groups = np.array([f"{r.dataset}/{r.subject}" for r in records], dtype=object)
    datasets = np.array([r.dataset for r in records], dtype=object)
    per_seed, control_seed, rows_out = [], [], []
    for seed in config.seeds:
        folds = make_folds(config.protocol, y, groups, seed=seed, n_splits=config.folds, test_size=config.test_size,
                           subject_aware=config.subject_aware, datasets=datasets, test_dataset=config.test_dataset,
                           train_datasets=config.train_datasets, repeats=config.repeats, stratify=config.stratify,
                           shuffle=config.shuffle, quota=config.quota, classes=list(clips.classes))
        for control in ([False, True] if config.control == "shuffle" else [False]):
            true, pred, subj, dss = [], [], [], []
            for fold in folds:
                labels = y[fold.train]
                if control:
                    labels = y[shuffle_within_groups(fold.train, groups, np.random.default_rng(seed))]
                estimator = spec.build(len(clips.classes), None, **{**config.model_params, "seed": seed})
                estimator.fit({"aus": x[fold.train]}, labels)
                guess = estimator.predict({"aus": x[fold.test]})
                true += y[fold.test].tolist()
                pred += np.asarray(guess, dtype=int).tolist()
                subj += groups[fold.test].tolist()
                dss += datasets[fold.test].tolist()
                if not control:
                    for i, g in zip(fold.test, guess, strict=True):
                        r = records[i]
                        rows_out.append({"seed": seed, "fold": fold.name, "dataset": r.dataset, "subject": r.subject,
                                         "clip": r.clip_id, "aus": r.aus, "true": r.label,
                                         "predicted": clips.classes[int(g)]})
            m = compute_metrics(true, pred, clips.classes, subjects=subj, datasets=dss,
                                per_dataset=True if config.protocol in ("megc2019", "lodo") else None)
            (control_seed if control else per_seed).append({"seed": seed, **m})
    metrics: dict[str, Any] = {k: v for k, v in per_seed[0].items() if k != "seed"}
    metrics["per_seed"] = per_seed
    if control_seed:
        metrics["control"] = {"kind": "shuffle (training labels permuted within subjects)",
                              **{k: v for k, v in control_seed[0].items() if k != "seed"}, "per_seed": control_seed}
    from microexp.train.evaluate import chance_levels

    metrics.update({
        "task": "recognise", "inputs": {"aus": [N_AU_COLUMNS]}, "dataset": config.dataset,
        "protocol": config.protocol, "model": config.model, "classes": list(clips.classes),
        "n_clips": len(records), "n_subjects": len(set(groups.tolist())), "n_excluded": len(clips.excluded),
        "n_folds": len(folds), "seeds": list(config.seeds), "leaks": [],
        "epoch_policy": {"name": "fixed", "leaky": False, "description": "one fit per fold, nothing chosen"},
        "chance": chance_levels(y, len(clips.classes)), "microexp_version": __version__,
        "seconds": round(time.time() - started, 2),
    })
    predictions = pd.DataFrame(rows_out)
    if out is not None:
        saved = config.to_dict()
        runs.write_config(out, saved)
        runs.write_metrics(out, metrics)
        runs.write_tables(out, predictions, pd.DataFrame(), clips.excluded, [])
        log(f"run written to {out}")
    return AUResult(out, metrics, predictions)
