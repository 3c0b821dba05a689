"""Splits are leak-free: no subject on both sides, validation subjects only from the training fold."""

from __future__ import annotations

import numpy as np
import pytest

from microexp.errors import ConfigError
from microexp.train.protocols import make_folds, shuffle_within_groups, validation_split

Y = np.tile([0, 1, 2], 40)
G = np.repeat([f"s{i:02d}" for i in range(12)], 10)


def _subjects(idx: np.ndarray) -> set[str]:
    return set(G[idx].tolist())


@pytest.mark.parametrize("protocol", ["loso", "kfold", "holdout"])
def test_no_subject_in_train_and_test(protocol: str) -> None:
    folds = make_folds(protocol, Y, G, seed=3, n_splits=4)
    assert len(folds) == {"loso": 12, "kfold": 4, "holdout": 1}[protocol]
    for fold in folds:
        assert not _subjects(fold.train) & _subjects(fold.test)
        assert len(np.intersect1d(fold.train, fold.test)) == 0
    if protocol != "holdout":  # every clip is tested exactly once
        assert sorted(np.concatenate([f.test for f in folds]).tolist()) == list(range(len(Y)))


def test_loso_fold_is_named_after_its_subject() -> None:
    folds = make_folds("loso", Y, G)
    assert [f.name for f in folds] == sorted(set(G.tolist())) and all(_subjects(f.test) == {f.name} for f in folds)


def test_paper_holdout_is_stratified_80_20_over_clips() -> None:
    (fold,) = make_folds("holdout", Y, G, seed=4, subject_aware=False)
    assert len(fold.test) == 24 and np.bincount(Y[fold.test]).tolist() == [8, 8, 8]


def test_kfold_is_repeatable_per_seed_and_differs_across_seeds() -> None:
    a = make_folds("kfold", Y, G, seed=1, n_splits=4)
    b = make_folds("kfold", Y, G, seed=1, n_splits=4)
    c = make_folds("kfold", Y, G, seed=2, n_splits=4)
    assert all(np.array_equal(x.test, y.test) for x, y in zip(a, b, strict=True))
    assert any(not np.array_equal(x.test, y.test) for x, y in zip(a, c, strict=True))


def test_validation_subjects_come_from_training_fold_only() -> None:
    for fold in make_folds("loso", Y, G):
        fit, val = validation_split(fold.train, Y, G, seed=0, fraction=0.2)
        assert _subjects(val) and not _subjects(val) & _subjects(fold.test)
        assert not _subjects(val) & _subjects(fit)
        assert set(fit.tolist()) | set(val.tolist()) == set(fold.train.tolist())


def test_shuffle_within_subjects_keeps_each_subjects_label_mix() -> None:
    shuffled = shuffle_within_groups(Y, G, np.random.default_rng(0))
    assert not np.array_equal(shuffled, Y)
    for s in set(G.tolist()):
        assert sorted(shuffled[G == s]) == sorted(Y[G == s])


def test_too_few_subjects_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="needs at least 5 subjects, found 2"):
        make_folds("kfold", Y[:20], G[:20], n_splits=5)
