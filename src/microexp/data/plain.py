"""The plain layout written by ``microexp synth``: ``ROOT/<subject>/<clip>/frame_0001.png`` + ``ROOT/annotations.csv``.

``annotations.csv`` columns: ``subject, clip, emotion, onset, apex, offset`` (frame numbers as in the file names)
and optionally ``fps`` and ``aus``. Extra columns are kept in ``ClipRecord.meta``.

The layout has no fixed label set: every annotated label is a class. To have a typo (``joyful`` for ``joy``)
refused instead of becoming a class of its own, declare the labels in ``ROOT/labels.txt`` (one a line, in class
order) or pass them (``load_dataset(..., labels=...)``, ``microexp data check --labels``); ``evaluate`` reads
``labels.txt`` through the loader. A declared label without a clip is refused too.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from microexp.data._common import Row, Scan, two_level_folders
from microexp.data.frames import list_frames, sequence_defect
from microexp.data.records import ClipRecord, Exclusion
from microexp.data.registry import DatasetSpec, register_dataset
from microexp.errors import AnnotationError, DataError

ANNOTATION_FILE = "annotations.csv"
LABELS_FILE = "labels.txt"  # optional: the labels the annotation may use, one a line, in class order
REQUIRED = ("subject", "clip", "emotion", "onset", "apex", "offset")


def check_root(root: Path) -> Path:
    root = Path(root)
    if not root.exists():
        raise DataError(f"dataset root {root} does not exist")
    if not root.is_dir():
        raise DataError(f"dataset root {root} is not a folder")
    return root


def _int_cell(value: object, file: Path, row: int, column: str) -> int:
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise AnnotationError(f"{value!r} is not a frame number", file=file, row=row, column=column) from None
    if f != f or f != int(f):
        raise AnnotationError(f"{value!r} is not a frame number", file=file, row=row, column=column)
    return int(f)


def _annotation(root: Path, annotation: Path | None) -> Path:
    root = check_root(root)
    ann = Path(annotation) if annotation else root / ANNOTATION_FILE
    if not ann.exists():
        if not any(root.iterdir()):
            raise DataError(f"{root}: empty folder (no {ANNOTATION_FILE}, no clip folders)")
        raise DataError(f"{ann}: annotation file not found (the plain layout needs {ANNOTATION_FILE} at its root)")
    return ann


def read_annotation(ann: Path) -> list[Row]:
    """The rows of a plain ``annotations.csv`` (folder ``<subject>/<clip>``); malformed cells raise naming the row."""
    try:
        table = pd.read_csv(ann, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"cannot parse CSV ({exc})", file=ann) from None
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise AnnotationError(f"missing column(s) {missing}; found {list(table.columns)}", file=ann)
    if table.empty:
        raise DataError(f"{ann}: no annotation rows")
    rows: list[Row] = []
    seen: dict[tuple[str, str], int] = {}
    for i, row in enumerate(table.to_dict("records")):
        line = i + 2  # header is line 1
        subject, clip = str(row["subject"]).strip(), str(row["clip"]).strip()
        if (subject, clip) in seen:
            raise AnnotationError(f"duplicate clip {subject}/{clip} (first on row {seen[subject, clip]})",
                                  file=ann, row=line, column="clip")
        seen[subject, clip] = line
        onset, apex, offset = (_int_cell(row[c], ann, line, c) for c in ("onset", "apex", "offset"))
        fps = float(row["fps"]) if str(row.get("fps", "")).strip() else 30.0
        extra = {k: v for k, v in row.items() if k not in REQUIRED and k not in ("fps", "aus")}
        rows.append(Row(subject, clip, str(row["emotion"]).strip(), onset, apex, offset, folder=Path(subject) / clip,
                        aus=str(row.get("aus", "")), fps=fps, source=f"{ann}:{line}", meta=extra))
    return rows


def load_plain(root: Path, annotation: Path | None = None,
               dataset: str = "plain") -> tuple[list[ClipRecord], list[Exclusion]]:
    """Read a plain-layout tree. Every problem raises an error that names the file, row or folder, except a clip
    whose frames are not one sequence (many frames missing inside it, a frame of another size): it is excluded with
    the reason, as the release loaders do; a few missing frames are repaired and recorded, as there."""
    root = check_root(root)
    ann = _annotation(root, annotation)
    records: list[ClipRecord] = []
    excluded: list[Exclusion] = []
    for row in read_annotation(ann):
        line = int(row.source.rsplit(":", 1)[1])
        folder = root / row.subject / row.clip_id
        if not folder.is_dir():
            raise DataError(f"{ann} row {line}: clip folder {folder} does not exist")
        frames, numbers = list_frames(folder)
        if not frames:
            raise DataError(f"{folder}: clip folder has no frames")
        frames, numbers, repair, defect = sequence_defect(frames, numbers)  # before the key frames
        if defect:
            excluded.append(Exclusion(f"{dataset}/{row.subject}/{row.clip_id}",
                                      f"{defect[0]}: {folder}: {defect[1]} ({row.source})"))
            continue
        if repair:
            row.repair(repair)
        for name, value in (("onset", row.onset), ("apex", row.apex), ("offset", row.offset)):
            if value not in numbers:
                raise AnnotationError(f"{name} frame {value} is not among the clip's frames "
                                      f"{numbers[0]}..{numbers[-1]}", file=ann, row=line, column=name)
        records.append(ClipRecord(dataset=dataset, subject=row.subject, clip_id=row.clip_id, emotion=row.emotion,
                                  frames=frames, frame_numbers=numbers, onset=row.onset, apex=row.apex,
                                  offset=row.offset, fps=row.fps, aus=row.aus, source=row.source, meta=row.meta))
    return records, excluded


def scan(root: Path, annotation: Path | None) -> Scan:
    ann = _annotation(root, annotation)
    return Scan(Path(root), ann, read_annotation(ann), two_level_folders(Path(root), r".+"))


def declared_labels(root: Path) -> tuple[str, ...] | None:
    """The labels declared in ``ROOT/labels.txt`` (one a line, ``#`` comments), or None when there is no such file."""
    path = Path(root) / LABELS_FILE
    if not path.is_file():
        return None
    labels = [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    labels = [x for x in labels if x]
    if not labels:
        raise DataError(f"{path}: declares no labels")
    return tuple(dict.fromkeys(labels))


def looks_like_release(folder: Path) -> bool:
    return (Path(folder) / ANNOTATION_FILE).is_file()


def _plain(root: Path, annotation: Path | None) -> tuple[list[ClipRecord], list[Exclusion]]:
    return load_plain(root, annotation, dataset="plain")


def _synthetic(root: Path, annotation: Path | None) -> tuple[list[ClipRecord], list[Exclusion]]:
    return load_plain(root, annotation, dataset="synthetic")


# the plain layout has no fixed labels: every annotated label is a class unless the user declares them
# (ROOT/labels.txt, or labels= / --labels), so that a typo such as 'joyful' is an error, not a fifth class
PLAIN = register_dataset(DatasetSpec(
    "plain", _plain, None, "plain layout: ROOT/<subject>/<clip>/frame_0001.png + annotations.csv [+ labels.txt]",
    scan=scan, looks_like=looks_like_release, family="plain", declared_labels=declared_labels))
SYNTHETIC = register_dataset(DatasetSpec(
    "synthetic", _synthetic, None, "a tree written by `microexp synth` (plain layout)", scan=scan,
    looks_like=looks_like_release, family="plain", declared_labels=declared_labels))
