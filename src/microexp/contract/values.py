"""Typed values with one-line errors: pydantic does the coercion, this module says what went wrong in our words.

Every configuration (the run's, the spotting run's, a recipe's header, the server's options, and the frozen
preprocessing dataclasses) is checked here when it is built, so a value from YAML, ``--set`` or a CLI option that
does not fit its type is one line naming the key and the value (``train.lr='abc' is not a number``) before any
work starts. YAML 1.1 (PyYAML) reads ``1e-3`` as a string; a float field takes it as the number, an int field
takes ``"12"`` but refuses ``1.5`` or ``true``. :func:`load_yaml` reads ``1e-3`` as a float (YAML 1.2) for
untyped values (``model_params``, sweep grids).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
from pathlib import PurePath
from typing import Any, ClassVar, Union, get_args, get_origin, get_type_hints

import yaml
from pydantic import BaseModel, ConfigDict, InstanceOf, TypeAdapter, ValidationError, field_validator

from microexp.errors import ConfigError

# lax coercion as the configurations always had it: numbers to strings, no NaN or infinity
PYDANTIC_CONFIG = ConfigDict(allow_inf_nan=False, coerce_numbers_to_str=True, arbitrary_types_allowed=True)
_WHAT = {"int": "an integer", "float": "a number", "bool": "true or false", "string": "a string", "list": "a list",
         "tuple": "a list", "dict": "a mapping"}


def _key(prefix: str, loc: tuple[Any, ...]) -> str:
    out = prefix.rstrip(".")
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" not in str(part):  # pydantic's own steps (``function-after[...]``) are not keys
            out = f"{out}.{part}" if out else str(part)
    return out


def error_line(exc: ValidationError, prefix: str = "") -> str:
    """The first problem of a pydantic error as one line naming the key and the value. Unknown keys come first
    (all of them), as they always did."""
    errors = exc.errors(include_url=False)
    unknown = [_key(prefix, e["loc"]) for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        return f"unknown option(s) {unknown}"
    e = errors[0]
    kind, value, key = e["type"], e.get("input"), _key(prefix, e["loc"])
    if kind == "missing" and e["loc"] and isinstance(e["loc"][-1], int):  # a fixed-length list too short
        return f"{_key(prefix, e['loc'][:-1])}={list(value)!r} needs more values"
    if value is None and kind.endswith(("_type", "_parsing")):
        return f"{key} must be set (got null)"
    if kind == "finite_number":
        return f"{key}={value!r} is not a finite number"
    if kind in ("model_type", "model_attributes_type", "dataclass_type", "is_instance_of"):
        return f"{key}={value!r} is not a mapping (the {key} section)"
    what = _WHAT.get(kind.split("_")[0])  # int_parsing, int_from_float, float_type, bool_parsing, string_type, ...
    if what is not None:
        return f"{key}={value!r} is not {what}"
    return f"{key}={value!r}: {e['msg']}"


def _plain(tp: Any) -> Any:
    """``tp`` without ``None`` (``X | None`` -> X)."""
    if get_origin(tp) in (Union, types.UnionType):
        inner = [a for a in get_args(tp) if a is not type(None)]
        return inner[0] if len(inner) == 1 else tp
    return tp


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _refuse_bool_number(value: Any, tp: Any, key: str) -> None:
    """What pydantic's lax mode would guess and we do not: ``true`` as the number 1 (a typo, not a count), ``1``
    or ``"t"`` as true (the words are true/yes/on/1 and false/no/off/0)."""
    plain = _plain(tp)
    if isinstance(value, bool) and plain in (int, float):
        raise ConfigError(f"{key}={value!r} is not {'an integer' if plain is int else 'a number'}")
    if plain is bool and value is not None and not isinstance(value, bool) and not (
            isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE):
        raise ConfigError(f"{key}={value!r} is not true or false")
    if get_origin(plain) in (list, tuple) and isinstance(value, list | tuple):
        args = get_args(plain)
        for i, v in enumerate(value):
            inner = args[0] if len(args) == 1 or (len(args) == 2 and args[1] is Ellipsis) else \
                (args[i] if i < len(args) else None)
            if inner is not None:
                _refuse_bool_number(v, inner, f"{key}[{i}]")


def _split_words(value: Any, tp: Any) -> Any:
    """``"a, b"`` for a list of strings is ``["a", "b"]`` (``--set reproduce=a,b``); a path for a string is its
    text."""
    plain = _plain(tp)
    if isinstance(value, PurePath) and plain is str:
        return str(value)
    if isinstance(value, str) and get_origin(plain) is list and get_args(plain) == (str,):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


class ConfigModel(BaseModel):
    """Base of the configuration models: unknown keys refused, assignments checked, pydantic's errors turned into
    our one-line :class:`~microexp.errors.ConfigError` (``prefix``: the section's dotted name, e.g. ``train.``)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), **PYDANTIC_CONFIG)
    prefix: ClassVar[str] = ""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(error_line(exc, self.prefix)) from None

    def __setattr__(self, name: str, value: Any) -> None:
        before = self.__dict__.get(name)
        try:
            super().__setattr__(name, value)
        except (ValidationError, ConfigError) as exc:
            self.__dict__[name] = before  # a refused value leaves the configuration as it was
            raise ConfigError(error_line(exc, self.prefix) if isinstance(exc, ValidationError) else str(exc)) \
                from None

    @field_validator("*", mode="before")
    @classmethod
    def _before(cls, value: Any, info: Any) -> Any:
        tp = cls.model_fields[info.field_name].annotation
        _refuse_bool_number(value, tp, f"{cls.prefix}{info.field_name}")
        return _split_words(value, tp)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    def replace(self, **changes: Any) -> Any:
        """A copy with ``changes``, checked like a new configuration."""
        return type(self)(**{**self.model_dump(), **changes})


# ------------------------------------------------------------------------ frozen dataclasses (preprocessing)
def _instances(tp: Any) -> Any:
    """``tp`` with every dataclass in it replaced by ``InstanceOf[that dataclass]`` (built by its own checks)."""
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return InstanceOf[tp]
    origin, args = get_origin(tp), get_args(tp)
    if not args:
        return tp
    mapped = tuple(a if a is Ellipsis else _instances(a) for a in args)
    if origin in (Union, types.UnionType):
        return Union[mapped]  # noqa: UP007 - built at run time
    return origin[mapped] if origin is not None else tp


@functools.cache
def _adapters(cls: type) -> dict[str, tuple[Any, TypeAdapter[Any]]]:
    hints = get_type_hints(cls)
    return {f.name: (hints[f.name], TypeAdapter(_instances(hints[f.name]), config=PYDANTIC_CONFIG))
            for f in dataclasses.fields(cls)}


def coerce_value(value: Any, tp: Any, key: str, adapter: TypeAdapter[Any] | None = None) -> Any:
    """``value`` as type ``tp``; a value that does not fit is one :class:`ConfigError` line naming ``key``."""
    _refuse_bool_number(value, tp, key)
    value = _split_words(value, tp)
    plain = _plain(tp)
    if get_origin(plain) is tuple and isinstance(value, list | tuple):
        args = get_args(plain)
        if args and args[-1] is not Ellipsis and len(value) != len(args):
            raise ConfigError(f"{key}={list(value)!r} needs {len(args)} values")
    adapter = adapter or TypeAdapter(_instances(tp), config=PYDANTIC_CONFIG)
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise ConfigError(error_line(exc, key)) from None


def coerce_fields(obj: Any, prefix: str = "") -> None:
    """Replace every field of the dataclass ``obj`` by its value coerced to the annotated type (frozen or not)."""
    for name, (tp, adapter) in _adapters(type(obj)).items():
        value = getattr(obj, name)
        new = coerce_value(value, tp, f"{prefix}{name}", adapter)
        if new is not value and new != value or type(new) is not type(value):
            object.__setattr__(obj, name, new)


# ---------------------------------------------------------------------------------------------------- YAML
class _Loader(yaml.SafeLoader):
    """Safe loader that also reads exponent floats without a dot (``1e-3``, ``5E4``), as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
