"""microexp: facial micro-expression recognition toolkit.

The package follows the data: ``data`` (annotations -> clip records) -> ``preprocess`` -> ``models`` ->
``train`` (protocols, epoch policy, metrics) -> run directory. The CLI (``microexp``) is a thin layer over it.
"""

from microexp.errors import MicroexpError

__version__ = "0.1.0"

__all__ = ["MicroexpError", "__version__", "load"]


def __getattr__(name: str) -> object:
    # lazy: ``import microexp`` stays light (no torch); ``microexp.load(RUN_DIR).predict(video)`` imports on use
    if name == "load":
        from microexp.predict import load

        return load
    raise AttributeError(f"module 'microexp' has no attribute {name!r}")
