"""Metrics on pooled predictions, checked against hand-computed values."""

from __future__ import annotations

import pytest

from microexp.train.evaluate import chance_levels
from microexp.train.metrics import compute_metrics


def test_uf1_uar_confusion_per_class_and_subject() -> None:
    y_true = [0, 0, 0, 0, 1, 1, 2, 2]
    y_pred = [0, 0, 1, 2, 1, 0, 2, 2]
    m = compute_metrics(y_true, y_pred, ["neg", "pos", "sur"], subjects=list("aaaabbbb"))
    # recalls 2/4, 1/2, 2/2 -> UAR 2/3; precisions 2/3, 1/2, 2/3 -> F1 4/7, 1/2, 4/5
    assert m["uar"] == pytest.approx(2 / 3)
    assert m["uf1"] == pytest.approx((4 / 7 + 1 / 2 + 4 / 5) / 3)
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["confusion"] == [[2, 1, 1], [1, 1, 0], [0, 0, 2]]
    assert m["per_class"]["neg"] == {"precision": pytest.approx(2 / 3), "recall": 0.5, "f1": pytest.approx(4 / 7),
                                     "support": 4}
    assert m["per_subject"]["a"]["accuracy"] == 0.5 and m["per_subject"]["b"]["accuracy"] == 0.75
    assert "per_dataset" not in m


def test_per_dataset_when_datasets_are_mixed() -> None:
    m = compute_metrics([0, 1, 0, 1], [0, 1, 1, 1], ["a", "b"], datasets=["x", "x", "y", "y"])
    assert m["per_dataset"]["x"]["uf1"] == 1.0 and m["per_dataset"]["y"]["accuracy"] == 0.5


def test_chance_levels_of_uniform_guessing() -> None:
    c = chance_levels([0, 0, 1, 2], 3)  # type: ignore[arg-type]
    assert c["uar"] == pytest.approx(1 / 3) and c["accuracy"] == pytest.approx(1 / 3)
    # F1 of uniform guessing for a class of prevalence p: 2 p (1/K) / (p + 1/K)
    f = [2 * p / 3 / (p + 1 / 3) for p in (0.5, 0.25, 0.25)]
    assert c["uf1"] == pytest.approx(sum(f) / 3)


def test_uf1_and_uar_average_over_the_same_present_classes() -> None:
    # subject a has no class 2; one of its clips is predicted as 2 (a false negative of class 0)
    y_true = [0, 0, 1, 2, 2, 1]
    y_pred = [0, 2, 1, 2, 1, 1]
    m = compute_metrics(y_true, y_pred, ["neg", "pos", "sur"], subjects=list("aaabbb"))
    a = m["per_subject"]["a"]
    # present classes 0, 1: F1 2/3 and 1; recalls 1/2 and 1 (class 2, absent, is not averaged as a 0)
    assert a["uf1"] == pytest.approx((2 / 3 + 1) / 2) and a["uar"] == pytest.approx((1 / 2 + 1) / 2)
    b = m["per_subject"]["b"]  # classes 1, 2 present
    # class 1: TP 1, FP 1, FN 0 -> F1 2/3; class 2: TP 1, FP 0, FN 1 -> 2/3; recalls 1 and 1/2
    assert b["uf1"] == pytest.approx(2 / 3) and b["uar"] == pytest.approx(3 / 4)
    # overall every class is present: the MEGC definition over all three classes
    assert m["uar"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert m["uf1"] == pytest.approx((2 / 3 + 4 / 5 + 1 / 2) / 3)
