"""CAS(ME)^3 Part A (Li et al., TPAMI 2022): micro-expressions (dataset ``casme3``) and the macro+micro
annotation (dataset ``casme3_mm``).

Layouts (either works; ``root`` may be the release folder or the tree itself)::

    part_A/data/part_A_split/part_A/spNO.1/a/color/355.jpg …     full Part A: long videos a..m per subject
    Part_A_ME_clip/frame/spNo.1_a_355/355.jpg …                   ME-clip package: one folder per micro-expression

    annotation/partA/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx    (v1 .xls too; looked for under root)

With the full Part A tree a record is the span onset..offset of its video's ``color`` folder (absolute frame
numbers, unpadded); with the ME-clip package it is the whole clip folder. Folder names are matched
case-insensitively (``spNo`` folders vs ``spNO`` labels; one label row has Filename ``J``).

Every cell of the label sheet is text (numbers included) and is coerced. A video may hold several MEs, so the
clip id is ``<Filename>_<Onset>`` (``a_355``), unique per subject. Emotion spellings are lower-cased (the three
``Others`` rows become ``others``). 30 fps.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from microexp.data._common import (
    Row,
    Scan,
    build_records,
    cell_text,
    checked_rows,
    find_file,
    fix_apex,
    int_cell,
    locate_header,
    read_sheet,
    sheet_names,
    subdirs,
)
from microexp.data.classes import ClassProtocol
from microexp.data.records import ClipRecord, Exclusion
from microexp.data.registry import DatasetSpec, register_dataset
from microexp.errors import AnnotationError, ConfigError, DataError

NAME = "casme3"
FPS = 30.0
FULL_TREES = ("part_A/data/part_A_split/part_A", "data/part_A_split/part_A", "part_A_split/part_A", "part_A")
CLIP_TREES = ("Part_A_ME_clip/frame", "frame")
ANNOTATION_DIRS = ("", "annotation/partA", "annotation", "partA", "..", "../annotation/partA")
LABEL_PATTERNS = ("cas(me)3_part_A_ME_label_JpgIndex_v2*.xlsx", "cas(me)3_part_A_ME_label_JpgIndex*.xls*",
                  "*part_A_ME_label*.xls*", "*part_A_ME_label*.csv")
MM_PATTERNS = ("CAS(ME)3_part_A_v2.xls", "CAS(ME)3_part_A_v*.xls*", "CAS(ME)3_part_A*.csv")
COLUMNS = {
    "subject": ("Subject",),
    "filename": ("Filename",),
    "onset": ("Onset",),
    "apex": ("Apex",),
    "offset": ("Offset",),
    "aus": ("AU", "AUs", "Action Units"),
    "objective": ("Objective class", "Objective classes"),
    "emotion": ("emotion", "Estimated Emotion"),
    "type": ("Expression type",),
}
_SUBJECT = re.compile(r"spno\.?(\d+)", re.IGNORECASE)


def _rows(path: Path, table_kind: str) -> list[Row]:
    path = Path(path)
    names = sheet_names(path)
    wanted = "label" if table_kind == "emotion" else "au+emotion"
    sheet = next((n for n in names if n.lower() == wanted), 0)
    required = ("subject", "filename", "onset", "apex", "offset", table_kind)
    table = locate_header(read_sheet(path, sheet), path, COLUMNS, required, ("aus", "objective"))
    rows: list[Row] = []
    for line, cells in table.rows:
        subject, video = cell_text(cells["subject"]), cell_text(cells["filename"])
        m = _SUBJECT.fullmatch(subject)
        if not m:
            raise AnnotationError(f"subject {subject!r} is not spNO.<k>", file=path, row=line, column="Subject")
        if not video:
            raise AnnotationError("empty Filename", file=path, row=line, column="Filename")
        onset = int_cell(cells["onset"], path, line, "Onset")
        label = cell_text(cells[table_kind]).lower()
        if table_kind == "type":
            label = label.split("-")[0]  # Macro-expression -> macro
        row = Row(subject=f"spNO.{int(m.group(1))}", clip_id=f"{video.lower()}_{onset}", emotion=label, onset=onset,
                  apex=int_cell(cells["apex"], path, line, "Apex", sentinels={"": None}),
                  offset=int_cell(cells["offset"], path, line, "Offset"), aus=cell_text(cells.get("aus")), fps=FPS,
                  source=f"{path}:{line}", meta={"video": video})
        if not label:
            raise AnnotationError(f"empty {table_kind}", file=path, row=line, column=table_kind)
        if cell_text(cells.get("objective")):
            row.meta["objective_class"] = cell_text(cells["objective"])
        fix_apex(row, cell_text(cells["apex"]))
        rows.append(row)
    return checked_rows(rows, path, table.header_row, column="Onset")


def read_annotation(path: Path) -> list[Row]:
    """Micro-expression rows of ``cas(me)3_part_A_ME_label_JpgIndex_v*`` (sheet ``label`` or the first)."""
    return _rows(path, "emotion")


def read_macro_micro(path: Path) -> list[Row]:
    """Rows of ``CAS(ME)3_part_A_v2.xls`` sheet ``AU+Emotion``; ``emotion`` is the expression type macro/micro."""
    return _rows(path, "type")


def _ci_child(folder: Path, name: str) -> Path | None:
    """Child folder matched case-insensitively (``spNo.1`` for ``spNO.1``)."""
    exact = folder / name
    if exact.is_dir():
        return exact
    return next((p for p in subdirs(folder) if p.name.lower() == name.lower()), None)


def _is_full(folder: Path) -> bool:
    return any(_SUBJECT.fullmatch(p.name) for p in subdirs(folder))


def _is_clips(folder: Path) -> bool:
    return any(re.fullmatch(r"spno\.?\d+_\w+_\d+", p.name, re.IGNORECASE) for p in subdirs(folder))


def find_tree(root: Path) -> tuple[Path, str]:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset root {root} does not exist or is not a folder")
    for cand in ("", *FULL_TREES):
        if _is_full(root / cand):
            return root / cand, "full"
    for cand in ("", *CLIP_TREES):
        if _is_clips(root / cand):
            return root / cand, "clips"
    return root, "full"


def place(rows: list[Row], tree: Path, kind: str) -> list[Row]:
    for row in rows:
        video = row.meta["video"]
        if kind == "full":
            subj = _ci_child(tree, row.subject)
            vid = _ci_child(subj, video) if subj else None
            row.folder = (vid.relative_to(tree) if vid else Path(row.subject) / video.lower()) / "color"
            row.span = True
        else:
            name = f"{row.subject}_{video}_{row.onset}"
            found = _ci_child(tree, name)
            row.folder = found.relative_to(tree) if found else Path(name)
    return rows


def find_annotation(root: Path, tree: Path, patterns: tuple[str, ...]) -> Path | None:
    """The first file matching ``patterns`` in the release's annotation folders (None when there is none)."""
    folders = [root / d for d in ANNOTATION_DIRS] + [tree.parent, tree.parent.parent]
    return find_file(folders, patterns)


def load(root: Path, annotation: Path | None = None) -> tuple[list[ClipRecord], list[Exclusion]]:
    tree, kind = find_tree(root)
    ann = annotation or find_annotation(Path(root), tree, LABEL_PATTERNS)
    if ann is None:
        raise DataError(f"{root}: no cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx found (looked in the root and "
                        "annotation/partA); pass --annotation FILE")
    return build_records(NAME, tree, place(read_annotation(Path(ann)), tree, kind))


def load_macro_micro(root: Path, annotation: Path | None = None) -> tuple[list[ClipRecord], list[Exclusion]]:
    tree, kind = find_tree(root)
    if kind != "full":
        raise DataError(f"{root}: macro-expressions need the full Part A tree (spNO.<k>/<video>/color/)")
    ann = annotation or find_annotation(Path(root), tree, MM_PATTERNS)
    if ann is None:
        raise DataError(f"{root}: no CAS(ME)3_part_A_v2.xls found; pass --annotation FILE")
    return build_records("casme3_mm", tree, place(read_macro_micro(Path(ann)), tree, kind))


def make_scan(mm: bool) -> Callable[[Path, Path | None], Scan]:
    def scan(root: Path, annotation: Path | None) -> Scan:
        tree, kind = find_tree(root)
        patterns = MM_PATTERNS if mm else LABEL_PATTERNS
        ann = annotation or find_annotation(Path(root), tree, patterns)
        if ann is None:
            raise ConfigError(f"{root}: no CAS(ME)^3 annotation found (annotation/partA/{patterns[0]}); "
                              "pass --annotation FILE")
        rows = (read_macro_micro if mm else read_annotation)(Path(ann))
        place(rows, tree, kind)
        if kind == "full":
            folders = [(v / "color").relative_to(tree) for s in subdirs(tree) for v in subdirs(s)
                       if (v / "color").is_dir()]
        else:
            folders = [p.relative_to(tree) for p in subdirs(tree)]
        return Scan(tree, Path(ann), rows, folders)

    return scan


def looks_like_release(folder: Path) -> bool:
    tree, _ = find_tree(folder)
    return _is_full(tree) or _is_clips(tree)


_SEVEN = ("disgust", "surprise", "others", "fear", "anger", "sad", "happy")
_FOUR = {"disgust": "negative", "fear": "negative", "anger": "negative", "sad": "negative", "happy": "positive",
         "surprise": "surprise", "others": "others"}
PROTOCOLS = (
    ClassProtocol(
        "casme3-7", _SEVEN, {e: e for e in _SEVEN},
        "CAS(ME)^3 Part A 7-class: disgust, surprise, others, fear, anger, sad, happy (860 rows of the v2 label "
        "file; 'Others' spelled either way)."),
    ClassProtocol(
        "casme3-4", ("negative", "positive", "surprise", "others"), _FOUR,
        "CAS(ME)^3 4-class: negative = disgust + fear + anger + sad (457); positive = happy (55); surprise (187); "
        "others (161)."),
    ClassProtocol(
        "casme3-3", ("negative", "positive", "surprise"), dict(_FOUR, others=None),
        "CAS(ME)^3 3-class: the 4-class mapping without others (699 clips)."),
)
MM_PROTOCOLS = (ClassProtocol(
    "casme3_mm-type", ("macro", "micro"), {"macro": "macro", "micro": "micro"},
    "CAS(ME)^3 Part A expression type, macro vs micro (CAS(ME)3_part_A_v2.xls)."),)

SPEC = register_dataset(DatasetSpec(
    NAME, load, "casme3-4", "CAS(ME)^3 Part A micro-expressions + ME label file", protocols=PROTOCOLS,
    labels=_SEVEN, subject_pattern=r"spno\.?\d+", scan=make_scan(False), looks_like=looks_like_release,
    annotation_patterns=LABEL_PATTERNS))
MM_SPEC = register_dataset(DatasetSpec(
    "casme3_mm", load_macro_micro, "casme3_mm-type",
    "CAS(ME)^3 Part A macro + micro intervals (CAS(ME)3_part_A_v2.xls), label = type", protocols=MM_PROTOCOLS,
    labels=("macro", "micro"), subject_pattern=r"spno\.?\d+", scan=make_scan(True), looks_like=looks_like_release,
    annotation_patterns=MM_PATTERNS))
