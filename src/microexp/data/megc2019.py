"""MEGC2019 composite (CDE): SMIC-HS + CASME II + SAMM in 3 classes, 442 clips from 68 subjects.

Pointing at the three sources — ``root`` is either

* a folder holding the three releases as delivered, in any sub-folders (found by their layout, e.g.
  ``ROOT/CASME2/Cropped/…`` + ``CASME2-coding-*.xlsx``, ``ROOT/SMIC/SMIC_all_cropped/HS/…``,
  ``ROOT/SAMM/006/…`` + ``SAMM_Micro_FACS_Codes_v2.xlsx``), or
* a ``.yaml``/``.json`` file mapping ``casme2``, ``smic``, ``samm`` to their roots (relative paths are relative to
  the file) and optionally ``casme2_annotation``, ``samm_annotation`` and ``gt``.

The ground truth ``combined_3class_gt.csv`` (no header, CRLF; ``dataset, subject, filename, label`` with 0 negative,
1 positive, 2 surprise) is ``annotation`` or is looked for in the root; HTNet's headed variant
(``dataset,sub,filename_o,label,…``) also reads. Its spellings are reconciled with the folders: SMIC ``s01`` /
``s01_ne_01`` -> ``s1`` / ``s1_ne_01``; SAMM ``6`` -> ``006``. Without a GT file the composite is derived from the
datasets' own labels (CASME II: negative = disgust + repression, positive = happiness, surprise; SAMM: negative =
anger + contempt + disgust + fear + sadness, positive = happiness, surprise; SMIC: its folders) minus the five CASME
II clips the organisers left out (:data:`CASME2_LEFT_OUT`); with the 20190701 CASME II coding file both routes give
the same 442 clips and labels.

Records keep their source dataset in ``ClipRecord.dataset`` (for per-dataset scores); subjects are prefixed with
it (``casme2_sub01``, ``smic_s1``, ``samm_006``) so LOSO groups stay unique; ``emotion`` is the composite class and
``meta["source_emotion"]`` the dataset's own label.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from microexp.data import casme2, samm, smic
from microexp.data._common import Row, cell_text, find_file, is_blank, read_sheet, subdirs
from microexp.data.classes import ClassProtocol
from microexp.data.records import ClipRecord, Exclusion
from microexp.data.registry import DatasetSpec, register_dataset
from microexp.errors import AnnotationError, ConfigError, DataError, MicroexpError

NAME = "megc2019"
CLASSES = ("negative", "positive", "surprise")
SOURCES = ("casme2", "smic", "samm")
GT_PATTERNS = ("combined_3class_gt*.csv", "combined_3_class*.csv", "*3class*gt*.csv")
CASME2_MAP = {"disgust": "negative", "repression": "negative", "happiness": "positive", "surprise": "surprise"}
SAMM_MAP = {"anger": "negative", "contempt": "negative", "disgust": "negative", "fear": "negative",
            "sadness": "negative", "happiness": "positive", "surprise": "surprise"}
# CASME II clips of the 20190701 coding file that map to a class but are not in the organisers' GT
CASME2_LEFT_OUT = {("sub04", "EP12_01f"): "apex not annotated ('/') in the coding file",
                   ("sub05", "EP09_05f"): "left out by the MEGC2019 organisers",
                   ("sub24", "EP07_01"): "sadness in the 20140508 coding file, not in the MEGC2019 GT",
                   ("sub24", "EP07_04f"): "sadness in the 20140508 coding file, not in the MEGC2019 GT",
                   ("sub24", "EP10_03"): "sadness in the 20140508 coding file, not in the MEGC2019 GT"}


@dataclass(frozen=True)
class GTRow:
    dataset: str  # casme2 | smic | samm
    subject: str  # on-disk spelling (sub01, s1, 006)
    clip: str  # on-disk spelling (EP02_01f, s1_ne_01, 006_1_2)
    label: str  # negative | positive | surprise
    gt_subject: str
    gt_clip: str
    source: str  # file:line


def disk_names(dataset: str, subject: str, clip: str) -> tuple[str, str]:
    """Folder spellings of a GT (subject, filename)."""
    if dataset == "smic":
        sub = re.sub(r"^s0*(\d+)$", r"s\1", subject, flags=re.IGNORECASE)
        return sub, re.sub(r"^s0*(\d+)_", r"s\1_", clip, flags=re.IGNORECASE)
    if dataset == "samm":
        return (f"{int(subject):03d}" if subject.isdigit() else subject), clip
    if dataset == "casme2" and subject.isdigit():
        return f"sub{int(subject):02d}", clip
    return subject, clip


def read_gt(path: Path) -> list[GTRow]:
    """Rows of the MEGC2019 ground-truth CSV (header-less official file or HTNet's headed variant)."""
    path = Path(path)
    raw = read_sheet(path, 0)
    cols = {"dataset": 0, "subject": 1, "filename": 2, "label": 3}
    start = 0
    if len(raw) and cell_text(raw.iat[0, 0]).lower() == "dataset":
        header = [cell_text(v).lower() for v in raw.iloc[0].tolist()]
        aliases = {"subject": ("subject", "sub"), "filename": ("filename", "filename_o", "clip"), "label": ("label",)}
        for key, names in aliases.items():
            idx = next((header.index(n) for n in names if n in header), None)
            if idx is None:
                raise AnnotationError(f"header lacks column {names[0]!r}", file=path, row=1, column=names[0])
            cols[key] = idx
        start = 1
    if raw.shape[1] < 4:
        raise AnnotationError(f"expected 4 columns (dataset, subject, filename, label), found {raw.shape[1]}",
                              file=path)
    rows: list[GTRow] = []
    seen: dict[tuple[str, str, str], int] = {}
    for i in range(start, len(raw)):
        values = raw.iloc[i].tolist()
        if all(is_blank(v) for v in values):
            continue
        line = i + 1
        ds = cell_text(values[cols["dataset"]]).lower()
        if ds not in SOURCES:
            raise AnnotationError(f"dataset {ds!r} is not one of {list(SOURCES)}", file=path, row=line,
                                  column="dataset")
        label = cell_text(values[cols["label"]])
        if label not in ("0", "1", "2"):
            raise AnnotationError(f"label {label!r} is not 0, 1 or 2", file=path, row=line, column="label")
        gsub, gclip = cell_text(values[cols["subject"]]), cell_text(values[cols["filename"]])
        sub, clip = disk_names(ds, gsub, gclip)
        if (ds, sub, clip) in seen:
            raise AnnotationError(f"duplicate clip {ds}/{sub}/{clip} (first on row {seen[ds, sub, clip]})",
                                  file=path, row=line, column="filename")
        seen[ds, sub, clip] = line
        rows.append(GTRow(ds, sub, clip, CLASSES[int(label)], gsub, gclip, f"{path}:{line}"))
    if not rows:
        raise AnnotationError("no rows", file=path)
    return rows


def derive_rows(casme2_rows: Iterable[Row], samm_rows: Iterable[Row], smic_rows: Iterable[Row] = ()
                ) -> tuple[list[GTRow], list[Exclusion]]:
    """The composite from the datasets' own labels (no GT file), with the reason for every row left out."""
    out: list[GTRow] = []
    left: list[Exclusion] = []
    for ds, rows, mapping in (("casme2", casme2_rows, CASME2_MAP), ("smic", smic_rows, None),
                              ("samm", samm_rows, SAMM_MAP)):
        for r in rows:
            key = f"{ds}/{r.subject}/{r.clip_id}"
            label = r.emotion if mapping is None else mapping.get(r.emotion)
            if label not in CLASSES:
                left.append(Exclusion(key, f"label {r.emotion!r} not in the MEGC2019 composite"))
            elif ds == "casme2" and (r.subject, r.clip_id) in CASME2_LEFT_OUT:
                left.append(Exclusion(key, CASME2_LEFT_OUT[r.subject, r.clip_id]))
            else:
                out.append(GTRow(ds, r.subject, r.clip_id, label, r.subject, r.clip_id, r.source))
    return out, left


@dataclass
class Sources:
    roots: dict[str, Path]
    annotations: dict[str, Path | None]
    gt: Path | None


def _detect(folder: Path) -> str | None:
    if smic.looks_like_tree(smic.find_tree(folder, "HS")):
        return "smic"
    try:
        if samm.looks_like_tree(samm.resolve(folder, None)[0]):
            return "samm"
    except DataError:
        pass
    try:
        if casme2.looks_like_tree(casme2.resolve(folder, None)[0]):
            return "casme2"
    except DataError:
        pass
    return None


def find_sources(root: Path, gt: Path | None = None) -> Sources:
    root = Path(root)
    if root.is_file() and root.suffix.lower() in (".yaml", ".yml", ".json"):
        text = root.read_text()
        try:
            spec = json.loads(text) if root.suffix.lower() == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{root}: cannot parse ({exc})") from None
        if not isinstance(spec, dict):
            raise ConfigError(f"{root}: expected a mapping with keys {list(SOURCES)}")
        missing = [k for k in SOURCES if k not in spec]
        if missing:
            raise ConfigError(f"{root}: missing key(s) {missing} (the roots of casme2, smic and samm)")

        def rel(value: object) -> Path:
            return spec_path(root, value)

        anns = {k: (rel(spec[f"{k}_annotation"]) if spec.get(f"{k}_annotation") else None) for k in SOURCES}
        return Sources({k: rel(spec[k]) for k in SOURCES}, anns, gt or (rel(spec["gt"]) if spec.get("gt") else None))
    if not root.is_dir():
        raise DataError(f"{root}: not a folder or a .yaml/.json file naming the casme2, smic and samm roots")
    found = find_releases(root, SOURCES, _detect, "put the three releases under one folder or pass a .yaml file "
                                                  "mapping casme2, smic and samm to their roots")
    return Sources(found, dict.fromkeys(SOURCES), gt or find_file([root], GT_PATTERNS))


def spec_path(spec_file: Path, value: object) -> Path:
    """A path written in a composite's .yaml/.json file: absolute, or relative to that file's folder."""
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else spec_file.parent / p


def find_releases(root: Path, kinds: Sequence[str], detect: Callable[[Path], str | None], advice: str
                  ) -> dict[str, Path]:
    """The folder of each release below ``root`` (its children and grandchildren), told apart by ``detect``; a
    release not found is one DataError line ending in ``advice``."""
    found: dict[str, Path] = {}
    for child in [*subdirs(root), *(g for c in subdirs(root) for g in subdirs(c))]:
        kind = detect(child)
        if kind and kind not in found:
            found[kind] = child
    missing = [k for k in kinds if k not in found]
    if missing:
        raise DataError(f"{root}: could not find the {', '.join(missing)} release(s) below it (found: "
                        f"{ {k: str(v) for k, v in found.items()} }); {advice}")
    return found


def load(root: Path, annotation: Path | None = None) -> tuple[list[ClipRecord], list[Exclusion]]:
    src = find_sources(root, annotation)
    loaders = {"casme2": casme2.load, "smic": smic.load, "samm": samm.load}
    by_key: dict[tuple[str, str, str], ClipRecord] = {}
    excluded: list[Exclusion] = []
    for ds in SOURCES:
        recs, exc = loaders[ds](src.roots[ds], src.annotations[ds])
        excluded += exc
        for r in recs:
            by_key[ds, r.subject, r.clip_id] = r
    if src.gt is not None:
        wanted = read_gt(src.gt)
        listed = {(g.dataset, g.subject, g.clip) for g in wanted}
        excluded += [Exclusion(f"{k[0]}/{k[1]}/{k[2]}", "not in the MEGC2019 ground truth")
                     for k in by_key if k not in listed]
    else:
        def rows_of(ds: str) -> list[Row]:
            return [Row(r.subject, r.clip_id, r.emotion, None, None, None, source=r.source)
                    for (d, _, _), r in by_key.items() if d == ds]
        wanted, left = derive_rows(rows_of("casme2"), rows_of("samm"), rows_of("smic"))
        excluded += left
    records: list[ClipRecord] = []
    for g in wanted:
        rec = by_key.get((g.dataset, g.subject, g.clip))
        if rec is None:
            excluded.append(Exclusion(f"{g.dataset}/{g.subject}/{g.clip}",
                                      f"in the MEGC2019 ground truth ({g.source}) but its clip was not loaded"))
            continue
        meta = dict(rec.meta, source_emotion=rec.emotion, source_subject=rec.subject, gt_subject=g.gt_subject,
                    gt_filename=g.gt_clip, label_source=g.source if src.gt is not None else "derived")
        records.append(ClipRecord(dataset=g.dataset, subject=f"{g.dataset}_{rec.subject}", clip_id=rec.clip_id,
                                  emotion=g.label, frames=rec.frames, frame_numbers=rec.frame_numbers,
                                  onset=rec.onset, apex=rec.apex, offset=rec.offset, fps=rec.fps, aus=rec.aus,
                                  source=rec.source, meta=meta))
    return records, excluded


def check(root: Path, annotation: Path | None, read_images: bool, report: Any) -> Any:
    """``data check`` of the composite: each source tree checked as its own dataset, then the GT matched."""
    from microexp.data.check import Problem, check_dataset

    try:
        src = find_sources(root, Path(annotation) if annotation else None)
    except MicroexpError as exc:
        report.problems.append(Problem("layout", str(root), str(exc)))
        return report
    report.annotation = src.gt
    for ds in SOURCES:
        sub = check_dataset(ds, src.roots[ds], src.annotations[ds], read_images)
        report.problems += [Problem(p.kind, f"[{ds}] {p.where}", p.detail) for p in sub.problems]
        report.hints += [f"[{ds}] {h}" for h in sub.hints]
    try:
        records, excluded = load(root, annotation)
    except MicroexpError as exc:
        report.problems.append(Problem("annotation", str(src.gt), str(exc)))
        return report
    report.records, report.rows = records, len(records) + len(excluded)
    for exc in excluded:
        if "not loaded" in exc.reason:
            report.problems.append(Problem("missing clip folder", exc.clip, exc.reason))
    return report


PROTOCOLS = (ClassProtocol(
    "megc2019-3", CLASSES, {c: c for c in CLASSES},
    "MEGC2019 3-class composite: negative (0), positive (1), surprise (2); 442 clips = SMIC-HS 164 (70/51/43), "
    "CASME II 145 (88/32/25), SAMM 133 (92/26/15); 68 subjects."), ClassProtocol(
    "megc2019-binary", ("positive", "negative"), {"positive": "positive", "negative": "negative", "surprise": None},
    "The composite without surprise, positive (0) / negative (1) as Joshi 2021's binary task (SAMM 26/92, CASME II "
    "32/88, SMIC-HS 51/70): the joshi2021-*-cross-casme2 recipes train on SAMM and test on CASME II."))

SPEC = register_dataset(DatasetSpec(
    NAME, load, "megc2019-3", "MEGC2019 composite: SMIC-HS + CASME II + SAMM, 3 classes; root holds the three "
    "releases or is a .yaml naming them", protocols=PROTOCOLS, labels=CLASSES, check=check,
    annotation_patterns=GT_PATTERNS))
