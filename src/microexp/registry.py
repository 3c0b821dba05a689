"""One registry type for every named thing: datasets, class protocols, models, face backends.

Each registry maps a name to an item. Registering a name twice raises (a second module must not silently replace
the first); asking for an unknown name raises :class:`~microexp.errors.ConfigError` listing the known ones. The
built-in entries are imported lazily from an explicit list of modules, so looking up one model does not import the
others (nor their compiled kernels).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Generic, TypeVar

from microexp.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """``Registry("model", builtin=("microexp.models.stcnn", ...))``; items register with ``reg.add(name, item)``."""

    def __init__(self, kind: str, builtin: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self._builtin = builtin
        self._loaded = not builtin
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        if name in self._items:
            raise ConfigError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = item
        return item

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True  # set first: the modules imported below call add() on this registry
            for module in self._builtin:
                importlib.import_module(module)

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none registered"
            raise ConfigError(f"unknown {self.kind} {name!r} (known: {known})") from None

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._items)
