"""SAMM Long Videos (SAMM-LV): macro- and micro-expression intervals in 147 long videos of 30 subjects.

Layout::

    ROOT/SAMM_LongVideos_V2_Release.xlsx         (V1/V2/V3, or a .csv export of it)
    ROOT/SAMM_longvideos/006_1/006_1_0001.jpg …  (frames numbered from 0001, 4-digit padded)

``root`` is the folder holding ``SAMM_longvideos`` (or that folder itself). The annotation starts with a notes
block; the header (``Subject, Filename, Inducement Code, Onset, Apex, Offset, Duration, Type, Action Units,
Notes``) is located by its names. Each row is a span of a long video: the video folder is the ``Filename``
without its last ``_k`` part (``006_1_2`` -> ``006_1``) and ``ClipRecord.frames`` holds that video's frames
onset..offset only (absolute frame numbers of the long video). A repeated ``Filename`` (V2: ``037_4_1``) gets ``@<onset>`` appended to its clip id. Apex ``-1`` means "not annotated" (the middle
frame is used and recorded in ``meta["repairs"]``).

SAMM-LV has no emotion column: ``ClipRecord.emotion`` is the expression type, ``macro`` or ``micro``. The frame
numbers differ from the micro-clip release (``006_1_2`` onset 5562 there, 3562 here); this loader is never mixed
with :mod:`microexp.data.samm`.
"""

from __future__ import annotations

import re
from pathlib import Path

from microexp.data._common import (
    Row,
    Scan,
    build_records,
    cell_text,
    checked_rows,
    fix_apex,
    int_cell,
    locate_header,
    looks_like_subject_tree,
    pick_tree,
    read_sheet,
    resolve_tree,
    subdirs,
)
from microexp.data.classes import ClassProtocol
from microexp.data.records import ClipRecord, Exclusion
from microexp.data.registry import DatasetSpec, register_dataset
from microexp.errors import AnnotationError

NAME = "samm_lv"
FPS = 200.0
TREES = ("SAMM_longvideos", "SAMM_LongVideos", "SAMM_longvideos/SAMM_longvideos")
ANNOTATION_PATTERNS = ("SAMM_LongVideos_V*_Release.xlsx", "SAMM_LongVideos*.xls*", "SAMM_LongVideos*.csv")
COLUMNS = {
    "subject": ("Subject",),
    "filename": ("Filename",),
    "inducement": ("Inducement Code",),
    "onset": ("Onset", "Onset Frame"),
    "apex": ("Apex", "Apex Frame"),
    "offset": ("Offset", "Offset Frame"),
    "type": ("Type",),
    "aus": ("Action Units", "AU"),
    "notes": ("Notes",),
}
REQUIRED = ("subject", "filename", "onset", "apex", "offset", "type")
SUBJECT = r"\d{3}_\d+"  # the long-video folders (006_1) stand where subject folders are
looks_like_tree = looks_like_subject_tree(SUBJECT)


def expression_type(text: str, file: Path, row: int) -> str:
    t = text.lower()
    if t.startswith("macro"):
        return "macro"
    if t.startswith("micro"):
        return "micro"
    raise AnnotationError(f"unknown expression type {text!r} (expected Macro or Micro - 1/2)", file=file, row=row,
                          column="Type")


def read_annotation(path: Path) -> list[Row]:
    path = Path(path)
    table = locate_header(read_sheet(path, 0), path, COLUMNS, REQUIRED, ("inducement", "aus", "notes"))
    rows: list[Row] = []
    for line, cells in table.rows:
        clip = cell_text(cells["filename"])
        if not clip:
            raise AnnotationError("empty Filename", file=path, row=line, column="Filename")
        subj = cell_text(cells["subject"])
        if not subj.isdigit():
            raise AnnotationError(f"subject {subj!r} is not a subject number", file=path, row=line, column="Subject")
        video = clip.rsplit("_", 1)[0]
        kind = expression_type(cell_text(cells["type"]), path, line)
        row = Row(subject=f"{int(subj):03d}", clip_id=clip,
                  emotion=kind,  # the samm_lv-type class protocol's label; spotting reads row_type()
                  onset=int_cell(cells["onset"], path, line, "Onset"),
                  apex=int_cell(cells["apex"], path, line, "Apex", sentinels={"-1": None, "": None}),
                  offset=int_cell(cells["offset"], path, line, "Offset"),
                  folder=Path(video), aus=cell_text(cells.get("aus")), fps=FPS, source=f"{path}:{line}", span=True,
                  meta={"video": video, "type": cell_text(cells["type"]), "expression_type": kind})
        if "notes" in cells and cell_text(cells["notes"]):
            row.meta["notes"] = cell_text(cells["notes"])
        fix_apex(row, cell_text(cells["apex"]))
        rows.append(row)
    _dedupe(rows)
    return checked_rows(rows, path, table.header_row)


def row_type(row: Row) -> str:
    """The expression type of a row, ``macro`` or ``micro`` (also its ``emotion``, for the class protocol)."""
    return str(row.meta.get("expression_type") or expression_type(str(row.meta.get("type", "")), Path(row.source),
                                                                  0))


def _dedupe(rows: list[Row]) -> None:
    """V2 lists ``037_4_1`` twice (a micro and a macro interval): a repeated Filename gets ``@<onset>``
    appended to its clip id, recorded as a repair."""
    first: dict[tuple[str, str], Row] = {}
    for row in rows:
        k = (row.subject, row.clip_id)
        if k in first:
            new = f"{row.clip_id}@{row.onset}"
            row.repair(f"Filename {row.clip_id} repeats {first[k].source}; clip id {new} used")
            row.clip_id = new
        else:
            first[k] = row


def resolve(root: Path, annotation: Path | None) -> tuple[Path, Path]:
    """(frame tree, annotation file) for a user-given root."""
    return resolve_tree(root, annotation, TREES, looks_like_tree, ANNOTATION_PATTERNS,
                        "SAMM_LongVideos_V*_Release annotation")


def load(root: Path, annotation: Path | None = None) -> tuple[list[ClipRecord], list[Exclusion]]:
    tree, ann = resolve(root, annotation)
    return build_records(NAME, tree, read_annotation(ann))


def scan(root: Path, annotation: Path | None) -> Scan:
    tree, ann = resolve(root, annotation)
    folders = [p.relative_to(tree) for p in subdirs(tree) if re.fullmatch(SUBJECT, p.name)]
    return Scan(tree, ann, read_annotation(ann), folders)


def looks_like_release(folder: Path) -> bool:
    return looks_like_tree(pick_tree(folder, TREES, looks_like_tree))


PROTOCOLS = (ClassProtocol(
    "samm_lv-type", ("macro", "micro"), {"macro": "macro", "micro": "micro"},
    "SAMM-LV expression type: macro vs micro (the release has no emotion labels)."),)

SPEC = register_dataset(DatasetSpec(
    NAME, load, "samm_lv-type", "SAMM Long Videos: macro/micro intervals of SAMM_longvideos (spans of long videos)",
    protocols=PROTOCOLS, labels=("macro", "micro"), subject_pattern=SUBJECT, scan=scan,
    looks_like=looks_like_release, annotation_patterns=ANNOTATION_PATTERNS))
