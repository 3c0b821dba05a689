"""Evaluation protocols (splits) and the epoch policy's validation split, all from scikit-learn splitters.

Leak-freedom by construction: a fold's test indices never enter training, and validation subjects for the
``validation`` epoch policy are drawn from the training fold only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import (
    GroupShuffleSplit,
    LeaveOneGroupOut,
    RepeatedStratifiedKFold,
    StratifiedGroupKFold,
    StratifiedShuffleSplit,
    train_test_split,
)

from microexp.errors import ConfigError


@dataclass(frozen=True)
class Fold:
    name: str
    train: np.ndarray
    test: np.ndarray


def make_folds(protocol: str, y: np.ndarray, groups: np.ndarray, seed: int = 0, n_splits: int = 5,
               test_size: float = 0.2, subject_aware: bool = True, datasets: np.ndarray | None = None,
               test_dataset: str | None = None, train_datasets: list[str] | None = None, repeats: int = 1,
               stratify: bool = True, shuffle: bool = True, quota: dict[str, int] | None = None,
               classes: list[str] | None = None) -> list[Fold]:
    """Folds of a protocol. ``groups`` are subject identifiers (dataset-qualified where datasets are mixed).

    ``datasets`` (the source dataset of each clip) is needed by ``megc2019`` and ``lodo``; ``test_dataset`` and
    ``train_datasets`` narrow ``lodo`` to one target and a chosen set of sources (e.g. train samm, test casme2).
    ``kfold`` is repeated ``repeats`` times (folds ``r{k}-fold{i}``); with ``subject_aware=False`` it splits clips
    (StratifiedKFold). A clip-level ``holdout`` is stratified and shuffled unless ``stratify``/``shuffle`` say
    otherwise (``shuffle=False``: the tail split). ``quota`` maps each of ``classes`` to its training clips.
    """
    y, groups = np.asarray(y), np.asarray(groups, dtype=object)
    idx = np.arange(len(y))
    n_groups = len(set(groups.tolist()))
    if protocol == "megc2019":
        names = sorted(set(np.asarray(datasets, dtype=object).tolist())) if datasets is not None else []
        if len(names) < 2:
            raise ConfigError(f"protocol megc2019 needs a composite clip set (several source datasets), found "
                              f"{names or 'no dataset labels'}; use --protocol loso for one dataset")
        protocol = "loso"  # LOSO over dataset-qualified subjects; per-dataset scores come from the pooled predictions
    if protocol == "lodo":
        return _lodo(y, datasets, test_dataset, train_datasets)
    if protocol == "loso":
        if n_groups < 2:
            raise ConfigError(f"LOSO needs at least 2 subjects, found {n_groups}")
        return [Fold(str(groups[te][0]), tr, te) for tr, te in LeaveOneGroupOut().split(idx, y, groups)]
    if protocol == "kfold":
        return _kfold(y, groups, seed, n_splits, repeats, subject_aware)
    if protocol == "quota":
        return [quota_split(y, classes, quota or {}, seed)]
    if protocol == "holdout":
        _holdout_needs_two_per_class(y, classes)
        if subject_aware:
            # the stratified-group fold closest to test_size, so no subject is on both sides
            k = max(2, round(1 / test_size))
            if n_groups < k:
                raise ConfigError(f"subject-aware holdout ({test_size:.0%}) needs at least {k} subjects, "
                                  f"found {n_groups}")
            tr, te = next(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(idx, y, groups))
        elif not shuffle:
            # the tail split of Reddy's fusion code: the last test_size of the clips, in their order
            tr, te = train_test_split(idx, test_size=test_size, shuffle=False)
        else:
            # one 80/20 over clips (subjects may appear on both sides), stratified unless the seed's code was not
            tr, te = train_test_split(idx, test_size=test_size, stratify=y if stratify else None, random_state=seed)
            tr, te = np.sort(tr), np.sort(te)
        return [Fold("holdout", tr, te)]
    raise ConfigError(f"unknown protocol {protocol!r}")


def _holdout_needs_two_per_class(y: np.ndarray, classes: list[str] | None) -> None:
    """One line naming the class, instead of scikit-learn's traceback: a class with fewer than 2 clips cannot be on
    both sides of a train/test split (stratified or not), so the experiment would silently change."""
    counts = np.bincount(y.astype(int), minlength=len(classes or [])) if len(y) else np.zeros(0, int)
    for i, n in enumerate(counts.tolist()):
        if n < 2:
            name = classes[i] if classes and i < len(classes) else f"index {i}"
            raise ConfigError(f"holdout split: class {name!r} has {n} clip{'s' if n != 1 else ''} after the "
                              f"filters; a train/test split needs at least 2 of every class")


def _kfold(y: np.ndarray, groups: np.ndarray, seed: int, n_splits: int, repeats: int,
           subject_aware: bool) -> list[Fold]:
    idx = np.arange(len(y))
    if not subject_aware:
        counts = np.bincount(y) if len(y) else np.zeros(1, int)
        smallest = int(counts[counts > 0].min()) if counts.any() else 0
        if len(y) < n_splits or smallest < n_splits:
            raise ConfigError(f"{n_splits}-fold clip-level CV needs at least {n_splits} clips of every class, "
                              f"the smallest class has {smallest}")
        splitter = RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=repeats, random_state=seed)
        splits = list(splitter.split(idx, y))
    else:
        n_groups = len(set(np.asarray(groups, dtype=object).tolist()))
        if n_groups < n_splits:
            raise ConfigError(f"{n_splits}-fold grouped CV needs at least {n_splits} subjects, found {n_groups}")
        if repeats == 1:  # the same folds as before repeats existed
            splits = list(StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(idx, y, groups))
        else:  # as scikit-learn's _RepeatedSplits: one RandomState drives every repetition's shuffle
            rng = np.random.RandomState(seed)
            splits = [s for _ in range(repeats)
                      for s in StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=rng).split(idx, y, groups)]
    if repeats == 1:
        return [Fold(f"fold{i + 1}", tr, te) for i, (tr, te) in enumerate(splits)]
    return [Fold(f"r{i // n_splits + 1}-fold{i % n_splits + 1}", tr, te) for i, (tr, te) in enumerate(splits)]


def quota_split(y: np.ndarray, classes: list[str] | None, quota: dict[str, int], seed: int) -> Fold:
    """Joshi's 2D-CNN split: after a seeded shuffle of the clips, the first ``quota[c]`` clips of each class c
    train and the rest test. Every class needs a quota and at least that many clips."""
    y = np.asarray(y)
    names = list(classes) if classes is not None else [str(c) for c in range(int(y.max(initial=-1)) + 1)]
    unknown = sorted(set(quota) - set(names))
    missing = [c for c in names if c not in quota]
    if unknown or missing:
        raise ConfigError(f"quota={quota}: " + "; ".join(
            ([f"class(es) {unknown} are not among the classes {names}"] if unknown else [])
            + ([f"class(es) {missing} have no quota"] if missing else [])))
    counts = np.bincount(y, minlength=len(names))
    short = {c: (int(counts[i]), quota[c]) for i, c in enumerate(names) if counts[i] < quota[c]}
    if short:
        c, (have, need) = next(iter(short.items()))
        raise ConfigError(f"quota: class {c!r} has {have} clip(s), fewer than its training quota {need}")
    order = np.random.RandomState(seed).permutation(len(y))
    taken = np.zeros(len(names), dtype=int)
    train = []
    for i in order:
        if taken[y[i]] < quota[names[y[i]]]:
            taken[y[i]] += 1
            train.append(i)
    tr = np.sort(np.asarray(train, dtype=int))
    te = np.setdiff1d(np.arange(len(y)), tr)
    if len(te) == 0:
        raise ConfigError(f"quota={quota} puts every clip in training: no test clip is left")
    return Fold("quota", tr, te)


def _lodo(y: np.ndarray, datasets: np.ndarray | None, test_dataset: str | None,
          train_datasets: list[str] | None) -> list[Fold]:
    ds = np.asarray(datasets if datasets is not None else [], dtype=object)
    names = sorted(set(ds.tolist()))
    if len(names) < 2:
        raise ConfigError(f"protocol lodo needs clips from at least 2 datasets, found {names or 'none'}")
    for name in [test_dataset, *(train_datasets or [])]:
        if name is not None and name not in names:
            raise ConfigError(f"lodo: dataset {name!r} is not in the clip set (datasets: {names})")
    if test_dataset is not None and train_datasets and test_dataset in train_datasets:
        raise ConfigError(f"lodo: test_dataset {test_dataset!r} is also among train_datasets {train_datasets}")
    idx = np.arange(len(y))
    folds = []
    for tr, te in LeaveOneGroupOut().split(idx, y, ds):
        target = str(ds[te][0])
        if test_dataset is not None and target != test_dataset:
            continue
        if train_datasets:
            tr = tr[np.isin(ds[tr], list(train_datasets))]
        missing = sorted(set(y[te].tolist()) - set(y[tr].tolist()))
        if len(tr) == 0 or missing:
            raise ConfigError(f"lodo fold {target}: training datasets {sorted(set(ds[tr].tolist()))} have no clip of "
                              f"class index(es) {missing} that the target has; the class protocols must agree")
        folds.append(Fold(target, tr, te))
    return folds


def validation_split(train: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int, fraction: float,
                     by_subject: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Split a training fold into (fit, validation) indices. Validation subjects come from the fold only;
    ``by_subject=False`` draws a stratified share of the fold's clips (Joshi: 27 %)."""
    train = np.asarray(train)
    g = np.asarray(groups, dtype=object)[train]
    if by_subject and len(set(g.tolist())) >= 2:
        splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        fit, val = next(splitter.split(train, groups=g))
    else:
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        try:
            fit, val = next(splitter.split(train, np.asarray(y)[train]))
        except ValueError:  # a class too small to stratify
            fit, val = next(GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
                            .split(train, groups=np.arange(len(train))))
    return train[np.sort(fit)], train[np.sort(val)]


def shuffle_within_groups(y: np.ndarray, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Labels permuted within each subject: keeps every subject's class mix, destroys clip-label association."""
    y = np.asarray(y).copy()
    groups = np.asarray(groups, dtype=object)
    for g in sorted(set(groups.tolist())):
        where = np.flatnonzero(groups == g)
        y[where] = y[rng.permutation(where)]
    return y
