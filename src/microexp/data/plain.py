"""The plain layout written by ``microexp synth``: ``ROOT/<subject>/<clip>/frame_0001.png`` + ``ROOT/annotations.csv``.

``annotations.csv`` columns: ``subject, clip, emotion, onset, apex, offset`` (frame numbers as in the file names)
and optionally ``fps`` and ``aus``. Extra columns are kept in ``ClipRecord.meta``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from microexp.data.frames import list_frames
from microexp.data.records import ClipRecord, Exclusion
from microexp.errors import AnnotationError, DataError

ANNOTATION_FILE = "annotations.csv"
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


def load_plain(root: Path, annotation: Path | None = None,
               dataset: str = "plain") -> tuple[list[ClipRecord], list[Exclusion]]:
    """Read a plain-layout tree. Every problem raises an error that names the file, row or folder."""
    root = check_root(root)
    ann = Path(annotation) if annotation else root / ANNOTATION_FILE
    if not ann.exists():
        if not any(root.iterdir()):
            raise DataError(f"{root}: empty folder (no {ANNOTATION_FILE}, no clip folders)")
        raise DataError(f"{ann}: annotation file not found (the plain layout needs {ANNOTATION_FILE} at its root)")
    try:
        table = pd.read_csv(ann, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"cannot parse CSV ({exc})", file=ann) from None
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise AnnotationError(f"missing column(s) {missing}; found {list(table.columns)}", file=ann)
    if table.empty:
        raise DataError(f"{ann}: no annotation rows")
    records: list[ClipRecord] = []
    seen: dict[tuple[str, str], int] = {}
    for i, row in enumerate(table.to_dict("records")):
        line = i + 2  # header is line 1
        subject, clip = str(row["subject"]).strip(), str(row["clip"]).strip()
        if (subject, clip) in seen:
            raise AnnotationError(f"duplicate clip {subject}/{clip} (first on row {seen[subject, clip]})",
                                  file=ann, row=line, column="clip")
        seen[subject, clip] = line
        folder = root / subject / clip
        if not folder.is_dir():
            raise DataError(f"{ann} row {line}: clip folder {folder} does not exist")
        frames, numbers = list_frames(folder)
        if not frames:
            raise DataError(f"{folder}: clip folder has no frames")
        onset, apex, offset = (_int_cell(row[c], ann, line, c) for c in ("onset", "apex", "offset"))
        for name, value in (("onset", onset), ("apex", apex), ("offset", offset)):
            if value not in numbers:
                raise AnnotationError(f"{name} frame {value} is not among the clip's frames "
                                      f"{numbers[0]}..{numbers[-1]}", file=ann, row=line, column=name)
        fps = float(row["fps"]) if str(row.get("fps", "")).strip() else 30.0
        extra = {k: v for k, v in row.items() if k not in REQUIRED and k not in ("fps", "aus")}
        records.append(ClipRecord(dataset=dataset, subject=subject, clip_id=clip, emotion=str(row["emotion"]).strip(),
                                  frames=frames, frame_numbers=numbers, onset=onset, apex=apex, offset=offset,
                                  fps=fps, aus=str(row.get("aus", "")), source=f"{ann}:{line}", meta=extra))
    return records, []
