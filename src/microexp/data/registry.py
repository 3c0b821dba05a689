"""Dataset registry: name -> loader. ``load_dataset`` is what ``evaluate`` and ``preprocess`` call.

A loader is ``fn(root, annotation) -> (records, exclusions)``; it keeps raw emotions. A class protocol then maps them.
Dataset modules register themselves here with :func:`register_dataset`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from microexp.data import classes as class_protocols
from microexp.data.plain import load_plain
from microexp.data.records import ClipRecord, ClipSet, Exclusion
from microexp.errors import ConfigError

Loader = Callable[[Path, Path | None], tuple[list[ClipRecord], list[Exclusion]]]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    loader: Loader
    default_classes: str | None  # None: every annotated label is a class
    description: str = ""


_DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    _DATASETS[spec.name] = spec
    return spec


def dataset_names() -> list[str]:
    _import_builtin()
    return sorted(_DATASETS)


def get_dataset(name: str) -> DatasetSpec:
    _import_builtin()
    try:
        return _DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r} (known: {', '.join(dataset_names())})") from None


def load_dataset(name: str, root: Path, annotation: Path | None = None, classes: str | None = None) -> ClipSet:
    """Load a dataset tree and apply a class protocol (the dataset's default when ``classes`` is None)."""
    spec = get_dataset(name)
    records, excluded = spec.loader(Path(root), Path(annotation) if annotation else None)
    protocol_name = classes or spec.default_classes
    if protocol_name in (None, "all"):
        protocol = class_protocols.identity_protocol([r.emotion for r in records])
    else:
        protocol = class_protocols.get(protocol_name)
    return protocol.apply(records, name=f"{name}:{protocol.name}", excluded=excluded)


def _plain(root: Path, annotation: Path | None) -> tuple[list[ClipRecord], list[Exclusion]]:
    return load_plain(root, annotation, dataset="plain")


def _synthetic(root: Path, annotation: Path | None) -> tuple[list[ClipRecord], list[Exclusion]]:
    return load_plain(root, annotation, dataset="synthetic")


register_dataset(DatasetSpec("plain", _plain, None, "plain layout: ROOT/<subject>/<clip>/frame_0001.png + annotations.csv"))
register_dataset(DatasetSpec("synthetic", _synthetic, None, "a tree written by `microexp synth` (plain layout)"))

_BUILTIN_LOADED = False


def _import_builtin() -> None:
    """Import the real-dataset modules once so they can register themselves (they live in microexp.data.*)."""
    global _BUILTIN_LOADED
    if _BUILTIN_LOADED:
        return
    _BUILTIN_LOADED = True
    import importlib
    import pkgutil

    import microexp.data as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name not in {"registry", "records", "classes", "plain", "frames"}:
            importlib.import_module(f"microexp.data.{mod.name}")
