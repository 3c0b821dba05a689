"""Class protocols: named, documented mappings from a dataset's raw emotion labels to experiment classes.

A protocol maps each raw emotion (compared case-insensitively, spaces/underscores ignored) to a class name, or to
``None`` to exclude it with a reason. Raw labels the mapping does not know are excluded as "unknown label".
Dataset-specific protocols belong to their dataset's spec (:class:`~microexp.data.registry.DatasetSpec`
``protocols``) and are registered in :data:`PROTOCOLS` with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field

from microexp.data.builtin import MODULES
from microexp.data.records import ClipRecord, ClipSet, Exclusion
from microexp.registry import Registry


def normalise_label(label: str) -> str:
    return "".join(ch for ch in str(label).strip().lower() if ch.isalnum())


@dataclass(frozen=True)
class ClassProtocol:
    """``field``: the record's ``emotion`` (default) or a ``meta`` key to map; ``where``: (meta key, value) pairs
    a record must match to be used (e.g. ``(("type", "micro"),)``); ``derive``: a function of the record giving
    the value to map instead (the objective classes: a class from the clip's AU codes), ``field`` then names it."""

    name: str
    classes: tuple[str, ...]
    mapping: Mapping[str, str | None]
    description: str = ""
    field: str = "emotion"
    where: tuple[tuple[str, str], ...] = ()
    derive: Callable[[ClipRecord], str] | None = dc_field(default=None, compare=False)

    def map(self, emotion: str) -> str | None:
        """Class of a raw emotion; ``None`` if excluded. Raises KeyError when the label is unknown."""
        table = {normalise_label(k): v for k, v in self.mapping.items()}
        return table[normalise_label(emotion)]

    def apply(self, records: Iterable[ClipRecord], name: str | None = None,
              excluded: Iterable[Exclusion] = ()) -> ClipSet:
        what = "label" if self.field == "emotion" else self.field
        kept: list[ClipRecord] = []
        dropped = list(excluded)
        for rec in records:
            bad = [(k, v) for k, v in self.where if rec.meta.get(k) != v]
            if bad:
                dropped.append(Exclusion(rec.key, f"{bad[0][0]} {rec.meta.get(bad[0][0])!r} not used by {self.name}"))
                continue
            if self.derive is not None:
                value = self.derive(rec)
            else:
                value = rec.emotion if self.field == "emotion" else str(rec.meta.get(self.field, ""))
            try:
                cls = self.map(value)
            except KeyError:
                dropped.append(Exclusion(rec.key, f"unknown {what} {value!r} for class protocol {self.name}"))
                continue
            if cls is None:
                dropped.append(Exclusion(rec.key, f"{what} {value!r} not used by class protocol {self.name}"))
                continue
            kept.append(rec.with_label(cls))
        return ClipSet(name or self.name, kept, self.classes, dropped)


def identity_protocol(labels: Iterable[str], name: str = "all") -> ClassProtocol:
    """Every raw label is its own class, classes sorted alphabetically."""
    classes = tuple(sorted(set(labels)))
    return ClassProtocol(name, classes, {c: c for c in classes}, "every annotated label is a class")


PROTOCOLS: Registry[ClassProtocol] = Registry("class protocol", builtin=MODULES)


def get(name: str) -> ClassProtocol:
    return PROTOCOLS.get(name)


def names() -> list[str]:
    return PROTOCOLS.names()
