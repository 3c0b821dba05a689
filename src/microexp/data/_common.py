"""Shared machinery of the real-dataset loaders: reading annotation sheets, coercing cells, matching rows to
clip folders, building :class:`ClipRecord` objects.

Every loader works in two steps so that ``microexp data check`` can reuse the first one:

1. ``read_*`` parses the annotation file into :class:`Row` objects (no disk access besides the file itself);
   malformed files raise :class:`AnnotationError` naming file, row and column.
2. :func:`build_records` matches rows to clip folders and frame files; anything unusable becomes an
   :class:`Exclusion`, never a silent drop.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from microexp.data.frames import IMAGE_SUFFIXES, frame_number, sequence_defect
from microexp.data.records import ClipRecord, Exclusion
from microexp.errors import AnnotationError, DataError

HEADER_SCAN_ROWS = 30  # a header is looked for in the first rows (SAMM: row 14, SAMM-LV: row 10)


@dataclass
class Row:
    """One parsed annotation row (or one labelled folder, for SMIC)."""

    subject: str  # on-disk spelling of the subject folder name
    clip_id: str
    emotion: str
    onset: int | None
    apex: int | None
    offset: int | None
    folder: Path | None = None  # clip folder, relative to the tree root (set by the dataset module)
    aus: str = ""
    fps: float = 30.0
    source: str = ""  # "file:row"
    span: bool = False  # True: the folder is a long video and the clip is frames onset..offset of it
    meta: dict[str, Any] = field(default_factory=dict)
    invalid: str | None = None  # why the row cannot be used (becomes an Exclusion; the file is not rejected)

    def repair(self, text: str) -> None:
        self.meta.setdefault("repairs", []).append(text)


@dataclass
class Scan:
    """What ``data check`` compares: the annotation's rows and every clip (or long-video) folder on disk."""

    tree: Path
    annotation: Path | None
    rows: list[Row]
    folders: list[Path]  # relative to tree


def two_level_folders(tree: Path, subject: str, clip: str = r".+") -> list[Path]:
    """Clip folders ``<subject>/<clip>`` under ``tree`` (regexes, case-insensitive), relative to ``tree``."""
    rs, rc = re.compile(subject, re.I), re.compile(clip, re.I)
    return [c.relative_to(tree) for s in subdirs(tree) if rs.fullmatch(s.name) for c in subdirs(s)
            if rc.fullmatch(c.name) or image_files(c)]


def norm(text: object) -> str:
    """Header comparison key: lower case, alphanumerics only (``Onset Frame`` == ``OnsetFrame`` == ``onset_frame``)."""
    return re.sub(r"[^0-9a-z]", "", str(text).lower())


def is_blank(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and value != value:
        return True
    return isinstance(value, str) and not value.strip()


def cell_text(value: object) -> str:
    """A cell as text: ints stay ints (``12`` not ``12.0``), strings are stripped, blanks are ``""``."""
    if is_blank(value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def int_cell(value: object, file: Path, row: int, column: str, sentinels: Mapping[str, None] | None = None
             ) -> int | None:
    """Frame number from a cell stored as int, float or text; ``sentinels`` (e.g. ``{"/": None}``) map to None."""
    text = cell_text(value)
    if sentinels is not None and text in sentinels:
        return None
    try:
        f = float(text)
    except ValueError:
        raise AnnotationError(f"{text!r} is not a frame number", file=file, row=row, column=column) from None
    if f != f or not f.is_integer():
        raise AnnotationError(f"{text!r} is not a whole frame number", file=file, row=row, column=column)
    return int(f)


def _excel(path: Path) -> pd.ExcelFile:
    with warnings.catch_warnings():  # pandas flags its xlrd engine as deprecated; xlrd is what reads legacy .xls
        warnings.filterwarnings("ignore", message=".*xlrd engine is deprecated.*")
        return pd.ExcelFile(path)


def read_sheet(path: Path, sheet: str | int | None = 0) -> pd.DataFrame:
    """The raw cells of one sheet (no header interpretation), as objects, for .xlsx/.xls/.csv."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path, header=None, dtype=object, keep_default_na=False, skip_blank_lines=False,
                               encoding_errors="replace")
        if suffix in (".xlsx", ".xlsm", ".xls"):
            book = _excel(path)
            if isinstance(sheet, str) and sheet not in book.sheet_names:
                matches = [s for s in book.sheet_names if norm(s) == norm(sheet)]
                if not matches:
                    raise AnnotationError(f"no sheet {sheet!r} (sheets: {book.sheet_names})", file=path)
                sheet = matches[0]
            return pd.read_excel(book, sheet_name=sheet if sheet is not None else 0, header=None, dtype=object)
    except AnnotationError:
        raise
    except Exception as exc:  # pandas/openpyxl/xlrd raise many types for a damaged file
        raise AnnotationError(f"cannot read the file ({type(exc).__name__}: {exc})", file=path) from None
    raise AnnotationError(f"unsupported annotation file type {suffix!r} (expected .xlsx, .xls or .csv)", file=path)


def sheet_names(path: Path) -> list[str]:
    if Path(path).suffix.lower() == ".csv":
        return []
    try:
        return list(_excel(path).sheet_names)
    except Exception as exc:
        raise AnnotationError(f"cannot read the file ({type(exc).__name__}: {exc})", file=path) from None


@dataclass
class Table:
    """A sheet with its header located: ``rows`` are (spreadsheet row number, {canonical column: cell})."""

    file: Path
    header_row: int  # 1-based row of the header
    columns: dict[str, int]  # canonical name -> column index
    rows: list[tuple[int, dict[str, Any]]]


def locate_header(raw: pd.DataFrame, file: Path, columns: Mapping[str, Sequence[str]],
                  required: Iterable[str], optional: Iterable[str] = ()) -> Table:
    """Find the header row (the first row holding all required columns, under any of their aliases) and return
    the data rows below it, keyed by canonical column name. Trailing fully blank rows are dropped."""
    required, optional = list(required), list(optional)
    best: tuple[int, int, list[str]] | None = None  # (matches, row, missing) of the best candidate
    for r in range(min(HEADER_SCAN_ROWS, len(raw))):
        cells = [norm(v) if not is_blank(v) else "" for v in raw.iloc[r].tolist()]
        found: dict[str, int] = {}
        for name in required + optional:
            for alias in columns[name]:
                if norm(alias) in cells:
                    found[name] = cells.index(norm(alias))
                    break
        missing = [c for c in required if c not in found]
        if not missing:
            rows = []
            for i in range(r + 1, len(raw)):
                values = raw.iloc[i].tolist()
                if all(is_blank(v) for v in values):
                    continue
                rows.append((i + 1, {name: values[j] for name, j in found.items()}))
            return Table(file, r + 1, found, rows)
        n = len(required) - len(missing)
        if n > 0 and (best is None or n > best[0]):
            best = (n, r + 1, missing)
    if best is not None:
        names = [columns[c][0] for c in best[2]]
        raise AnnotationError(f"header row lacks column(s) {names}", file=file, row=best[1], column=names[0])
    expected = [columns[c][0] for c in required]
    raise AnnotationError(f"no header row with columns {expected} in rows 1-{min(HEADER_SCAN_ROWS, len(raw))}",
                          file=file, row=1, column=expected[0])


def checked_rows(rows: list[Row], file: Path, header_row: int, column: str = "Filename") -> list[Row]:
    """The closing checks of a coding sheet: at least one data row, and no clip twice."""
    if not rows:
        raise AnnotationError("no data rows below the header", file=file, row=header_row)
    check_duplicates(rows, file, column=column)
    return rows


def check_duplicates(rows: Sequence[Row], file: Path, key: Any = None, column: str = "Filename") -> None:
    seen: dict[Any, str] = {}
    for row in rows:
        k = key(row) if key else (row.subject, row.clip_id)
        if k in seen:
            line = int(row.source.rsplit(":", 1)[-1])
            raise AnnotationError(f"duplicate clip {row.subject}/{row.clip_id} (first at {seen[k]})",
                                  file=file, row=line, column=column)
        seen[k] = row.source


def find_file(folders: Iterable[Path], patterns: Sequence[str]) -> Path | None:
    """First file matching one of the glob patterns in one of the folders (patterns in preference order)."""
    for pattern in patterns:
        for folder in folders:
            if folder.is_dir():
                hits = sorted(p for p in folder.glob(pattern) if p.is_file() and not p.name.startswith("~$"))
                if hits:
                    return hits[-1]  # date-stamped names: the newest sorts last
    return None


def image_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]


def numbered_frames(folder: Path) -> tuple[tuple[Path, ...], tuple[int, ...]]:
    """Frames of a folder in numeric order; image files without a number are ignored (stray files)."""
    numbered = []
    for p in image_files(folder):
        try:
            numbered.append((frame_number(p), p))
        except DataError:
            continue
    numbered.sort()
    return tuple(p for _, p in numbered), tuple(n for n, _ in numbered)


def _nearest(numbers: Sequence[int], target: int) -> int:
    return min(numbers, key=lambda n: (abs(n - target), n))


def build_records(dataset: str, tree: Path, rows: Iterable[Row]) -> tuple[list[ClipRecord], list[Exclusion]]:
    """Match rows to clip folders under ``tree``. Missing folders/frames become exclusions, and so does a clip whose
    frames are not one sequence (many frames missing inside it, an unreadable header, a frame of another size:
    :func:`~microexp.data.frames.sequence_defect`; a few missing frames are filled by the frame before each hole,
    recorded as a repair); a key frame (onset/apex/offset) outside the frames on disk is
    replaced by the nearest existing frame, recorded as a repair, so that every record's key frames are among its
    ``frame_numbers``."""
    records: list[ClipRecord] = []
    excluded: list[Exclusion] = []
    listing: dict[Path, tuple[tuple[Path, ...], tuple[int, ...]]] = {}
    for row in rows:
        key = f"{dataset}/{row.subject}/{row.clip_id}"
        if row.invalid:
            excluded.append(Exclusion(key, row.invalid))
            continue
        assert row.folder is not None
        folder = tree / row.folder
        if not folder.is_dir():
            excluded.append(Exclusion(key, f"clip folder {folder} not found ({row.source})"))
            continue
        if folder not in listing:
            listing[folder] = numbered_frames(folder)
        frames, numbers = listing[folder]
        if row.span:
            lo = row.onset if row.onset is not None else -1
            hi = row.offset if row.offset is not None else (row.apex if row.apex is not None else lo)
            pairs = [(p, n) for p, n in zip(frames, numbers, strict=True) if lo <= n <= hi]
            frames, numbers = tuple(p for p, _ in pairs), tuple(n for _, n in pairs)
        if not frames:
            excluded.append(Exclusion(key, f"no frame files in {folder}" + (
                f" for frames {row.onset}..{row.offset}" if row.span else "") + f" ({row.source})"))
            continue
        frames, numbers, repair, defect = sequence_defect(frames, numbers)  # the same verdict for check and evaluate
        if defect:
            excluded.append(Exclusion(key, f"{defect[0]}: {folder}: {defect[1]} ({row.source})"))
            continue
        if repair:
            row.repair(repair)
        marks = {"onset": row.onset, "apex": row.apex, "offset": row.offset}
        have = set(numbers)
        for name, value in marks.items():
            if value is not None and value not in have:
                near = _nearest(numbers, value)
                row.repair(f"{name} frame {value} has no file; nearest frame {near} used")
                marks[name] = near
        records.append(ClipRecord(dataset=dataset, subject=row.subject, clip_id=row.clip_id, emotion=row.emotion,
                                  frames=frames, frame_numbers=numbers, onset=marks["onset"], apex=marks["apex"],
                                  offset=marks["offset"], fps=row.fps, aus=row.aus, source=row.source,
                                  meta=dict(row.meta, folder=str(folder))))
    return records, excluded


def subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def pick_tree(root: Path, candidates: Sequence[str], looks_like: Any) -> Path:
    """The frame tree to read: ``root`` itself when it already looks like one, else the first existing candidate
    sub-path (preference order), also one level deeper (``Cropped/Cropped``)."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"dataset root {root} does not exist")
    if not root.is_dir():
        raise DataError(f"dataset root {root} is not a folder")
    if looks_like(root):
        return root
    for cand in candidates:
        p = root / cand
        if p.is_dir():
            inner = p / Path(cand).name
            return inner if not looks_like(p) and inner.is_dir() and looks_like(inner) else p
    return root


def middle(row: Row) -> int | None:
    if row.onset is None or row.offset is None:
        return None
    return (row.onset + row.offset) // 2


def fix_apex(row: Row, raw: str = "") -> None:
    """Known errors of the official files, repaired and recorded in ``meta["repairs"]``: offset ``0`` (not
    annotated) -> None, the clip ends at the apex; apex not annotated or outside onset..offset -> the middle frame.
    Onset after offset cannot be repaired: the row is marked invalid (an exclusion, with the reason)."""
    if row.offset == 0 and row.onset:
        row.offset = None
        row.repair("offset 0 (not annotated): the clip ends at its apex")
    if row.onset is None or row.offset is None:
        return
    if row.offset < row.onset:
        row.invalid = f"onset {row.onset} is after offset {row.offset} ({row.source})"
        return
    if row.apex is None:
        row.apex = middle(row)
        row.meta["apex_annotated"] = False
        row.repair(f"apex {raw!r} not annotated; middle frame {row.apex} used")
    elif not row.onset <= row.apex <= row.offset:
        bad, row.apex = row.apex, middle(row)
        row.meta["apex_annotated"] = False
        row.repair(f"apex {bad} outside onset..offset {row.onset}..{row.offset}; middle frame {row.apex} used")


def looks_like_subject_tree(pattern: str) -> Any:
    """Predicate: the folder holds at least one subject folder whose name matches ``pattern``."""
    rx = re.compile(pattern, re.IGNORECASE)

    def check(folder: Path) -> bool:
        return any(rx.fullmatch(p.name) for p in subdirs(folder))

    return check


def resolve_tree(root: Path, annotation: Path | None, trees: Sequence[str], looks_like: Callable[[Path], bool],
                 patterns: Sequence[str], missing: str, levels: int = 1) -> tuple[Path, Path]:
    """(frame tree, annotation file) for a user-given root: the tree found by :func:`pick_tree`, the annotation
    given, or else found in the tree, its ``levels`` parents or the root. ``missing`` names the expected file."""
    tree = pick_tree(Path(root), trees, looks_like)
    if annotation is None:
        places = [tree, *list(tree.parents)[:levels], Path(root)]
        annotation = find_file(places, patterns)
        if annotation is None:
            raise DataError(f"{root}: no {missing} found in the tree or its parent; pass --annotation FILE")
    return tree, Path(annotation)


def subject_number(cell: object, file: Path, row: int, template: str) -> str:
    """A numeric subject cell as its folder name (``template`` e.g. ``"sub{:02d}"``, ``"{:03d}"``)."""
    text = cell_text(cell)
    if not text.isdigit():
        raise AnnotationError(f"subject {text!r} is not a subject number", file=file, row=row, column="Subject")
    return template.format(int(text))
