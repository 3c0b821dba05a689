"""Clip records: the one currency between dataset loaders and everything downstream.

A loader turns a dataset tree + annotation file into :class:`ClipRecord` objects (one per annotated clip, raw
emotion kept as annotated), lists what it could not use as :class:`Exclusion` rows, and a class protocol
(:mod:`microexp.data.classes`) maps raw emotions to the classes of an experiment, giving a :class:`ClipSet`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, overload

import numpy as np

from microexp.data.aus import AUCode, parse_aus_cell


@dataclass(frozen=True)
class ClipRecord:
    """One annotated clip.

    ``frames`` are the frame files of the clip in true temporal order and ``frame_numbers`` the absolute frame
    indices the dataset uses for them (so ``onset``/``apex``/``offset`` index into ``frame_numbers``, not into
    positions). ``emotion`` is the label as the annotation spells it (normalised for case/spelling only);
    ``label`` is the class under the active class protocol (equal to ``emotion`` until a protocol is applied).
    ``aus`` is the annotation's AU cell as written; ``au_codes`` its parsed codes and ``au_unparsed`` the pieces
    of it that are no AU code (both filled from ``aus`` by :func:`microexp.data.aus.parse_aus_cell`).
    """

    dataset: str
    subject: str
    clip_id: str
    emotion: str
    frames: tuple[Path, ...]
    frame_numbers: tuple[int, ...]
    onset: int | None = None
    apex: int | None = None
    offset: int | None = None
    fps: float = 30.0
    aus: str = ""
    label: str | None = None
    source: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)
    au_codes: tuple[AUCode, ...] = field(default=(), compare=False)
    au_unparsed: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if len(self.frames) != len(self.frame_numbers):
            raise ValueError(f"{self.key}: {len(self.frames)} frames but {len(self.frame_numbers)} frame numbers")
        if self.aus and not self.au_codes and not self.au_unparsed:
            parsed = parse_aus_cell(self.aus)
            object.__setattr__(self, "au_codes", parsed.codes)
            object.__setattr__(self, "au_unparsed", parsed.unparsed)
        if self.label is None:
            object.__setattr__(self, "label", self.emotion)

    @property
    def key(self) -> str:
        """Unique identifier of the clip across datasets: ``dataset/subject/clip_id``."""
        return f"{self.dataset}/{self.subject}/{self.clip_id}"

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    def position(self, frame_number: int) -> int:
        """Index into ``frames`` of an absolute frame number."""
        try:
            return self.frame_numbers.index(frame_number)
        except ValueError:
            raise KeyError(f"{self.key}: frame {frame_number} is not among its frames") from None

    def with_label(self, label: str) -> ClipRecord:
        return replace(self, label=label)


@dataclass(frozen=True)
class Exclusion:
    """A clip (or annotation row, or folder) that was left out, and why."""

    clip: str
    reason: str


@dataclass
class ClipSet:
    """Records under one class protocol, with the classes in a fixed order and the excluded clips."""

    name: str
    records: list[ClipRecord]
    classes: tuple[str, ...]
    excluded: list[Exclusion] = field(default_factory=list)

    def __post_init__(self) -> None:
        unknown = sorted({r.label for r in self.records if r.label not in self.classes})
        if unknown:
            raise ValueError(f"{self.name}: labels {unknown} are not among classes {list(self.classes)}")

    def __len__(self) -> int:
        return len(self.records)

    @overload
    def __getitem__(self, index: int) -> ClipRecord: ...

    @overload
    def __getitem__(self, index: slice) -> ClipSet: ...

    def __getitem__(self, index: int | slice) -> ClipRecord | ClipSet:
        """``clips[i]`` is a record; ``clips[a:b]`` a ClipSet of those records (classes and exclusions kept)."""
        if isinstance(index, slice):
            return self.subset(range(len(self.records))[index])
        return self.records[index]

    def __iter__(self) -> Iterator[ClipRecord]:
        return iter(self.records)

    @property
    def targets(self) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[r.label] for r in self.records], dtype=np.int64)

    @property
    def subjects(self) -> np.ndarray:
        return np.array([r.subject for r in self.records], dtype=object)

    @property
    def datasets(self) -> np.ndarray:
        return np.array([r.dataset for r in self.records], dtype=object)

    def subset(self, indices: Sequence[int] | range | np.ndarray) -> ClipSet:
        return ClipSet(self.name, [self.records[i] for i in indices], self.classes, list(self.excluded))

    def filter_length(self, min_frames: int | None = None, max_frames: int | None = None) -> ClipSet:
        """The clips with ``min_frames <= n_frames <= max_frames`` (either bound optional); the others are added
        to ``excluded`` with the reason, never dropped silently (Reddy et al. keep clips of more than 96 frames)."""
        kept, excluded = [], list(self.excluded)
        for r in self.records:
            if min_frames is not None and r.n_frames < min_frames:
                excluded.append(Exclusion(r.key, f"fewer than {min_frames} frames ({r.n_frames})"))
            elif max_frames is not None and r.n_frames > max_frames:
                excluded.append(Exclusion(r.key, f"more than {max_frames} frames ({r.n_frames})"))
            else:
                kept.append(r)
        return ClipSet(self.name, kept, self.classes, excluded)

    def counts(self) -> dict[str, int]:
        """Clips per class, in class order."""
        out = dict.fromkeys(self.classes, 0)
        for r in self.records:
            out[r.label] += 1
        return out

    def summary(self) -> str:
        subjects = len(set(r.subject for r in self.records))
        per_class = ", ".join(f"{c} {n}" for c, n in self.counts().items())
        return f"{self.name}: {len(self.records)} clips, {subjects} subjects ({per_class}); {len(self.excluded)} excluded"
