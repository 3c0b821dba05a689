"""Dataset registry: name -> :class:`DatasetSpec`. ``load_dataset`` is what ``evaluate`` and ``preprocess`` call.

A spec holds everything the toolkit knows about one dataset, so that a new dataset touches one module: its loader
``fn(root, annotation) -> (records, exclusions)`` (raw emotions kept), its class protocols, the raw label names of
the release, its subject-folder pattern, how ``data check`` scans its tree (:class:`~microexp.data._common.Scan`),
how to recognise its release folder (hints) and its annotation file names. Dataset modules (the explicit list in
:mod:`microexp.data.builtin`) register with :func:`register_dataset`; a name registered twice raises. The fixture
writers of ``microexp synth --layout`` live with the generator, in :mod:`microexp.synth.fixtures`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from microexp.data import classes as class_protocols
from microexp.data._common import Scan
from microexp.data.builtin import MODULES
from microexp.data.classes import ClassProtocol
from microexp.data.records import ClipRecord, ClipSet, Exclusion
from microexp.errors import AnnotationError, ConfigError
from microexp.registry import Registry

Loader = Callable[[Path, Path | None], tuple[list[ClipRecord], list[Exclusion]]]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    loader: Loader
    default_classes: str | None  # None: every annotated label is a class
    description: str = ""
    protocols: tuple[ClassProtocol, ...] = ()  # the dataset's own class protocols (registered with it)
    labels: tuple[str, ...] | None = None  # raw labels of the release; None: any (plain layout)
    subject_pattern: str | None = None  # regex of a subject folder name (hints)
    scan: Callable[[Path, Path | None], Scan] | None = None  # data check: rows + folders on disk
    looks_like: Callable[[Path], bool] | None = None  # is this folder the release as delivered? (hints)
    annotation_patterns: tuple[str, ...] = ()  # file names of the release's annotation (globs)
    family: str = ""  # datasets of one release (smic, smic_vis, smic_nir) do not hint at each other
    check: Callable[..., Any] | None = None  # a whole custom data check (megc2019: its three sources)
    declared_labels: Callable[[Path], tuple[str, ...] | None] | None = None  # labels the user declared in the tree

    def accepted_protocols(self) -> list[str]:
        names = [p.name for p in self.protocols]
        if self.default_classes and self.default_classes not in names:
            names.append(self.default_classes)
        return [*names, "all"]


DATASETS: Registry[DatasetSpec] = Registry("dataset", builtin=MODULES)


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Register a dataset and its own class protocols (a duplicate name of either raises)."""
    DATASETS.add(spec.name, spec)
    for protocol in spec.protocols:
        class_protocols.PROTOCOLS.add(protocol.name, protocol)
    return spec


def dataset_names() -> list[str]:
    return DATASETS.names()


def get_dataset(name: str) -> DatasetSpec:
    return DATASETS.get(name)


def protocol_owner(protocol: str) -> str | None:
    """The dataset whose spec defines a class protocol (None: a generic protocol)."""
    return next((n for n in DATASETS.names() if any(p.name == protocol for p in DATASETS.get(n).protocols)), None)


def resolve_protocol(spec: DatasetSpec, name: str | None) -> str:
    """The protocol name to use on ``spec``'s data; a protocol of another dataset is refused."""
    chosen = name or spec.default_classes or "all"
    if chosen == "all":
        return chosen
    class_protocols.get(chosen)  # unknown: ConfigError listing the known ones
    owner = protocol_owner(chosen)
    if owner is not None and chosen not in spec.accepted_protocols():
        raise ConfigError(f"class protocol {chosen!r} belongs to dataset {owner}, not {spec.name} "
                          f"(use one of: {', '.join(spec.accepted_protocols())})")
    return chosen


def annotation_mismatch(spec: DatasetSpec, annotation: Path) -> str | None:
    """Why ``annotation`` is not this dataset's file, when its name is another dataset's annotation file name."""
    name = Path(annotation).name
    if not spec.annotation_patterns or any(fnmatch.fnmatch(name.lower(), p.lower()) for p in spec.annotation_patterns):
        return None
    others = [n for n in DATASETS.names() if n != spec.name and any(
        fnmatch.fnmatch(name.lower(), p.lower()) for p in DATASETS.get(n).annotation_patterns)]
    if others:
        return (f"{annotation}: this is the annotation file of {' / '.join(others)}, not of {spec.name} "
                f"(expected a name like {spec.annotation_patterns[0]})")
    return None


def check_labels(records: Iterable[ClipRecord], labels: Sequence[str]) -> None:
    """Every record's raw label must be one of the declared ``labels`` (a typo never becomes its own class)."""
    allowed = set(labels)
    for r in records:
        if r.emotion not in allowed:
            file, _, row = r.source.rpartition(":")
            msg = f"label {r.emotion!r} is not one of the declared labels {list(labels)}"
            if row.isdigit():
                raise AnnotationError(msg, file=file, row=int(row), column="emotion")
            raise AnnotationError(msg, file=r.source)


def parse_labels(labels: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """Declared labels from ``"a,b,c"`` or a list; None when not declared."""
    if labels is None:
        return None
    items = labels.split(",") if isinstance(labels, str) else [str(x) for x in labels]
    out = tuple(dict.fromkeys(x.strip() for x in items if x.strip()))
    if not out:
        raise ConfigError("the declared labels are empty")
    return out


def load_dataset(name: str, root: Path, annotation: Path | None = None, classes: str | None = None,
                 labels: str | Sequence[str] | None = None) -> ClipSet:
    """Load a dataset tree and apply a class protocol (the dataset's default when ``classes`` is None).

    ``labels``: the raw labels the annotation may use (a label outside them is an error naming its row; default:
    the ones the tree declares, e.g. the plain layout's ``labels.txt``); with the ``all`` protocol they are also
    the classes, in the order given. A class protocol of another dataset, and one
    that leaves a class without a clip, are refused.
    """
    spec = get_dataset(name)
    protocol_name = resolve_protocol(spec, classes)
    declared = parse_labels(labels) or (spec.declared_labels(Path(root)) if spec.declared_labels else None)
    if annotation is not None and (why := annotation_mismatch(spec, Path(annotation))):
        raise ConfigError(why)
    records, excluded = spec.loader(Path(root), Path(annotation) if annotation else None)
    if declared is not None:
        check_labels(records, declared)
    if protocol_name == "all":
        protocol = class_protocols.identity_protocol([r.emotion for r in records])
        if declared is not None:
            protocol = ClassProtocol("all", declared, {c: c for c in declared}, "the declared labels")
    else:
        protocol = class_protocols.get(protocol_name)
    clips = protocol.apply(records, name=f"{name}:{protocol.name}", excluded=excluded)
    empty = [c for c, n in clips.counts().items() if n == 0]
    if records and empty and protocol_name == "all" and declared is not None:
        raise ConfigError(f"{name} at {root}: declared label(s) {empty} have no clip (a class without clips); "
                          "declare only the labels the annotation uses")
    if records and empty:
        raise ConfigError(f"class protocol {protocol.name} on {name} at {root}: class(es) {empty} have no clip "
                          f"({len(clips)} of {len(records)} clips kept); choose another --classes")
    return clips
