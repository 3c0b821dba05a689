"""SAMM micro-expression clips (Davison et al., TAFFC 2016/2018).

Layout::

    ROOT/SAMM_Micro_FACS_Codes_v2.xlsx          (or SAMM_20181215_Micro_FACS_Codes_v2.xlsx, a .csv export)
    ROOT/006/006_1_2/006_05562.jpg …            (the SAMM folder; a cropped copy SAMM_CROP/… has the same tree)

``root`` may be the ``SAMM`` folder itself, or a folder containing ``SAMM`` (or ``SAMM_CROP`` /
``SAMM_cropped``; ``SAMM`` is preferred when both exist — point at the cropped tree to use it). The annotation
file is looked for in the tree, its parent and the root. Each clip folder starts at its onset frame; frame
files are ``<subject>_<frame:05d>.jpg`` with the absolute frame index. ``ClipRecord.frames`` is the whole
folder in numeric order. 200 fps, grayscale.

The sheet ``MICRO_ONLY`` starts with a 13-row notes block; the header (row 14) is located by its column names,
so other versions with a different number of note rows also load. Subjects are text ``'006'`` (or int ``6``);
the ``Duration`` formula column is not used; AU cells keep their text (trailing spaces stripped). Known errors
repaired and recorded in ``meta["repairs"]``: apex outside onset..offset (``028_4_1``, ``032_3_1``) -> middle
frame.

The long-video release (SAMM-LV) is a separate dataset, ``samm_lv`` (:mod:`microexp.data.samm_lv`): its frame
numbers differ from the micro-clip release and the two are never mixed.
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
    sheet_names,
    subdirs,
    subject_number,
    two_level_folders,
)
from microexp.data.classes import ClassProtocol
from microexp.data.objective import objective_protocols
from microexp.data.records import ClipRecord, Exclusion
from microexp.data.registry import DatasetSpec, register_dataset
from microexp.errors import AnnotationError

NAME = "samm"
FPS = 200.0
SHEET = "MICRO_ONLY"
TREES = ("SAMM", "SAMM_CROP", "SAMM_cropped", "SAMM_CROPPED")
ANNOTATION_PATTERNS = ("SAMM_Micro_FACS_Codes_v2.xlsx", "*SAMM*Micro_FACS_Codes*.xlsx", "*Micro_FACS_Codes*.xls*",
                       "*Micro_FACS_Codes*.csv")
COLUMNS = {
    "subject": ("Subject",),
    "filename": ("Filename",),
    "inducement": ("Inducement Code",),
    "onset": ("Onset Frame", "OnsetFrame", "Onset"),
    "apex": ("Apex Frame", "ApexFrame", "Apex"),
    "offset": ("Offset Frame", "OffsetFrame", "Offset"),
    "aus": ("Action Units", "AU"),
    "emotion": ("Estimated Emotion", "Emotion"),
    "objective": ("Objective Classes", "Objective Class"),
    "notes": ("Notes",),
}
REQUIRED = ("subject", "filename", "onset", "apex", "offset", "emotion")
LABELS = ("anger", "contempt", "disgust", "fear", "happiness", "other", "sadness", "surprise")
SUBJECT = r"\d{3}"
looks_like_tree = looks_like_subject_tree(SUBJECT)


def subject_folder(cell: object, file: Path, row: int) -> str:
    return subject_number(cell, file, row, "{:03d}")


def read_annotation(path: Path) -> list[Row]:
    """Rows of ``SAMM_Micro_FACS_Codes_v2`` (sheet ``MICRO_ONLY`` or the first sheet), in file order."""
    path = Path(path)
    names = sheet_names(path)
    sheet = SHEET if any(n.upper() == SHEET for n in names) else 0
    table = locate_header(read_sheet(path, sheet), path, COLUMNS, REQUIRED,
                          ("inducement", "aus", "objective", "notes"))
    rows: list[Row] = []
    for line, cells in table.rows:
        clip = cell_text(cells["filename"])
        if not clip:
            raise AnnotationError("empty Filename", file=path, row=line, column="Filename")
        subject = subject_folder(cells["subject"], path, line)
        row = Row(subject=subject, clip_id=clip, emotion=cell_text(cells["emotion"]).lower(),
                  onset=int_cell(cells["onset"], path, line, "Onset Frame"),
                  apex=int_cell(cells["apex"], path, line, "Apex Frame", sentinels={"-1": None, "": None}),
                  offset=int_cell(cells["offset"], path, line, "Offset Frame"),
                  folder=Path(subject) / clip, aus=cell_text(cells.get("aus")), fps=FPS, source=f"{path}:{line}")
        if not row.emotion:
            raise AnnotationError("empty emotion", file=path, row=line, column="Estimated Emotion")
        for key in ("inducement", "objective", "notes"):
            if key in cells and cell_text(cells[key]):
                row.meta[key if key != "objective" else "objective_class"] = cell_text(cells[key])
        fix_apex(row, cell_text(cells["apex"]))
        rows.append(row)
    return checked_rows(rows, path, table.header_row)


def resolve(root: Path, annotation: Path | None) -> tuple[Path, Path]:
    """(frame tree, annotation file) for a user-given root."""
    return resolve_tree(root, annotation, TREES, looks_like_tree, ANNOTATION_PATTERNS,
                        "SAMM coding file (SAMM_Micro_FACS_Codes_v2.xlsx)")


def load(root: Path, annotation: Path | None = None) -> tuple[list[ClipRecord], list[Exclusion]]:
    tree, ann = resolve(root, annotation)
    return build_records(NAME, tree, read_annotation(ann))


def scan(root: Path, annotation: Path | None) -> Scan:
    tree, ann = resolve(root, annotation)
    return Scan(tree, ann, read_annotation(ann), two_level_folders(tree, SUBJECT))


def looks_like_release(folder: Path) -> bool:
    tree = pick_tree(folder, TREES, looks_like_tree)
    return any(re.fullmatch(r"\d{3}_\d+_\d+", c.name) for s in subdirs(tree) for c in subdirs(s))


PROTOCOLS = (
    ClassProtocol(
        "samm-5", ("anger", "contempt", "happiness", "surprise", "other"),
        {"anger": "anger", "contempt": "contempt", "happiness": "happiness", "surprise": "surprise",
         "other": "other", "disgust": None, "fear": None, "sadness": None},
        "SAMM 5-class: anger, contempt, happiness, surprise, other; disgust, fear and sadness dropped (136 clips)."),
    ClassProtocol(
        "samm-7", ("happiness", "surprise", "anger", "fear", "disgust", "contempt", "sadness"),
        {"happiness": "happiness", "surprise": "surprise", "anger": "anger", "fear": "fear", "disgust": "disgust",
         "contempt": "contempt", "sadness": "sadness", "other": None},
        "SAMM 7-class as Joshi 2021 (docs/models.md §2.2): label indices happiness 0, surprise 1, anger 2, "
        "fear 3, disgust 4, contempt 5, sadness 6; other dropped (133 clips)."),
    ClassProtocol(
        "samm-binary", ("positive", "negative"),
        {"happiness": "positive", "anger": "negative", "contempt": "negative", "disgust": "negative",
         "fear": "negative", "sadness": "negative", "surprise": None, "other": None},
        "SAMM binary as Joshi 2021: positive (0) = happiness; negative (1) = anger + contempt + disgust + fear + "
        "sadness; surprise and other dropped (26 positive, 92 negative)."),
    ClassProtocol(
        "samm-3", ("negative", "positive", "surprise"),
        {"anger": "negative", "contempt": "negative", "disgust": "negative", "fear": "negative",
         "sadness": "negative", "happiness": "positive", "surprise": "surprise", "other": None},
        "SAMM with the MEGC2019 3-class mapping: negative = anger + contempt + disgust + fear + sadness; "
        "positive = happiness; surprise; other dropped (92/26/15 = 133 clips, 28 subjects)."),
    ClassProtocol(
        "samm-all", LABELS, {k: k for k in LABELS}, "SAMM all 8 estimated emotions, each its own class (159 clips)."),
    *objective_protocols("samm", "SAMM"),
)

SPEC = register_dataset(DatasetSpec(
    NAME, load, "samm-5", "SAMM micro clips + SAMM_Micro_FACS_Codes_v2.xlsx", protocols=PROTOCOLS, labels=LABELS,
    subject_pattern=SUBJECT, scan=scan, looks_like=looks_like_release, annotation_patterns=ANNOTATION_PATTERNS))
