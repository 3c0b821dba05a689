"""CAS(ME)^2 (Qu et al., TAFFC 2017): macro- and micro-expressions in long videos (dataset ``casme_sq``).

Layout::

    ROOT/CAS(ME)^2code_final.xlsx                      (or ...(Updated).xlsx, or the CSV export of sheet 1)
    ROOT/rawpic/s15/15_0401girlcrashing/img001.jpg …   (long videos, frames numbered from 001, >= 3 digits)
    ROOT/selectedpic/s15/anger1_1/img557.jpg …         (one folder per expression, absolute frame numbers)
    ROOT/cropped/15/anger1_1/img557.jpg …              (same, subject folder without the ``s``)

``root`` is the release folder (``rawpic`` is used when present, else ``cropped``, else ``selectedpic``) or one of
those trees directly. With ``rawpic`` a record is the span onset..offset of its long video (``ClipRecord.frames``
holds only those frames, with the long video's absolute numbers); with ``cropped``/``selectedpic`` it is the whole
expression folder.

The code sheet (``CASFEcode_final``, also spelled ``CASMEcode_final``; else the first sheet) has **no header**:
participant, expression name (``anger1_1``), onset, apex, offset (``0`` = not annotated), AUs (``NULL``/``null``
= none), estimated emotion, type (macro-/micro-expression), self-reported emotion. Participant numbers map to
subject folders through sheet ``naming rule1`` and expression-name prefixes to video codes through ``naming
rule2``; the CSV export carries the rawpic folder in an appended column instead. When neither is available the
published tables (participant 1 -> s15, …, 22 -> s40; anger1 -> 0401, …) are used. Video folders are matched on
their 4-digit code, so ``s19/23_0502funnyerrors`` (prefix differs from the folder) is found.

Offset ``0``: ``ClipRecord.offset`` is None and the clip ends at its apex (recorded in ``meta["repairs"]``).
``meta``: ``type`` (macro/micro), ``video_emotion`` (anger/disgust/happy, the stimulus category),
``self_report``, ``stimulus_emotion`` (``happy/positive``: stimulus category / estimated emotion), ``offset_coded``
(``yes``/``no``). 30 fps.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from microexp.data._common import (
    Row,
    Scan,
    build_records,
    cell_text,
    find_file,
    fix_apex,
    int_cell,
    is_blank,
    read_sheet,
    sheet_names,
    subdirs,
    two_level_folders,
)
from microexp.data.classes import ClassProtocol
from microexp.data.records import ClipRecord, Exclusion
from microexp.data.registry import DatasetSpec, register_dataset
from microexp.errors import AnnotationError, DataError

NAME = "casme_sq"
FPS = 30.0
TREES = ("rawpic", "cropped", "selectedpic")
ANNOTATION_PATTERNS = ("CAS(ME)^2code_final(Updated).xlsx", "CAS(ME)^2code_final.xlsx", "CAS(ME)*code*.xls*",
                       "CAS(ME)*code*.csv")
SHEETS = ("CASFEcode_final", "CASMEcode_final")
COLS = ("participant", "expression", "onset", "apex", "offset", "aus", "emotion", "type", "self_report")
EMOTIONS = ("positive", "negative", "surprise", "others")
SUBJECT = r"s?\d+"  # rawpic/selectedpic s15, cropped 15
# published tables (docs/datasets.md §5): used only when the annotation has no naming-rule sheets / folder column
PARTICIPANT_SUBJECT = dict(zip(range(1, 23), [15, 16, 19, 20, 21, 22, 23, 24, 25, 26, 27, 29, 30, 31, 32, 33, 34,
                                              35, 36, 37, 38, 40], strict=True))
VIDEO_CODE = {"disgust1": "0101", "disgust2": "0102", "anger1": "0401", "anger2": "0402", "happy1": "0502",
              "happy2": "0503", "happy3": "0505", "happy4": "0507", "happy5": "0508"}
VIDEO_NAME = {"0101": "disgustingteeth", "0102": "eatingworms", "0401": "girlcrashing",
              "0402": "beatingpregnantwoman", "0502": "funnyerrors", "0503": "unnyfarting",
              "0505": "funnyinnovations", "0507": "climbingthewall", "0508": "funnydunkey"}
_EXPR = re.compile(r"([a-z]+)(\d+)_(\d+)", re.IGNORECASE)


@dataclass
class Annotation:
    rows: list[Row]
    subject_of: dict[int, str]  # participant -> "s15"
    code_of: dict[str, str]  # "anger1" -> "0401"


def _naming_rules(path: Path) -> tuple[dict[int, str], dict[str, str]]:
    subject_of, code_of = {}, {}
    names = sheet_names(path)
    rule1 = next((n for n in names if re.sub(r"\s", "", n.lower()) == "namingrule1"), None)
    rule2 = next((n for n in names if re.sub(r"\s", "", n.lower()) == "namingrule2"), None)
    if rule1:
        for i, r in enumerate(read_sheet(path, rule1).itertuples(index=False), 1):
            if len(r) >= 3 and cell_text(r[0]).isdigit() and cell_text(r[2]).isdigit():
                subject_of[int(cell_text(r[2]))] = f"s{int(cell_text(r[0])):02d}"
            elif not all(is_blank(v) for v in r):
                raise AnnotationError("expected folder number, prefix, participant", file=path, row=i,
                                      column=f"{rule1}!A")
    if rule2:
        for r in read_sheet(path, rule2).itertuples(index=False):
            code, name = cell_text(r[0]), cell_text(r[1]) if len(r) > 1 else ""
            if code.isdigit() and name:
                code_of[name.lower()] = f"{int(code):04d}"
    return subject_of, code_of


def read_annotation(path: Path) -> Annotation:
    path = Path(path)
    names = sheet_names(path)
    sheet: str | int = next((n for n in names if n.lower() in {s.lower() for s in SHEETS}), 0)
    raw = read_sheet(path, sheet)
    if raw.shape[1] < len(COLS):
        raise AnnotationError(f"expected {len(COLS)} columns ({', '.join(COLS)}), found {raw.shape[1]}", file=path)
    subject_of, code_of = _naming_rules(path)
    rows: list[Row] = []
    seen: dict[tuple[str, str], int] = {}
    for i, values in enumerate(raw.itertuples(index=False), 1):
        if all(is_blank(v) for v in values):
            continue
        cells = dict(zip(COLS, values, strict=False))
        part = cell_text(cells["participant"])
        if not part.isdigit():
            what = "a header row (this sheet has none)" if i == 1 else "a participant number"
            raise AnnotationError(f"{part!r} is not {what}", file=path, row=i, column="1 (participant)")
        expr = cell_text(cells["expression"])
        m = _EXPR.fullmatch(expr)
        if not m:
            raise AnnotationError(f"expression name {expr!r} is not <video>_<k> (e.g. anger1_1)", file=path, row=i,
                                  column="2 (expression)")
        onset = int_cell(cells["onset"], path, i, "3 (onset)")
        apex = int_cell(cells["apex"], path, i, "4 (apex)")
        offset = int_cell(cells["offset"], path, i, "5 (offset)")
        emotion = cell_text(cells["emotion"]).lower()
        aus = cell_text(cells["aus"])
        row = Row(subject="", clip_id=expr, emotion=emotion, onset=onset, apex=apex, offset=offset,
                  aus="" if aus.lower() == "null" else aus, fps=FPS, source=f"{path}:{i}",
                  meta={"participant": int(part), "type": cell_text(cells["type"]).lower().split("-")[0],
                        "video_emotion": m.group(1).lower(), "video": f"{m.group(1)}{m.group(2)}".lower(),
                        "self_report": cell_text(cells["self_report"]).lower(),
                        # for casme_sq-reddy: the stimulus category beside the coders' estimated emotion
                        "stimulus_emotion": f"{m.group(1).lower()}/{emotion}",
                        "offset_coded": "no" if offset == 0 else "yes"})
        if len(values) > len(COLS) + 1 and "/" in cell_text(values[len(COLS) + 1]):
            row.meta["rawpic_folder"] = cell_text(values[len(COLS) + 1])  # appended column of the CSV export
        fix_apex(row, cell_text(cells["apex"]))
        subject = subject_of.get(int(part))
        if subject is None and "rawpic_folder" in row.meta:
            subject = row.meta["rawpic_folder"].split("/")[0]
        if subject is None and int(part) in PARTICIPANT_SUBJECT:
            subject = f"s{PARTICIPANT_SUBJECT[int(part)]}"
        if subject is None:
            raise AnnotationError(f"participant {part} has no subject folder (no naming rule1 entry)", file=path,
                                  row=i, column="1 (participant)")
        row.subject = subject
        if (subject, expr) in seen:
            raise AnnotationError(f"duplicate expression {subject}/{expr} (first on row {seen[subject, expr]})",
                                  file=path, row=i, column="2 (expression)")
        seen[subject, expr] = i
        rows.append(row)
    if not rows:
        raise AnnotationError("no data rows", file=path)
    return Annotation(rows, subject_of, code_of)


def _video_folder(tree: Path, row: Row, code_of: dict[str, str]) -> Path:
    """rawpic video folder of a row: the export's folder column, else the subject folder's entry with the video
    code (``<NN>_<code><name>``), else the name the release uses."""
    if "rawpic_folder" in row.meta:
        return Path(row.meta["rawpic_folder"])
    code = code_of.get(row.meta["video"]) or VIDEO_CODE.get(row.meta["video"], "")
    rx = re.compile(rf"\d+_{code}\D.*")
    for video in subdirs(tree / row.subject):
        if code and rx.fullmatch(video.name):
            return Path(row.subject) / video.name
    return Path(row.subject) / f"{row.subject[1:]}_{code}{VIDEO_NAME.get(code, '')}"


def tree_kind(tree: Path) -> str:
    name = tree.name.lower()
    if name in TREES:
        return name
    if any(re.fullmatch(r"\d+_\d{4}.*", v.name) for s in subdirs(tree) for v in subdirs(s)):
        return "rawpic"
    return "cropped" if any(p.name.isdigit() for p in subdirs(tree)) else "selectedpic"


def resolve(root: Path, annotation: Path | None) -> tuple[Path, Path]:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset root {root} does not exist or is not a folder")
    tree = next((root / t for t in TREES if (root / t).is_dir()), root)
    if annotation is None:
        annotation = find_file([root, tree.parent], ANNOTATION_PATTERNS)
        if annotation is None:
            raise DataError(f"{root}: no CAS(ME)^2 code file (CAS(ME)^2code_final*.xlsx) found; pass --annotation FILE")
    return tree, Path(annotation)


def place(rows: Iterable[Row], tree: Path, code_of: dict[str, str]) -> list[Row]:
    kind = tree_kind(tree)
    out = []
    for row in rows:
        if kind == "rawpic":
            row.folder, row.span = _video_folder(tree, row, code_of), True
        elif kind == "cropped":
            row.folder = Path(row.subject.lstrip("s")) / row.clip_id
        else:
            row.folder = Path(row.subject) / row.clip_id
        out.append(row)
    return out


def load(root: Path, annotation: Path | None = None) -> tuple[list[ClipRecord], list[Exclusion]]:
    tree, ann_file = resolve(root, annotation)
    ann = read_annotation(ann_file)
    return build_records(NAME, tree, place(ann.rows, tree, ann.code_of))


def scan(root: Path, annotation: Path | None) -> Scan:
    tree, ann_file = resolve(root, annotation)
    ann = read_annotation(ann_file)
    return Scan(tree, ann_file, place(ann.rows, tree, ann.code_of), two_level_folders(tree, SUBJECT))


def looks_like_release(folder: Path) -> bool:
    return any((folder / t).is_dir() for t in TREES) or any(
        re.fullmatch(r"\d+_\d{4}\w+", v.name) for s in subdirs(folder) for v in subdirs(s))


_FOUR = {e: e for e in EMOTIONS}
PROTOCOLS = (
    ClassProtocol(
        "casme_sq-4", EMOTIONS, _FOUR,
        "CAS(ME)^2 4-class on the estimated-emotion column as is: positive, negative, surprise, others; macro and "
        "micro expressions (357 rows in the Updated file)."),
    ClassProtocol(
        "casme_sq-micro-4", EMOTIONS, _FOUR,
        "CAS(ME)^2 micro-expressions only (57 rows: negative 21, others 19, surprise 9, positive 8), estimated "
        "emotion.", field="emotion", where=(("type", "micro"),)),
    ClassProtocol(
        "casme_sq-seed", ("angry", "happy", "disgust"), {"anger": "angry", "happy": "happy", "disgust": "disgust"},
        "CAS(ME)^2 as in the MicroExpSTCNN seed paper (docs/models.md §1.3): 3 classes angry, happy, disgust "
        "(indices 0, 1, 2), the stimulus-video category of each expression (anger*/happy*/disgust* expression "
        "names), macro and micro. The seed's own 206-sample selection (76/94/36, from clips it cut itself) cannot "
        "be reconstructed from the annotation; this gives 102/167/88 on the Updated file.",
        field="video_emotion"),
    ClassProtocol(
        "casme_sq-reddy", ("angry", "happy", "disgust"),
        {**{f"{v}/{e}": None for v in ("anger", "happy", "disgust") for e in EMOTIONS},
         "anger/negative": "angry", "happy/positive": "happy", "disgust/negative": "disgust"},
        "CAS(ME)^2 for the Reddy et al. 2019 recipes (docs/recipes.md): the stimulus category (angry, happy, "
        "disgust) where the coders' estimated emotion agrees with it (negative in anger*/disgust* videos, positive "
        "in happy* videos) and the offset is coded (not 0); macro and micro. 208 = 67 + 99 + 42 on the Updated "
        "file, the nearest the release comes to the paper's 206 = 76 + 94 + 36 (Table IV), which cannot be rebuilt.",
        field="stimulus_emotion", where=(("offset_coded", "yes"),)),
)

SPEC = register_dataset(DatasetSpec(
    NAME, load, "casme_sq-4", "CAS(ME)^2 macro+micro expressions (rawpic spans, cropped or selectedpic) + "
    "CAS(ME)^2code_final.xlsx", protocols=PROTOCOLS, labels=EMOTIONS, subject_pattern=SUBJECT, scan=scan,
    looks_like=looks_like_release, annotation_patterns=ANNOTATION_PATTERNS))
