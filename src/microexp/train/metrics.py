"""The field's metrics, computed with scikit-learn on pooled predictions.

MEGC definition (See et al., "MEGC 2019 - the second facial micro-expressions grand challenge", FG 2019,
doi:10.1109/FG.2019.8756611): over the predictions of all folds pooled (not a mean of per-fold scores),
UF1 = the mean over classes of F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c), and UAR = the mean over classes of
recall_c = TP_c / N_c.

One rule for which classes are averaged, for both UF1 and UAR and for every scored set (overall, per subject, per
source dataset): **the classes present in that set's ground truth**. A class with no true sample there has no
recall (N_c = 0), so it cannot enter UAR; it is left out of UF1 too rather than counted as 0, so that the two
metrics of one subject average over the same classes. Wrong predictions *of* an absent class still count: they are
the false negatives of the true classes. When every class is present (the MEGC composite, any usual test set) this
is exactly the definition above over all C classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    recall_score,
)


def core_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict[str, float]:
    """Accuracy, UF1 and UAR; both averaged over the classes present in ``y_true`` (module docstring)."""
    present = sorted(set(np.asarray(y_true).tolist()))
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "uf1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "uar": float(recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "n": int(len(y_true)),
    }


def compute_metrics(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str],
                    subjects: Sequence[str] | None = None, datasets: Sequence[str] | None = None,
                    per_dataset: bool | None = None) -> dict[str, Any]:
    """Accuracy, UF1, UAR, confusion, per class, per subject and per source dataset (``per_dataset``: always,
    never, or with None when several datasets are present)."""
    yt, yp = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    k = len(classes)
    out: dict[str, Any] = core_metrics(yt, yp, k)
    out["confusion"] = confusion_matrix(yt, yp, labels=list(range(k))).tolist()
    prec, rec, f1, support = precision_recall_fscore_support(yt, yp, labels=list(range(k)), zero_division=0)
    out["per_class"] = {c: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]),
                            "support": int(support[i])} for i, c in enumerate(classes)}
    if subjects is not None:
        subj = np.asarray(subjects, dtype=object)
        out["per_subject"] = {str(s): core_metrics(yt[subj == s], yp[subj == s], k) for s in sorted(set(subj))}
    if datasets is not None and (per_dataset if per_dataset is not None else len(set(datasets)) > 1):
        ds = np.asarray(datasets, dtype=object)
        out["per_dataset"] = {str(d): core_metrics(yt[ds == d], yp[ds == d], k) for d in sorted(set(ds))}
    return out


def summarise_seeds(per_seed: Sequence[dict[str, Any]], keys: Sequence[str] = ("accuracy", "uf1", "uar")) -> dict:
    """Mean and (population) standard deviation of the headline metrics over seeds."""
    return {k: {"mean": float(np.mean([m[k] for m in per_seed])), "std": float(np.std([m[k] for m in per_seed]))}
            for k in keys}
