"""Spotting ground truth: the expression intervals of the long-video releases, one :class:`Interval` each.

Built from the annotation parsers of :mod:`microexp.data` (one parser per release, one place):

- ``samm_lv``: SAMM Long Videos (200 fps). The release has no emotion column; micro intervals are joined to the
  SAMM micro-expression coding sheet by ``Filename`` (``006_1_2``); micro rows that do not join are listed in
  :attr:`GroundTruth.unjoined` (their emotion stays empty), macro rows carry no emotion.
- ``casme_sq``: CAS(ME)^2 long videos (30 fps, rawpic). **Offset 0** (44 macro rows of the Updated file, "not
  annotated"): the interval ends at its apex (``offset = apex``), the same rule as the clip loader; the interval is
  kept and counted, with ``meta["offset_annotated"] = False``.
- ``casme3``: CAS(ME)^3 Part A (30 fps), macro + micro intervals of ``CAS(ME)3_part_A_v2.xls``; micro intervals
  get their emotion from the ME label file by (subject, video, onset) when it is given.

A row whose onset is after its offset is an :class:`~microexp.data.records.Exclusion` with the reason; overlapping
intervals of one video are kept (the releases have them) and named in :attr:`GroundTruth.notes`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from microexp.contract.spotting import EXPRESSION_TYPES
from microexp.data.records import Exclusion
from microexp.errors import ConfigError

TYPES = EXPRESSION_TYPES  # the contract's list (microexp.contract.spotting)
FPS = {"samm_lv": 200.0, "casme_sq": 30.0, "casme3": 30.0}
DATASETS = tuple(FPS)


@dataclass(frozen=True)
class Interval:
    """One expression interval of a long video, frames inclusive (``offset - onset + 1`` frames)."""

    dataset: str
    subject: str
    video: str  # unique within the dataset (SAMM-LV ``006_1``, CAS(ME)^2 ``s15/15_0401girlcrashing``)
    onset: int
    offset: int
    type: str  # micro | macro
    apex: int | None = None
    aus: str = ""
    emotion: str = ""  # as annotated (lower case); empty when the release has none
    id: str = ""  # the release's own name of the interval (Filename / expression name)
    source: str = ""  # "file:row"
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def length(self) -> int:
        return self.offset - self.onset + 1

    @property
    def key(self) -> tuple[str, str]:
        return self.dataset, self.video

    @property
    def peak(self) -> int:
        """The apex, or the middle frame where the release has none."""
        return self.apex if self.apex is not None else (self.onset + self.offset) // 2


@dataclass
class GroundTruth:
    """The intervals of one or more datasets, with what could not be used and what is worth knowing."""

    intervals: list[Interval]
    excluded: list[Exclusion] = field(default_factory=list)
    unjoined: list[str] = field(default_factory=list)  # rows whose emotion join found no partner
    notes: list[str] = field(default_factory=list)  # overlaps and repairs (kept, but named)
    videos: dict[tuple[str, str], str] = field(default_factory=dict)  # (dataset, video) -> subject
    spans: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)  # first, last frame, when known

    def __post_init__(self) -> None:
        for iv in self.intervals:
            self.videos.setdefault(iv.key, iv.subject)

    @property
    def subjects(self) -> list[str]:
        return sorted({s for s in self.videos.values()})

    def of(self, *, dataset: str | None = None, subjects: Iterable[str] | None = None,
           type: str | None = None) -> list[Interval]:
        keep = set(subjects) if subjects is not None else None
        return [iv for iv in self.intervals if (dataset is None or iv.dataset == dataset)
                and (keep is None or iv.subject in keep) and (type is None or iv.type == type)]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(TYPES, 0)
        for iv in self.intervals:
            out[iv.type] += 1
        return out

    def check_bounds(self) -> GroundTruth:
        """Intervals outside their video's frames (when the frame count is known) become exclusions."""
        keep, out = [], list(self.excluded)
        for iv in self.intervals:
            span = self.spans.get(iv.key)
            if span is not None and (iv.onset < span[0] or iv.offset > span[1]):
                out.append(Exclusion(f"{iv.dataset}/{iv.subject}/{iv.id}",
                                     f"interval {iv.onset}..{iv.offset} is outside video {iv.video} (frames "
                                     f"{span[0]}..{span[1]}) ({iv.source})"))
            else:
                keep.append(iv)
        return replace(self, intervals=keep, excluded=out)


def overlaps(intervals: Sequence[Interval]) -> list[str]:
    """One line per pair of intervals of the same video and type that share frames."""
    by_video: dict[tuple[str, str, str], list[Interval]] = defaultdict(list)
    for iv in intervals:
        by_video[(iv.dataset, iv.video, iv.type)].append(iv)
    lines = []
    for (ds, video, kind), ivs in sorted(by_video.items()):
        ivs = sorted(ivs, key=lambda i: (i.onset, i.offset))
        for a, b in zip(ivs, ivs[1:], strict=False):
            if b.onset <= a.offset:
                lines.append(f"{ds} {video}: {kind} intervals {a.id} {a.onset}..{a.offset} and {b.id} "
                             f"{b.onset}..{b.offset} overlap (both kept)")
    return lines


def _from_rows(dataset: str, rows: Iterable[Any], video_of: Any, type_of: Any, emotion_of: Any
               ) -> tuple[list[Interval], list[Exclusion], list[str]]:
    intervals, excluded, notes = [], [], []
    for r in rows:
        key = f"{dataset}/{r.subject}/{r.clip_id}"
        if r.invalid:
            excluded.append(Exclusion(key, r.invalid))
            continue
        meta: dict[str, Any] = {}
        offset = r.offset
        if offset is None:  # CAS(ME)^2 / CAS(ME)^3 offset 0: ends at its apex (fix_apex's rule)
            offset = r.apex if r.apex is not None else r.onset
            meta["offset_annotated"] = False
        if r.onset is None or offset < r.onset:
            excluded.append(Exclusion(key, f"onset {r.onset} is after offset {offset} ({r.source})"))
            continue
        notes.extend(f"{key}: {text}" for text in r.meta.get("repairs", []))
        intervals.append(Interval(dataset, r.subject, video_of(r), r.onset, offset, type_of(r), r.apex, r.aus,
                                  emotion_of(r), r.clip_id, r.source, meta))
    return intervals, excluded, notes


def samm_lv_intervals(annotation: Path, micro_sheet: Path | None = None) -> GroundTruth:
    """SAMM-LV intervals; with ``micro_sheet`` (SAMM_Micro_FACS_Codes_v2) the micro intervals get the sheet's
    estimated emotion, joined by Filename."""
    from microexp.data import samm, samm_lv

    rows = samm_lv.read_annotation(Path(annotation))
    emotion: dict[str, str] = {}
    if micro_sheet is not None:
        emotion = {r.clip_id: r.emotion for r in samm.read_annotation(Path(micro_sheet))}
    unjoined = []
    if micro_sheet is not None:
        unjoined = [f"samm_lv {r.clip_id} ({r.source}): no row with Filename {r.clip_id.split('@')[0]} in "
                    f"{Path(micro_sheet).name}" for r in rows
                    if samm_lv.row_type(r) == "micro" and r.clip_id.split("@")[0] not in emotion]
    ivs, exc, notes = _from_rows(
        "samm_lv", rows, lambda r: r.meta["video"], samm_lv.row_type,
        lambda r: emotion.get(r.clip_id.split("@")[0], "") if samm_lv.row_type(r) == "micro" else "")
    return GroundTruth(ivs, exc, unjoined, notes + overlaps(ivs))


def casme_sq_intervals(annotation: Path) -> GroundTruth:
    """CAS(ME)^2 intervals; the video is the rawpic folder (``s15/15_0401girlcrashing``)."""
    from microexp.data import casme_sq

    ann = casme_sq.read_annotation(Path(annotation))

    def video(r: Any) -> str:
        if "rawpic_folder" in r.meta:
            return str(r.meta["rawpic_folder"])
        code = ann.code_of.get(r.meta["video"]) or casme_sq.VIDEO_CODE.get(r.meta["video"], r.meta["video"])
        return f"{r.subject}/{r.subject[1:]}_{code}{casme_sq.VIDEO_NAME.get(code, '')}"

    ivs, exc, notes = _from_rows("casme_sq", ann.rows, video, lambda r: r.meta["type"], lambda r: r.emotion)
    return GroundTruth(ivs, exc, [], notes + overlaps(ivs))


def casme3_intervals(annotation: Path, label_file: Path | None = None) -> GroundTruth:
    """CAS(ME)^3 Part A macro + micro intervals; micro emotions from the ME label file when given."""
    from microexp.data import casme3

    rows = casme3.read_macro_micro(Path(annotation))
    emotion: dict[tuple[str, str], str] = {}
    if label_file is not None:
        emotion = {(r.subject, r.clip_id): r.emotion for r in casme3.read_annotation(Path(label_file))}
    unjoined = []
    if label_file is not None:
        unjoined = [f"casme3 {r.subject}/{r.clip_id} ({r.source}): no micro-expression with this video and onset "
                    f"in {Path(label_file).name}" for r in rows
                    if r.emotion == "micro" and (r.subject, r.clip_id) not in emotion]
    ivs, exc, notes = _from_rows(
        "casme3", rows, lambda r: f"{r.subject}/{r.meta['video']}", lambda r: r.emotion,
        lambda r: emotion.get((r.subject, r.clip_id), "") if r.emotion == "micro" else "")
    return GroundTruth(ivs, exc, unjoined, notes + overlaps(ivs))


def check_dataset(dataset: str) -> str:
    if dataset not in FPS:
        raise ConfigError(f"spotting dataset {dataset!r} unknown; known: {', '.join(DATASETS)}")
    return dataset
