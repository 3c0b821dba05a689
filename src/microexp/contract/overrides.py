"""Dotted keys over nested configuration dicts: the one override helper (``train.lr=0.001``) and the one diff.

Used by the run configuration (``--set``), the recipes (profiles as dotted overrides, deviations from a recipe),
run comparison and resume, and the spotting CLI's ``--set``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from microexp.contract.values import load_yaml
from microexp.errors import ConfigError


def split_assignment(item: str, what: str = "override") -> tuple[str, str]:
    """``"a.b=VALUE"`` -> (``"a.b"``, ``"VALUE"``); anything without ``=`` is one line naming it."""
    if "=" not in item:
        raise ConfigError(f"{what} {item!r} is not KEY=VALUE")
    key, raw = item.split("=", 1)
    return key.strip(), raw


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    """``d["a"]["b"] = value`` for ``key="a.b"``; a missing (or null) section is created, a value that is not a
    section is refused."""
    parts = key.split(".")
    for p in parts[:-1]:
        if d.get(p) is None:
            d[p] = {}
        if not isinstance(d[p], dict):
            raise ConfigError(f"{p} is not a section")
        d = d[p]
    d[parts[-1]] = value


def apply_overrides(d: Mapping[str, Any], assignments: Iterable[str],
                    renamed: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A copy of ``d`` with every ``key.sub=value`` applied (values parsed as YAML, ``1e-3`` a number);
    ``renamed``: old key -> new key."""
    out = copy.deepcopy(dict(d))
    for item in assignments:
        key, raw = split_assignment(item)
        key = (renamed or {}).get(key, key)
        try:
            value = load_yaml(raw)
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: the value is not valid YAML") from None
        try:
            set_dotted(out, key, value)
        except ConfigError as exc:
            raise ConfigError(f"override {item!r}: {exc}") from None
    return out


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys of a nested dict (lists and the preprocessing streams stay values)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def diff(a: Mapping[str, Any], b: Mapping[str, Any], ignore: Iterable[str] = (),
         renamed: Mapping[str, str] | None = None) -> list[tuple[str, Any, Any]]:
    """Dotted keys whose values differ between two nested configuration dicts, sorted, as (key, a value, b value);
    ``ignore``: keys (and their sub-keys) left out; ``renamed``: old top-level key -> new, so an old run's
    configuration is compared under the new names."""
    if renamed:
        a, b = ({renamed.get(k, k) if renamed.get(k, k) not in d else k: v for k, v in d.items()} for d in (a, b))
    skip = tuple(ignore)
    out: list[tuple[str, Any, Any]] = []

    def walk(x: Mapping[str, Any], y: Mapping[str, Any], prefix: str) -> None:
        for key in sorted(set(x) | set(y), key=str):
            name = f"{prefix}{key}"
            if any(name == k or name.startswith(k + ".") for k in skip):
                continue
            vx, vy = x.get(key), y.get(key)
            if isinstance(vx, dict) and isinstance(vy, dict):
                walk(vx, vy, f"{name}.")
            elif vx != vy:
                out.append((name, vx, vy))

    walk(a, b, "")
    return out
