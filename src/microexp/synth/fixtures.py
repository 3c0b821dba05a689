"""Fixture trees (one writer per dataset, keyed by its name) in the exact on-disk layout and naming of the real releases (``microexp synth --layout``).

:func:`build_fixture` writes, for one layout, the frame folders and the annotation file where the release has one,
so that the real loaders can be exercised (and a pipeline dry-run) before the licensed data arrives:

=========  ==============================================================================================
layout     tree written under ``out``
=========  ==============================================================================================
casme2     ``CASME2-coding-20190701.xlsx`` + ``Cropped/sub01/EP02_01f/reg_img46.jpg…`` (``raw=True``:
           ``CASME2_RAW_selected/…/img46.jpg``)
samm       ``SAMM_Micro_FACS_Codes_v2.xlsx`` (13 note rows, header row 14) + ``SAMM/006/006_1_2/006_05562.jpg…``
smic       ``SMIC_all_cropped/HS/s1/micro/negative/s1_ne_01/reg_image036237.bmp…`` + a ``non_micro`` folder
           (``raw=True``: ``SMIC_all_raw/HS/…/image036237.bmp``); no annotation file (as released)
casme_sq   ``CAS(ME)^2code_final.xlsx`` (header-less ``CASFEcode_final`` + ``naming rule1``/``naming rule2``)
           + ``rawpic/s15/15_0401girlcrashing/img557.jpg…`` (the frames of the annotated spans)
casme      ``casme.xlsx`` + ``Cropped/sub01/EP01_5/reg_EP01_5-019.jpg…``
casme3     ``annotation/partA/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx`` (every cell text)
           + ``part_A/data/part_A_split/part_A/spNO.1/a/color/355.jpg…`` (the frames of the annotated spans)
=========  ==============================================================================================

``annotation``: a real annotation file to mirror. It is copied unchanged into its standard place (so ``.xls``
and ``.csv`` exports stay what they are) and one clip folder is written per row, with the absolute frame numbers
of the row. For ``smic`` (no annotation in the release) pass the MEGC2019 ground truth to mirror its 164 SMIC-HS
clips. Without ``annotation`` a small annotation is generated and written in the release's format (always
``.xlsx`` — xlrd cannot write ``.xls``), with the quirks of docs/datasets.md §10 (text subject ids, ``/`` apex, an apex
outside onset..offset, trailing-space AUs, offset ``0``, ``Others``, ``J``, a repeated video, irregular names).

Frames are rendered by ``render`` (default :func:`synth_renderer`, the project's synthetic generator driven by the
row's AU codes — for SMIC, which has none, the generator's AU sets of the clip's class; :func:`placeholder_renderer`
is a fast stand-in), ``size`` pixels square.
"""

from __future__ import annotations

import functools
import shutil
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import openpyxl

from microexp.data import Row, casme, casme2, casme3, casme_sq, megc2019, samm
from microexp.data.aus import au_numbers, parse_aus_cell
from microexp.data.objective import CLASSES, objective_class
from microexp.errors import ConfigError, DataError
from microexp.registry import Registry


@dataclass(frozen=True)
class ClipSpec:
    """What one clip to render looks like: ``onset``/``apex``/``offset`` are 1-based positions in the clip."""

    n_frames: int
    onset: int
    apex: int
    offset: int
    aus: str
    fps: float
    size: int
    seed: int
    subject_index: int


Renderer = Callable[[ClipSpec], np.ndarray]  # -> uint8 (T, H, W) gray frames


def placeholder_renderer(spec: ClipSpec) -> np.ndarray:
    """Gray noise with a brightness bump at the apex: fast, deterministic, no faces."""
    rng = np.random.default_rng(spec.seed)
    base = rng.integers(60, 200, size=(spec.size, spec.size)).astype(np.float32)
    t = np.arange(1, spec.n_frames + 1, dtype=np.float32)
    bump = np.exp(-0.5 * ((t - spec.apex) / max(1.0, (spec.offset - spec.onset) / 4)) ** 2) * 20
    frames = base[None] + bump[:, None, None] + rng.normal(0, 2, size=(spec.n_frames, spec.size, spec.size))
    return np.clip(frames, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=2)
def _faces(n: int) -> list:
    from microexp.synth.faces import load_faces

    return load_faces(n)  # landmarks via dlib: seconds, so once per process


def synth_renderer(n_faces: int = 8) -> Renderer:
    """The project's synthetic generator (:mod:`microexp.synth`): a real face per subject, moved by the row's AU
    codes between onset, apex and offset."""
    from microexp.synth.render import render_clip

    def render(spec: ClipSpec) -> np.ndarray:
        faces = _faces(n_faces)
        n = spec.n_frames
        if n < 3:  # the generator needs onset < apex < offset
            return placeholder_renderer(spec)
        onset = min(max(spec.onset, 1), n - 2)
        offset = max(min(spec.offset, n), onset + 2)
        apex = min(max(spec.apex, onset + 1), offset - 1)
        clip = render_clip(faces[spec.subject_index % len(faces)], spec.aus, n_frames=n, onset=onset, apex=apex,
                           offset=offset, fps=spec.fps, size=(spec.size, spec.size), seed=spec.seed)
        return np.asarray(clip.frames, dtype=np.uint8)

    return render


def _class_aus(emotion: str, clip_id: str) -> str:
    from microexp.synth.generate import CLASS_AUS

    choices = CLASS_AUS.get(emotion, ("",))
    return choices[_seed(clip_id) % len(choices)]


@dataclass
class Fixture:
    layout: str
    root: Path  # what to pass as --root
    annotation: Path | None  # the annotation file written/copied (None for SMIC)
    rows: list[Row]  # the rows the tree was built from (expected records)
    clip_folders: dict[str, Path] = field(default_factory=dict)  # "subject/clip_id" -> folder


def _seed(*parts: object) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode()) & 0x7FFFFFFF


def _write_frames(folder: Path, names: Sequence[str], frames: np.ndarray, color: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, img in zip(names, frames, strict=True):
        if color:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        ok, data = cv2.imencode(Path(name).suffix, img)
        if not ok:
            raise DataError(f"cannot encode {folder / name}")
        (folder / name).write_bytes(data.tobytes())  # encode + one write: much faster than imwrite on busy disks


def _render_span(render: Renderer, row: Row, numbers: Sequence[int], size: int, seed: int, subjects: list[str]
                 ) -> np.ndarray:
    lo = numbers[0]
    onset = (row.onset or lo) - lo + 1
    offset = (row.offset if row.offset is not None else numbers[-1]) - lo + 1
    apex = (row.apex if row.apex is not None else (row.onset or lo)) - lo + 1
    if row.subject not in subjects:
        subjects.append(row.subject)
    spec = ClipSpec(len(numbers), onset, min(max(apex, onset), offset), offset, row.aus, row.fps, size,
                    _seed(seed, row.subject, row.clip_id), subjects.index(row.subject))
    return render(spec)


def _clip_frames(row: Row) -> list[int]:
    end = row.offset if row.offset is not None else row.apex
    assert row.onset is not None and end is not None
    return list(range(row.onset, end + 1))


# ----------------------------------------------------------------------------------------- generated annotations

def _aus_cell(aus: str) -> int | str:
    return int(aus) if aus.isdigit() else aus


def _objective_cell(aus: str) -> int:
    """The coders' objective-class column of a generated row: the class (as a numeral, as the releases write it)
    that the AU rule gives, so that both objective-class protocols see the same classes."""
    return CLASSES.index(objective_class(au_numbers(parse_aus_cell(aus).codes))) + 1


def _casme2_rows() -> list[Row]:
    spec = [("01", "EP02_01f", 46, 59, 86, "12", "happiness"), ("01", "EP19_05f", 396, 416, 446, "4+7+L10", "disgust"),
            ("02", "EP01_11f", 46, 91, 96, "15", "repression"), ("03", "EP01_2", 21, 30, 44, "1+2", "surprise"),
            ("03", "EP08_1", 11, 20, 34, "4", "others"), ("04", "EP12_01f", 250, None, 332, "4+7", "disgust"),
            ("07", "EP06_02_01", 31, 40, 60, "L12", "happiness"), ("07", "EP06_02_02", 61, 70, 92, "14", "others"),
            ("09", "EP09f", 101, 120, 130, "1+2+4", "fear"), ("09", "EP02_02", 5, 20, 33, "17", "sadness")]
    return [Row(s, c, e, a, b, d, aus=u) for s, c, a, b, d, u, e in spec]


def _write_casme2_annotation(path: Path, rows: Sequence[Row]) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append(["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None, "Action Units",
               "Estimated Emotion", "Objective Classes"])
    for r in rows:
        subject = r.subject[3:] if r.subject.startswith("sub") else r.subject  # text '01', as in the release
        ws.append([subject, r.clip_id, None, r.onset, "/" if r.apex is None else r.apex, r.offset, None,
                   _aus_cell(r.aus), r.emotion, _objective_cell(r.aus)])
    wb.create_sheet("Sheet2")
    wb.create_sheet("Sheet3")
    wb.save(path)


def _samm_rows() -> list[Row]:
    spec = [("006", "006_1_2", 1, 5562, 5588, 5632, "4+7", "Anger"), ("006", "006_1_3", 1, 3912, 3948, 3988, "4+9", "Anger"),
            ("007", "007_3_1", 3, 2301, 2330, 2360, "12", "Happiness"),
            ("011", "011_2_1", 2, 801, 830, 850, "1+2", "Surprise"),
            ("028", "028_4_1", 4, 1071, 1143, 1134, "A14C", "Contempt"),
            ("033", "033_1_4", 1, 1510, 1530, 1560, "12+15 ", "Other"),
            ("032", "032_3_1", 3, 4896, 4930, 4970, "(R6 or R12)+R15", "Sadness")]
    return [Row(s, c, e, a, b, d, aus=u, meta={"inducement": i}) for s, c, i, a, b, d, u, e in spec]


def _write_samm_annotation(path: Path, rows: Sequence[Row]) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "MICRO_ONLY"
    notes = {1: ["SAMM Dataset - Master FACS Codes", None, None, None, "(Note to the users: please cite ...)"],
             3: ["9/9/17 - New updates with Emotional and Objective Classes. For details please refer to: "],
             6: ["Symbol Key:"], 7: ['"/" = or'], 8: ['"?" = some AU\'s continue for a while and have unclear offset'],
             10: ["AU Help:"], 11: ['"L2 or R2" = Unilateral AU 2 on left side of face / right side of face'],
             12: ['"A2" = Asymmetric AU 2. Occurs on both sides of face but stronger on one side']}
    for i in range(1, 14):
        ws.append(notes.get(i, []))
    ws.append(["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame", "Duration",
               "Micro", "Action Units", "Estimated Emotion", "Objective Classes", "Notes"])
    for r in rows:
        assert r.onset is not None and r.offset is not None
        ws.append([r.subject, r.clip_id, int(r.meta.get("inducement", 1)), r.onset, r.apex, r.offset,
                   r.offset - r.onset + 1, "Micro - 1/2", _aus_cell(r.aus), r.emotion, _objective_cell(r.aus), None])
    wb.save(path)


def _casme_rows() -> list[Row]:
    emotions = ("tense", "disgust", "repression", "surprise", "happiness", "sadness", "fear", "contempt")
    aus = ("4", "9+10", "15+17", "1+2", "12", "1+4", "4+20", "R14")
    rows = []
    for k in range(12):
        onset = 10 + 7 * k
        apex = None if k == 3 else onset + 4
        rows.append(Row(f"{k % 6 + 1:02d}", f"EP{k // 6 + 1:02d}_{k % 6 + 1}", emotions[k % 8], onset, apex,
                        onset + 9, aus=aus[k % 8], meta={"padded": k >= 6}))
    return rows


def _write_casme_annotation(path: Path, rows: Sequence[Row]) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append(["Subject", "Filename", None, "OnsetF", "ApexF1", "ApexF2", "OffsetF", None, "Action Units",
               "Emotion"])
    for r in rows:
        ws.append([int(r.subject[-2:]) if r.subject.startswith("sub") else int(r.subject), r.clip_id, None, r.onset,
                   "/" if r.apex is None else r.apex, "/", r.offset, None, _aus_cell(r.aus), r.emotion])
    wb.save(path)


def _casme3_rows() -> list[Row]:
    spec = [("spNO.1", "a", 355, 359, 360, "5", "others"), ("spNO.1", "e", 62, 68, 96, "R12", "happy"),
            ("spNO.1", "e", 96, 102, 106, "R12", "Others"), ("spNO.3", "J", 480, 484, 490, "4", "disgust"),
            ("spNO.10", "d", 162, 164, 165, "5", "surprise"), ("spNO.10", "f", 278, 279, 280, "18", "fear"),
            ("spNO.10", "i", 2030, 2035, 2041, "4", "anger"), ("spNO.11", "b", 90, 95, 99, "1+4", "sad")]
    return [Row(s, f"{v.lower()}_{a}", e, a, b, d, aus=u, meta={"video": v}) for s, v, a, b, d, u, e in spec]


def _write_casme3_annotation(path: Path, rows: Sequence[Row]) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "label"
    ws.append(["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"])
    for r in rows:  # every cell text, numbers included, as in the release
        ws.append([r.subject, r.meta["video"], str(r.onset), str(r.apex), str(r.offset), r.aus, "VII", r.emotion])
    wb.create_sheet("Sheet1")
    wb.create_sheet("Sheet3")
    wb.save(path)


def _casme_sq_rows() -> list[Row]:
    # (participant, expression, onset, apex, offset, aus, emotion, type, self-report)
    spec = [(1, "anger1_1", 557, 572, 590, "4+10+14+15", "negative", "macro-expression", "anger"),
            (1, "anger2_1", 2155, 2163, 0, "NULL", "negative", "macro-expression", "anger"),
            (1, "disgust1_1", 3001, 3004, 3010, "4+7", "negative", "micro-expression", "disgust"),
            (3, "happy1_1", 601, 605, 611, "12", "positive", "micro-expression", "happiness"),
            (3, "happy1_2", 1598, 1613, 1620, "6+12", "positive", "macro-expression", "happiness"),
            (22, "happy2_1", 2692, 2700, 2705, "null", "surprise", "micro-expression", "surprise"),
            (22, "disgust2_1", 120, 125, 133, "4,24", "others", "macro-expression", "disgust")]
    return [Row("", e, em, a, b, d, aus=u, meta={"participant": p, "type": t, "self_report": s})
            for p, e, a, b, d, u, em, t, s in spec]


def _write_casme_sq_annotation(path: Path, rows: Sequence[Row]) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "CASFEcode_final"
    for r in rows:  # no header row, as in the release
        ws.append([r.meta["participant"], r.clip_id, r.onset, r.apex, r.offset or 0, _aus_cell(r.aus), r.emotion,
                   r.meta["type"], r.meta["self_report"]])
    rule1 = wb.create_sheet("naming rule1")
    for p, s in casme_sq.PARTICIPANT_SUBJECT.items():
        rule1.append([s, f"{s}_", p])
    rule2 = wb.create_sheet("naming rule2")
    for name, code in casme_sq.VIDEO_CODE.items():
        rule2.append([code, name])
    wb.save(path)


def _smic_rows(count: int = 12) -> list[Row]:
    emotions = (("negative", "ne"), ("positive", "po"), ("surprise", "sur"))
    rows = []
    for k in range(count):
        subject = ("s1", "s3", "s20")[k % 3]
        emo, short = emotions[k // 3 % 3]
        rows.append(Row(subject, f"{subject}_{short}_{k // 9 + 1:02d}", emo, None, None, None))
    return rows


WRITERS = {"casme2": _write_casme2_annotation, "samm": _write_samm_annotation, "casme": _write_casme_annotation,
           "casme3": _write_casme3_annotation, "casme_sq": _write_casme_sq_annotation}


def write_annotation(layout: str, path: Path, rows: Sequence[Row]) -> None:
    """Write ``rows`` (as parsed by the layout's ``read_annotation``, or generated) as that release's annotation
    file (.xlsx). SMIC has none."""
    if layout not in WRITERS:
        raise ConfigError(f"layout {layout!r} has no annotation file")
    WRITERS[layout](Path(path), rows)


# ------------------------------------------------------------------------------------------------------ builder

def _copy(annotation: Path, dest_folder: Path, name: str | None = None) -> Path:
    dest_folder.mkdir(parents=True, exist_ok=True)
    dest = dest_folder / (name or Path(annotation).name)
    shutil.copyfile(annotation, dest)
    return dest


def _annotation_file(given: Path | None, folder: Path, default: str, write: Callable[[Path], None]) -> Path:
    """The user's annotation file copied into the fixture, or the built-in sample written there as ``default``."""
    if given:
        return _copy(given, folder)
    folder.mkdir(parents=True, exist_ok=True)
    write(folder / default)
    return folder / default


@dataclass
class _Build:
    """One fixture being written: the renderer, the output folder and what was written so far."""

    layout: str
    out: Path
    render: Renderer
    size: int
    seed: int
    raw: bool
    fx: Fixture
    subjects: list[str] = field(default_factory=list)

    def clip(self, folder: Path, row: Row, names: Sequence[str], numbers: Sequence[int], color: bool) -> None:
        if row.invalid:  # e.g. onset after offset: no frames to write; the loader excludes the row
            return
        if not row.aus and self.layout == "smic":  # SMIC has no AU codes: use the generator's AUs for the class
            row = Row(**{**vars(row), "aus": _class_aus(row.emotion, row.clip_id)})
        frames = _render_span(self.render, row, numbers, self.size, self.seed, self.subjects)
        _write_frames(folder, names, frames, color)
        self.fx.clip_folders[f"{row.subject}/{row.clip_id}"] = folder


Builder = Callable[[_Build, "Path | None"], list[Row]]  # writes the tree, returns the rows it was built from
BUILDERS: Registry[Builder] = Registry("fixture layout")  # keyed by dataset name


def _casme2(b: _Build, annotation: Path | None) -> list[Row]:
    if annotation:
        b.fx.annotation = _copy(annotation, b.out)
    else:
        b.fx.annotation = b.out / "CASME2-coding-20190701.xlsx"
        _write_casme2_annotation(b.fx.annotation, _casme2_rows())
    rows = casme2.read_annotation(b.fx.annotation)
    tree, prefix = (b.out / "CASME2_RAW_selected", "img") if b.raw else (b.out / "Cropped", "reg_img")
    for r in rows:
        nums = _clip_frames(r)
        b.clip(tree / r.subject / r.clip_id, r, [f"{prefix}{n}.jpg" for n in nums], nums, color=True)
    return rows


def _samm(b: _Build, annotation: Path | None) -> list[Row]:
    b.fx.annotation = _annotation_file(annotation, b.out, "SAMM_Micro_FACS_Codes_v2.xlsx",
                                       lambda path: _write_samm_annotation(path, _samm_rows()))
    rows = samm.read_annotation(b.fx.annotation)
    for r in rows:
        nums = _clip_frames(r)
        b.clip(b.out / "SAMM" / r.subject / r.clip_id, r, [f"{r.subject}_{n:05d}.jpg" for n in nums], nums, False)
    return rows


def _smic(b: _Build, annotation: Path | None) -> list[Row]:
    if annotation:  # the MEGC2019 GT lists the SMIC-HS clips with their labels
        rows = [Row(g.subject, g.clip, g.label, None, None, None) for g in megc2019.read_gt(annotation)
                if g.dataset == "smic"]
    else:
        rows = _smic_rows()
    release, prefix = ("SMIC_all_raw", "image") if b.raw else ("SMIC_all_cropped", "reg_image")
    hs = b.out / release / "HS"
    for r in rows:
        n = 6 + _seed(b.seed, r.clip_id) % 5
        start = 1000 + _seed(r.clip_id) % 90000
        nums = list(range(start, start + n))
        r.onset, r.offset, r.fps = nums[0], nums[-1], 100.0
        r.apex = (r.onset + r.offset) // 2
        b.clip(hs / r.subject / "micro" / r.emotion / r.clip_id, r, [f"{prefix}{k:06d}.bmp" for k in nums], nums,
               color=True)
    # a non-micro folder, which loaders must ignore
    stray = rows[0]
    _write_frames(hs / stray.subject / "non_micro" / "x_01", [f"{prefix}{k:06d}.bmp" for k in range(1, 4)],
                  placeholder_renderer(ClipSpec(3, 1, 2, 3, "", 100.0, b.size, b.seed, 0)), color=True)
    b.fx.root = b.out / release
    return rows


def _casme_sq(b: _Build, annotation: Path | None) -> list[Row]:
    b.fx.annotation = _annotation_file(annotation, b.out, "CAS(ME)^2code_final.xlsx",
                                       lambda path: _write_casme_sq_annotation(path, _casme_sq_rows()))
    ann = casme_sq.read_annotation(b.fx.annotation)
    rawpic = b.out / "rawpic"
    for r in ann.rows:
        if "rawpic_folder" in r.meta:
            folder = Path(r.meta["rawpic_folder"])
        else:
            code = ann.code_of.get(r.meta["video"]) or casme_sq.VIDEO_CODE[r.meta["video"]]
            # s19's folder carries another subject's prefix in the release (23_0502funnyerrors)
            pre = "23" if r.subject == "s19" and code == "0502" else r.subject[1:]
            folder = Path(r.subject) / f"{pre}_{code}{casme_sq.VIDEO_NAME[code]}"
        nums = _clip_frames(r)
        b.clip(rawpic / folder, r, [f"img{n:03d}.jpg" for n in nums], nums, color=True)
    return ann.rows


def _casme(b: _Build, annotation: Path | None) -> list[Row]:
    b.fx.annotation = _annotation_file(annotation, b.out, "casme.xlsx",
                                       lambda path: _write_casme_annotation(path, _casme_rows()))
    rows = casme.read_annotation(b.fx.annotation)
    for k, r in enumerate(rows):
        nums = _clip_frames(r)
        fmt = "{:03d}" if k >= len(rows) // 2 else "{}"  # later part of the release pads to 3 digits
        b.clip(b.out / "Cropped" / r.subject / r.clip_id, r,
               [f"reg_{r.clip_id}-{fmt.format(n)}.jpg" for n in nums], nums, color=True)
    return rows


def _casme3(b: _Build, annotation: Path | None) -> list[Row]:
    ann_dir = b.out / "annotation" / "partA"
    b.fx.annotation = _annotation_file(annotation, ann_dir, "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx",
                                       lambda path: _write_casme3_annotation(path, _casme3_rows()))
    rows = casme3.read_annotation(b.fx.annotation)
    tree = b.out / "part_A" / "data" / "part_A_split" / "part_A"
    for r in rows:
        nums = _clip_frames(r)
        b.clip(tree / r.subject / r.meta["video"].lower() / "color", r, [f"{n}.jpg" for n in nums], nums, True)
    return rows


for _name, _builder in (("casme2", _casme2), ("samm", _samm), ("smic", _smic), ("casme_sq", _casme_sq),
                        ("casme", _casme), ("casme3", _casme3)):
    BUILDERS.add(_name, _builder)
LAYOUTS = tuple(BUILDERS.names())


def check_annotation(layout: str, annotation: Path) -> None:
    """The file to mirror must exist and must not be another dataset's annotation (a SAMM file for casme2)."""
    from microexp.data.registry import annotation_mismatch, get_dataset

    annotation = Path(annotation)
    if not annotation.is_file():
        raise DataError(f"{annotation}: annotation file not found")
    if why := annotation_mismatch(get_dataset(layout), annotation):
        raise ConfigError(why)


def build_fixture(layout: str, out: Path, annotation: Path | None = None, *, render: Renderer | None = None,
                  size: int = 24, seed: int = 0, raw: bool = False) -> Fixture:
    """Write a ``layout`` tree under ``out`` (see the module doc) and return what was written."""
    if layout not in BUILDERS:
        raise ConfigError(f"unknown fixture layout {layout!r} (known: {', '.join(LAYOUTS)})")
    if annotation is not None:
        check_annotation(layout, Path(annotation))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fx = Fixture(layout, out, None, [])
    build = _Build(layout, out, render or synth_renderer(), size, seed, raw, fx)
    rows = BUILDERS.get(layout)(build, Path(annotation) if annotation else None)
    fx.rows = [r for r in rows if not r.invalid]
    return fx
