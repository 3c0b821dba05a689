"""CASME II (Yan et al., PLOS ONE 2014).

Layout (as delivered; nothing to rename)::

    ROOT/CASME2-coding-20190701.xlsx           (or -20140508 / -20230315 .xlsx, CASME2_label_Ver_2.xls, a .csv export)
    ROOT/Cropped/sub01/EP02_01f/reg_img46.jpg … reg_img86.jpg      (also Cropped/Cropped/…)
    ROOT/CASME2_RAW_selected/sub01/EP02_01f/img46.jpg …

``root`` may be the release folder (``Cropped`` is used when present, else ``CASME2_RAW_selected``, else
``CASME2_RAW/CASME2-RAW``) or one of those trees directly to choose it. The annotation file is looked for in the
tree, its parent and the release root unless given (the newest date-stamped ``CASME2-coding-*.xlsx`` first). Each clip folder holds frames onset..offset named with the
absolute, unpadded frame index; ``ClipRecord.frames`` is the whole folder in numeric order. 200 fps.

The release's ``CASME2-ObjectiveClasses.xlsx`` (``Subject, Filename, Objective Class``), found beside the coding file
or the tree, gives each clip's objective class (``meta["objective_class"]``, the classes MEGC 2018 used) in place
of the coding file's own ``Objective Classes`` column (which some copies carry); a clip it does not list has none.

Quirks handled: ``Subject`` as text ``'01'`` or int ``1``; ``/`` apex (middle frame used, recorded in
``meta["repairs"]``); AU cells as int or text; blank-named columns; stray non-image files in clip folders.
"""

from __future__ import annotations

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
    looks_like_subject_tree,
    pick_tree,
    read_sheet,
    resolve_tree,
    subject_number,
    two_level_folders,
)
from microexp.data.classes import ClassProtocol
from microexp.data.objective import objective_protocols
from microexp.data.records import ClipRecord, Exclusion
from microexp.data.registry import DatasetSpec, register_dataset
from microexp.errors import AnnotationError

NAME = "casme2"
FPS = 200.0
TREES = ("Cropped", "Cropped-updated/Cropped", "CASME2_RAW_selected", "CASME2_RAW/CASME2-RAW", "CASME2-RAW")
ANNOTATION_PATTERNS = ("CASME2-coding-*.xlsx", "CASME2-coding*.xls*", "CASME2_label_Ver_2.xls", "CASME2*coding*.csv",
                       "CASME2*.xls*")
COLUMNS = {
    "subject": ("Subject",),
    "filename": ("Filename", "File name"),
    "onset": ("OnsetFrame", "Onset Frame", "OnsetF", "Onset"),
    "apex": ("ApexFrame", "Apex Frame", "ApexF", "Apex"),
    "offset": ("OffsetFrame", "Offset Frame", "OffsetF", "Offset"),
    "aus": ("Action Units", "AU", "AUs"),
    "emotion": ("Estimated Emotion", "Emotion"),
    "objective": ("Objective Classes", "Objective Class"),
}
REQUIRED = ("subject", "filename", "onset", "apex", "offset", "emotion")
#: the release's objective-class file (MEGC 2018's CASME II classes)
OBJECTIVE_FILE = "CASME2-ObjectiveClasses.xlsx"
OBJECTIVE_COLUMNS = {"subject": ("Subject",), "filename": ("Filename", "File name"),
                     "objective": ("Objective Class", "Objective Classes")}
LABELS = ("happiness", "disgust", "repression", "surprise", "others", "sadness", "fear")
SUBJECT = r"sub\d+"
looks_like_tree = looks_like_subject_tree(SUBJECT)


def subject_folder(cell: object, file: Path, row: int) -> str:
    return subject_number(cell, file, row, "sub{:02d}")


def read_annotation(path: Path) -> list[Row]:
    """Rows of a CASME II coding file (any circulating version), in file order."""
    path = Path(path)
    table = locate_header(read_sheet(path, 0), path, COLUMNS, REQUIRED, ("aus", "objective"))
    rows: list[Row] = []
    for line, cells in table.rows:
        clip = cell_text(cells["filename"])
        if not clip:
            raise AnnotationError("empty Filename", file=path, row=line, column="Filename")
        subject = subject_folder(cells["subject"], path, line)
        apex_raw = cell_text(cells["apex"])
        row = Row(subject=subject, clip_id=clip, emotion=cell_text(cells["emotion"]).lower(),
                  onset=int_cell(cells["onset"], path, line, "OnsetFrame"),
                  apex=int_cell(cells["apex"], path, line, "ApexFrame", sentinels={"/": None, "": None}),
                  offset=int_cell(cells["offset"], path, line, "OffsetFrame"),
                  folder=Path(subject) / clip, aus=cell_text(cells.get("aus")), fps=FPS, source=f"{path}:{line}")
        if not row.emotion:
            raise AnnotationError("empty emotion", file=path, row=line, column="Estimated Emotion")
        if "objective" in cells and cell_text(cells["objective"]):
            row.meta["objective_class"] = cell_text(cells["objective"])
        fix_apex(row, apex_raw)
        rows.append(row)
    return checked_rows(rows, path, table.header_row)


def read_objective_classes(path: Path) -> dict[tuple[str, str], str]:
    """(subject folder, clip) -> objective class (``1``..``7``) of the release's ``CASME2-ObjectiveClasses.xlsx``."""
    path = Path(path)
    table = locate_header(read_sheet(path, 0), path, OBJECTIVE_COLUMNS, ("subject", "filename", "objective"))
    out: dict[tuple[str, str], str] = {}
    for line, cells in table.rows:
        clip, value = cell_text(cells["filename"]), cell_text(cells["objective"])
        if value.endswith(".0"):
            value = value[:-2]
        if not clip or value.upper() not in {*map(str, range(1, 8)), "I", "II", "III", "IV", "V", "VI", "VII"}:
            raise AnnotationError(f"expected a Filename and an objective class 1-7, got {clip!r} and {value!r}",
                                  file=path, row=line)
        key = (subject_folder(cells["subject"], path, line), clip)
        if key in out:
            raise AnnotationError(f"{key[0]}/{clip} listed twice", file=path, row=line)
        out[key] = value
    return out


def with_objective_file(rows: list[Row], folders: list[Path]) -> list[Row]:
    """The rows with the objective classes of the release's ``CASME2-ObjectiveClasses.xlsx`` when one lies in
    ``folders`` (it replaces the coding file's own column; a clip it does not list gets none)."""
    found = find_file(folders, (OBJECTIVE_FILE,))
    if found is None:
        return rows
    classes = read_objective_classes(found)
    for r in rows:
        r.meta.pop("objective_class", None)
        if (r.subject, r.clip_id) in classes:
            r.meta["objective_class"] = classes[r.subject, r.clip_id]
        r.meta["objective_source"] = found.name
    return rows


def _rows(tree: Path, ann: Path) -> list[Row]:
    return with_objective_file(read_annotation(ann), [ann.parent, tree, tree.parent])


def resolve(root: Path, annotation: Path | None) -> tuple[Path, Path]:
    """(frame tree, annotation file) for a user-given root."""
    return resolve_tree(root, annotation, TREES, looks_like_tree, ANNOTATION_PATTERNS,
                        "CASME II coding file (CASME2-coding-*.xlsx)", levels=2)


def load(root: Path, annotation: Path | None = None) -> tuple[list[ClipRecord], list[Exclusion]]:
    tree, ann = resolve(root, annotation)
    return build_records(NAME, tree, _rows(tree, ann))


def scan(root: Path, annotation: Path | None) -> Scan:
    tree, ann = resolve(root, annotation)
    return Scan(tree, ann, _rows(tree, ann), two_level_folders(tree, SUBJECT))


def looks_like_release(folder: Path) -> bool:
    tree = pick_tree(folder, TREES, looks_like_tree)
    return looks_like_tree(tree) and find_file([tree, tree.parent, folder], ANNOTATION_PATTERNS) is not None


PROTOCOLS = (
    ClassProtocol(
        "casme2-5", ("happiness", "disgust", "repression", "surprise", "others"),
        {"happiness": "happiness", "disgust": "disgust", "repression": "repression", "surprise": "surprise",
         "others": "others", "sadness": None, "fear": None},
        "CASME II 5-class: happiness, disgust, repression, surprise, others; sadness and fear dropped "
        "(249 clips with the 20190701 coding file)."),
    ClassProtocol(
        "casme2-all", LABELS, {k: k for k in LABELS},
        "CASME II all 7 estimated emotions, each its own class (255 clips)."),
    ClassProtocol(
        "casme2-6", ("disgust", "fear", "happiness", "repression", "sadness", "surprise"),
        {"disgust": "disgust", "fear": "fear", "happiness": "happiness", "repression": "repression",
         "sadness": "sadness", "surprise": "surprise", "others": None},
        "CASME II 6-class of the two-stream reference code (its emotion folders, in os.listdir order sorted): "
        "others dropped."),
    ClassProtocol(
        "casme2-4", ("positive", "negative", "surprise", "others"),
        {"happiness": "positive", "disgust": "negative", "sadness": "negative", "fear": "negative",
         "surprise": "surprise", "others": "others", "repression": "others"},
        "CASME II 4-class of the release note.txt: positive = happiness; negative = disgust + sadness + fear; "
        "surprise; others = others + repression."),
    ClassProtocol(
        "casme2-3", ("negative", "positive", "surprise"),
        {"disgust": "negative", "repression": "negative", "happiness": "positive", "surprise": "surprise",
         "others": None, "sadness": None, "fear": None},
        "CASME II with the MEGC2019 3-class mapping: negative = disgust + repression; positive = happiness; "
        "surprise; others, sadness and fear dropped (the composite itself is dataset 'megc2019')."),
    ClassProtocol(
        "casme2-3-mmnet", ("positive", "surprise", "negative"),
        {"happiness": "positive", "surprise": "surprise", "repression": "negative", "disgust": "negative",
         "fear": "negative", "sadness": "negative", "others": None},
        "CASME II 3-class of MMNet's CASME2_3.py (its label order): positive = happiness; surprise; negative = "
        "repression + disgust + fear + sadness; others dropped (32 / 28 / 96 = 156 clips)."),
    *objective_protocols("casme2", "CASME II"),
)

SPEC = register_dataset(DatasetSpec(
    NAME, load, "casme2-5", "CASME II (Cropped or CASME2_RAW_selected) + CASME2-coding-*.xlsx",
    protocols=PROTOCOLS, labels=LABELS, subject_pattern=SUBJECT, scan=scan, looks_like=looks_like_release,
    annotation_patterns=ANNOTATION_PATTERNS))
