"""Training and evaluation: protocols (splits + epoch policy), the loop, metrics, ``evaluate``."""

from microexp.train.evaluate import RunResult, evaluate
from microexp.train.metrics import compute_metrics
from microexp.train.protocols import Fold, make_folds

__all__ = ["Fold", "RunResult", "compute_metrics", "evaluate", "make_folds"]
