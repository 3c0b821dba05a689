"""microexp: facial micro-expression recognition toolkit.

The package follows the data: ``data`` (annotations -> clip records) -> ``preprocess`` -> ``models`` ->
``train`` (protocols, epoch policy, metrics) -> run directory. The CLI (``microexp``) is a thin layer over it.
"""

import os

# Before torch loads OpenMP (libgomp reads this once, at load): idle OpenMP workers sleep instead of spinning.
# The fast CPU path runs its work units on a thread pool of its own; OpenMP workers left spinning after a
# PyTorch op take those cores (measured: STCNN batch-1 inference 26-27 ms spinning, 22 ms passive; training
# 34 against 36 clips/s). A value the user set is kept; docs/bench.md says more.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from microexp.errors import MicroexpError  # noqa: E402

__version__ = "0.1.0"

__all__ = ["MicroexpError", "__version__", "load"]


def __getattr__(name: str) -> object:
    # lazy: ``import microexp`` stays light (no torch); ``microexp.load(RUN_DIR).predict(video)`` imports on use
    if name == "load":  # a recognition run's predictor, or a spotting run's spotter, by the run's layout
        from microexp.contract.load import load

        return load
    raise AttributeError(f"module 'microexp' has no attribute {name!r}")
