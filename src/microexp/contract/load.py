"""``microexp.load(RUN_DIR)``: a run directory's predictor (recognition run) or spotter (spotting run).

The run's kind comes from its layout (:func:`microexp.contract.layout.run_kind`), so only the stack that kind of run
needs is imported: loading a recognition run never imports :mod:`microexp.spot`, loading a spotting run never
imports :mod:`microexp.predict` (until it is asked to classify what it spots).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from microexp.contract.layout import SPOTTING, run_kind


def load(run_dir: str | Path, **kwargs: Any) -> Any:
    """A spotting run's :class:`~microexp.spot.api.Spotter`, or for a recognition run (a run directory or one
    checkpoint file) :func:`microexp.predict.load`'s predictor (``kwargs`` go to it)."""
    if Path(run_dir).is_dir() and run_kind(run_dir) == SPOTTING:
        from microexp.spot.api import Spotter

        return Spotter.load(run_dir)
    from microexp.predict import load as load_predictor

    return load_predictor(run_dir, **kwargs)
