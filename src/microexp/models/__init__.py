"""Models, registered by name (``microexp models`` lists them)."""

from microexp.models.registry import ModelSpec, count_parameters, get, names, parameter_count, register

__all__ = ["ModelSpec", "count_parameters", "get", "names", "parameter_count", "register"]
