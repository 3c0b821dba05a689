"""Models, registered by name (``microexp models`` lists them)."""

from microexp.models.registry import (
    KINDS,
    MODELS,
    ModelSpec,
    count_parameters,
    get,
    names,
    parameter_count,
    register,
)

__all__ = ["KINDS", "MODELS", "ModelSpec", "count_parameters", "get", "names", "parameter_count", "register"]
