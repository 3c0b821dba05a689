"""Coerce a dataclass's fields to their annotated types, with one-line errors naming the key and the value.

The typed configurations (:class:`~microexp.config.RunConfig`, :class:`~microexp.preprocess.config.PreprocessConfig`)
call :func:`coerce_fields` first thing in ``__post_init__``, so a value from YAML, ``--set`` or a CLI option is
checked when the configuration is built, before any work starts. YAML 1.1 (PyYAML) reads ``1e-3`` as a string;
a float field takes it as the number, an int field takes ``"12"`` but refuses ``1.5``, and nothing else is guessed.
Also: :func:`load_yaml`, PyYAML's safe loader that reads ``1e-3`` as a float (YAML 1.2), for untyped values
(``model_params``, sweep grids).
"""

from __future__ import annotations

import functools
import math
import re
import types
from dataclasses import fields, is_dataclass
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from microexp.errors import ConfigError

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` as type ``tp`` (int, float, bool, str, list[...], tuple[...], dict, Optional, a dataclass)."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:  # not needed by the configs; keep the value rather than guess
            return value
        return coerce(value, inner[0], key)
    if tp is Any:
        return value
    if value is None:
        raise ConfigError(f"{key} must be set (got null)")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{key}={value!r} is not true or false")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} is not an integer")
        if isinstance(value, int):
            return value
        number = _number(value, key, "an integer")
        if not number.is_integer():
            raise ConfigError(f"{key}={value!r} is not an integer")
        return int(number)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} is not a number")
        return _number(value, key, "a number")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}={value!r} is not a string")
    if origin is list:
        if isinstance(value, str) and args and args[0] is str:
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}={value!r} is not a list")
        return [coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)] if args else list(value)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}={value!r} is not a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if args and len(value) != len(args):
            raise ConfigError(f"{key}={list(value)!r} needs {len(args)} values")
        return tuple(coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))) \
            if args else tuple(value)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}={value!r} is not a mapping")
        return value
    if isinstance(tp, type) and is_dataclass(tp):
        if not isinstance(value, tp):
            raise ConfigError(f"{key}={value!r} is not a mapping (the {key} section)")
        return value
    return value


def _number(value: Any, key: str, what: str) -> float:
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ConfigError(f"{key}={value!r} is not {what}") from None
    else:
        raise ConfigError(f"{key}={value!r} is not {what}")
    if not math.isfinite(number):
        raise ConfigError(f"{key}={value!r} is not a finite number")
    return number


def coerce_fields(obj: Any, prefix: str = "") -> None:
    """Replace every field of the dataclass ``obj`` by its value coerced to the annotated type (frozen or not)."""
    hints = _hints(type(obj))
    for f in fields(obj):
        value = getattr(obj, f.name)
        new = coerce(value, hints[f.name], f"{prefix}{f.name}")
        if new is not value:
            object.__setattr__(obj, f.name, new)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


class _Loader(yaml.SafeLoader):
    """Safe loader that also reads exponent floats without a dot (``1e-3``, ``5E4``), as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
