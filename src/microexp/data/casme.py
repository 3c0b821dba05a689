"""CASME (CASME I; Yan et al., FG 2013). Lower-confidence layout (docs/datasets.md §4).

Layout::

    ROOT/casme.xlsx                                            (original name unknown; see ANNOTATION_PATTERNS)
    ROOT/Cropped/sub01/EP01_5/reg_EP01_5-19.jpg …             (face-cropped)
    ROOT/CASME_raw_selected/sub01/EP01_5/EP01_5-19.jpg …      (raw)

``root`` is the release folder (``Cropped`` preferred, else ``CASME_raw_selected``) or a tree directly. Frame files
are ``[reg_]<material>-<N>.jpg`` with the absolute frame index ``N`` (zero-padded to 3 digits in part of the
release; both read the same). ``ClipRecord.frames`` is the whole clip folder in numeric order. 60 fps.

Annotation columns: ``Subject`` (int), ``Filename``, a blank column, ``OnsetF``, ``ApexF1``, ``ApexF2``, ``OffsetF``,
a blank column, an AU column and ``Emotion``. The apex is ``ApexF1`` (``ApexF2`` kept in ``meta``); a missing
(``/`` or blank) or out-of-range apex is replaced by the middle frame and recorded in ``meta["repairs"]``.
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
    two_level_folders,
)
from microexp.data.classes import ClassProtocol
from microexp.data.records import ClipRecord, Exclusion
from microexp.data.registry import DatasetSpec, register_dataset
from microexp.errors import AnnotationError

NAME = "casme"
FPS = 60.0
TREES = ("Cropped", "CASME_raw_selected", "CASME_raw")
ANNOTATION_PATTERNS = ("CASME-coding*.xls*", "CASME_coding*.xls*", "casme.xls*", "CASME_label*.xls*", "CASME-coding*.csv",
                       "casme.csv")
COLUMNS = {
    "subject": ("Subject",),
    "filename": ("Filename",),
    "onset": ("OnsetF", "OnsetFrame", "Onset"),
    "apex": ("ApexF1", "ApexF", "ApexFrame", "Apex"),
    "apex2": ("ApexF2",),
    "offset": ("OffsetF", "OffsetFrame", "Offset"),
    "aus": ("Action Units", "AU", "AUs"),
    "emotion": ("Emotion", "Estimated Emotion"),
}
REQUIRED = ("subject", "filename", "onset", "apex", "offset", "emotion")
EMOTIONS = ("tense", "disgust", "repression", "surprise", "happiness", "sadness", "fear", "contempt")
SUBJECT = r"sub\d+"
looks_like_tree = looks_like_subject_tree(SUBJECT)


def read_annotation(path: Path) -> list[Row]:
    path = Path(path)
    table = locate_header(read_sheet(path, 0), path, COLUMNS, REQUIRED, ("apex2", "aus"))
    rows: list[Row] = []
    for line, cells in table.rows:
        subj, clip = cell_text(cells["subject"]), cell_text(cells["filename"])
        if not subj.isdigit():
            raise AnnotationError(f"subject {subj!r} is not a subject number", file=path, row=line, column="Subject")
        if not clip:
            raise AnnotationError("empty Filename", file=path, row=line, column="Filename")
        subject = f"sub{int(subj):02d}"
        row = Row(subject=subject, clip_id=clip, emotion=cell_text(cells["emotion"]).lower(),
                  onset=int_cell(cells["onset"], path, line, "OnsetF"),
                  apex=int_cell(cells["apex"], path, line, "ApexF1", sentinels={"/": None, "": None}),
                  offset=int_cell(cells["offset"], path, line, "OffsetF"), folder=Path(subject) / clip,
                  aus=cell_text(cells.get("aus")), fps=FPS, source=f"{path}:{line}")
        if not row.emotion:
            raise AnnotationError("empty emotion", file=path, row=line, column="Emotion")
        if cell_text(cells.get("apex2")) not in ("", "/"):
            row.meta["apex2"] = cell_text(cells["apex2"])
        fix_apex(row, cell_text(cells["apex"]))
        rows.append(row)
    return checked_rows(rows, path, table.header_row)


def resolve(root: Path, annotation: Path | None) -> tuple[Path, Path]:
    """(frame tree, annotation file) for a user-given root."""
    return resolve_tree(root, annotation, TREES, looks_like_tree, ANNOTATION_PATTERNS,
                        "CASME annotation file (e.g. casme.xlsx)")


def load(root: Path, annotation: Path | None = None) -> tuple[list[ClipRecord], list[Exclusion]]:
    tree, ann = resolve(root, annotation)
    return build_records(NAME, tree, read_annotation(ann))


def scan(root: Path, annotation: Path | None) -> Scan:
    tree, ann = resolve(root, annotation)
    return Scan(tree, ann, read_annotation(ann), two_level_folders(tree, SUBJECT))


def looks_like_release(folder: Path) -> bool:
    tree = pick_tree(folder, TREES, looks_like_tree)
    return looks_like_tree(tree) and find_file([tree, tree.parent, folder], ANNOTATION_PATTERNS) is not None


_SIX = ("disgust", "fear", "happiness", "repression", "sadness", "surprise")
PROTOCOLS = (
    ClassProtocol(
        "casme-6", _SIX, dict({e: e for e in _SIX}, tense=None, contempt=None),
        "CASME 6-class as the Microfacial-exp two-stream seed (docs/models.md §3.2): disgust 0, fear 1, "
        "happiness 2, repression 3, sadness 4, surprise 5; tense and contempt dropped."),
    ClassProtocol("casme-all", EMOTIONS, {e: e for e in EMOTIONS}, "CASME all 8 emotions, each its own class."),
)

SPEC = register_dataset(DatasetSpec(
    NAME, load, "casme-6", "CASME I (Cropped or CASME_raw_selected) + its coding sheet", protocols=PROTOCOLS,
    labels=EMOTIONS, subject_pattern=SUBJECT, scan=scan, looks_like=looks_like_release,
    annotation_patterns=ANNOTATION_PATTERNS))
