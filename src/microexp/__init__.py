"""microexp: facial micro-expression recognition toolkit.

The package follows the data: ``data`` (annotations -> clip records) -> ``preprocess`` -> ``models`` ->
``train`` (protocols, epoch policy, metrics) -> run directory. The CLI (``microexp``) is a thin layer over it.
"""

from microexp.errors import MicroexpError

__version__ = "0.1.0"

__all__ = ["MicroexpError", "__version__"]
