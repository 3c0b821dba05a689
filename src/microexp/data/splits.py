"""Subject-grouped folds without labels: leave-one-subject-out or k folds of whole subjects (scikit-learn's
splitters). For tasks with no class per sample, such as spotting in long videos; recognition's protocols with
stratification live in :mod:`microexp.train.protocols`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut

from microexp.errors import ConfigError

GROUP_PROTOCOLS = ("loso", "kfold")


@dataclass(frozen=True)
class Fold:
    name: str
    train: np.ndarray
    test: np.ndarray


def group_folds(protocol: str, groups: Sequence[str] | np.ndarray, seed: int = 0, n_splits: int = 5) -> list[Fold]:
    """Folds over items grouped by subject (``groups[i]``: item i's subject); no subject is on both sides.
    ``loso``: one fold per subject, named after it; ``kfold``: ``n_splits`` shuffled (seeded) folds of subjects."""
    groups = np.asarray(groups, dtype=object)
    idx = np.arange(len(groups))
    n_groups = len(set(groups.tolist()))
    if protocol == "loso":
        if n_groups < 2:
            raise ConfigError(f"LOSO needs at least 2 subjects, found {n_groups}")
        return [Fold(str(groups[te][0]), tr, te) for tr, te in LeaveOneGroupOut().split(idx, groups=groups)]
    if protocol == "kfold":
        if n_groups < n_splits:
            raise ConfigError(f"{n_splits}-fold grouped CV needs at least {n_splits} subjects, found {n_groups}")
        splitter = GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        return [Fold(f"fold{i + 1}", tr, te) for i, (tr, te) in enumerate(splitter.split(idx, groups=groups))]
    raise ConfigError(f"grouped protocol {protocol!r}: expected {' or '.join(GROUP_PROTOCOLS)}")
