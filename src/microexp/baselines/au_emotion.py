"""Emotion from AUs: a non-deep baseline that predicts a clip's class from its annotated AU codes alone.

MEB (Varanka et al., "Data leakage and evaluation issues in micro-expression analysis", IEEE TAFFC 15(1), 2024,
doi:10.1109/TAFFC.2023.3265063) fits a gradient-boosting classifier on each dataset's AU multi-hot to show how much
of its emotion labels the AU codes already determine (its notebook scores the classifier on the clips it was fitted
on). Here the same kind of classifier runs under the run's protocol (LOSO, LODO, ...) with the pooled UF1/UAR and the
shuffled-label control of every recognition run: :func:`microexp.train.au.evaluate_emotion_from_aus`.

Input: the multi-hot of the clip's certain AU numbers, a fixed 100 columns (AU0..AU99), so no column depends on the
data. ``classifier``: ``gradient-boosting`` (default, MEB's choice), ``logistic`` or ``tree``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from microexp.errors import ConfigError
from microexp.models.registry import ModelSpec, register
from microexp.preprocess.config import PreprocessConfig

CLASSIFIERS = ("gradient-boosting", "logistic", "tree")


class AUEmotionClassifier:
    """A scikit-learn classifier on AU multi-hot rows. ``x`` is an (N, 100) array or, as for every ``sklearn``
    model, a dict with one stream (``{"aus": x}``), flattened per row. ``predict_proba`` has one column per class
    index 0..n_classes-1 (a class absent from the training rows gets probability 0)."""

    def __init__(self, estimator: BaseEstimator, n_classes: int) -> None:
        self.estimator = estimator
        self.n_classes = n_classes

    def n_features(self) -> int:
        return 100

    @staticmethod
    def _rows(x: Any) -> np.ndarray:
        if isinstance(x, dict):
            (x,) = x.values()
        x = np.asarray(x, dtype=np.float32)
        return x.reshape(len(x), -1)

    def fit(self, x: Any, y: Any) -> AUEmotionClassifier:
        self.estimator.fit(self._rows(x), np.asarray(y))
        return self

    def predict(self, x: Any) -> np.ndarray:
        return np.asarray(self.estimator.predict(self._rows(x)))

    def predict_proba(self, x: Any) -> np.ndarray:
        p = self.estimator.predict_proba(self._rows(x))
        out = np.zeros((len(p), self.n_classes), np.float64)
        out[:, np.asarray(self.estimator.classes_, dtype=int)] = p
        return out


def build_au_emotion(n_classes: int, input_shapes: Any = None, classifier: str = "gradient-boosting",
                     seed: int = 0) -> AUEmotionClassifier:
    if classifier == "gradient-boosting":
        return AUEmotionClassifier(GradientBoostingClassifier(random_state=seed), n_classes)
    if classifier == "logistic":
        return AUEmotionClassifier(LogisticRegression(max_iter=2000), n_classes)
    if classifier == "tree":
        return AUEmotionClassifier(DecisionTreeClassifier(random_state=seed), n_classes)
    raise ConfigError(f"sklearn-aus classifier={classifier!r} is not one of {list(CLASSIFIERS)}")


def _evaluate(config: Any, out: Any, clips: Any, log: Any) -> Any:
    from microexp.train.au import evaluate_emotion_from_aus

    return evaluate_emotion_from_aus(config, out, clips, log)


register(ModelSpec(
    name="sklearn-aus",
    builder=build_au_emotion,  # type: ignore[arg-type]
    preprocess=PreprocessConfig(),
    source="MEB (Varanka et al., TAFFC 2024): emotion predicted from the annotated AUs (gradient boosting)",
    description="the clip's annotated AU codes (multi-hot, AU0..AU99) -> scikit-learn classifier; no frames read "
                "(kind=sklearn, reads aus)",
    kind="sklearn",
    reads="aus",
    evaluator=_evaluate,
))
