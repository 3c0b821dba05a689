"""``microexp data check``: is a dataset tree complete and consistent with its annotation?

:func:`check_dataset` matches the annotation rows with the clip folders on disk and reads every frame the
records would use. It reports clips per class and per subject and names every problem:

* ``missing clip folder`` — an annotation row whose folder does not exist (``row with no folder``);
* ``folder with no row`` — a clip folder no annotation row refers to (for long-video trees — CAS(ME)^2
  ``rawpic``, CAS(ME)^3 Part A, SAMM-LV — a video without annotated expressions is normal and only noted);
* ``missing frames`` — frame numbers absent inside a clip (or inside a span of a long video);
* ``unreadable image`` — a frame file OpenCV cannot decode;
* ``unknown label`` — an emotion the dataset's labels do not include;
* ``annotation`` / ``layout`` — the annotation file could not be read (file, row and column named) or the tree
  was not recognised.

Known errors of the official annotation files that the loaders repair (``/`` apex, apex outside onset..offset,
offset ``0``) or cannot use (onset after offset) are listed as *notes*: they do not make the check fail, since a
complete, untouched release has them.

When the root looks like another dataset, a parent of the release or a subject/clip folder, hints say so.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from microexp.data import casme, casme2, casme3, casme_sq, megc2019, samm, samm_lv, smic
from microexp.data._common import (
    Row,
    build_records,
    find_file,
    image_files,
    numbered_frames,
    pick_tree,
    subdirs,
)
from microexp.data.records import ClipRecord
from microexp.errors import ConfigError, MicroexpError

LABELS: dict[str, tuple[str, ...]] = {
    "casme2": ("happiness", "disgust", "repression", "surprise", "others", "sadness", "fear"),
    "samm": ("anger", "contempt", "disgust", "fear", "happiness", "other", "sadness", "surprise"),
    "samm_lv": ("macro", "micro"),
    "smic": smic.EMOTIONS, "smic_vis": smic.EMOTIONS, "smic_nir": smic.EMOTIONS,
    "casme_sq": casme_sq.EMOTIONS,
    "casme": casme.EMOTIONS,
    "casme3": ("disgust", "surprise", "others", "fear", "anger", "sad", "happy"),
    "casme3_mm": ("macro", "micro"),
    "megc2019": megc2019.CLASSES,
}


@dataclass
class Problem:
    kind: str
    where: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind}: {self.where}" + (f" — {self.detail}" if self.detail else "")


@dataclass
class Report:
    dataset: str
    root: Path
    tree: Path | None = None
    annotation: Path | None = None
    records: list[ClipRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rows: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def kinds(self) -> Counter[str]:
        return Counter(p.kind for p in self.problems)

    def per_class(self) -> Counter[str]:
        return Counter(r.emotion for r in self.records)

    def per_subject(self) -> Counter[str]:
        return Counter(r.subject for r in self.records)

    def text(self, limit: int = 50) -> str:
        lines = [f"dataset {self.dataset}: root {self.root}"]
        if self.tree is not None:
            lines.append(f"  frames:     {self.tree}")
        if self.annotation is not None:
            lines.append(f"  annotation: {self.annotation} ({self.rows} rows)")
        subjects = self.per_subject()
        lines.append(f"  clips found: {len(self.records)} from {len(subjects)} subjects")
        lines.append("  per class:   " + (", ".join(f"{k} {v}" for k, v in sorted(self.per_class().items())) or "-"))
        lines.append("  per subject: " + (", ".join(f"{k} {v}" for k, v in sorted(subjects.items())) or "-"))
        if self.problems:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(self.kinds().items()))
            lines.append(f"  {len(self.problems)} problem(s): {counts}")
            lines += [f"    {p}" for p in self.problems[:limit]]
            if len(self.problems) > limit:
                lines.append(f"    … and {len(self.problems) - limit} more")
        else:
            lines.append("  no problems found")
        if self.notes:
            lines.append(f"  {len(self.notes)} note(s) on the annotation (repaired or left out; not problems):")
            lines += [f"    {n}" for n in self.notes[:limit]]
        lines += [f"  hint: {h}" for h in self.hints]
        return "\n".join(lines)


@dataclass
class Scan:
    tree: Path
    annotation: Path | None
    rows: list[Row]
    folders: list[Path]  # every clip (or long-video) folder on disk, relative to tree


def _two_level(tree: Path, subject: str, clip: str) -> list[Path]:
    rs, rc = re.compile(subject, re.I), re.compile(clip, re.I)
    return [c.relative_to(tree) for s in subdirs(tree) if rs.fullmatch(s.name) for c in subdirs(s)
            if rc.fullmatch(c.name) or image_files(c)]


def _scan_casme2(root: Path, ann: Path | None) -> Scan:
    tree, a = casme2.resolve(root, ann)
    return Scan(tree, a, casme2.read_annotation(a), _two_level(tree, r"sub\d+", r".+"))


def _scan_casme(root: Path, ann: Path | None) -> Scan:
    tree, a = casme.resolve(root, ann)
    return Scan(tree, a, casme.read_annotation(a), _two_level(tree, r"sub\d+", r".+"))


def _scan_samm(root: Path, ann: Path | None) -> Scan:
    tree, a = samm.resolve(root, ann)
    return Scan(tree, a, samm.read_annotation(a), _two_level(tree, r"\d{3}", r".+"))


def _scan_samm_lv(root: Path, ann: Path | None) -> Scan:
    tree, a = samm_lv.resolve(root, ann)
    folders = [p.relative_to(tree) for p in subdirs(tree) if re.fullmatch(r"\d{3}_\d+", p.name)]
    return Scan(tree, a, samm_lv.read_annotation(a), folders)


def _scan_smic(name: str) -> Callable[[Path, Path | None], Scan]:
    camera, fps = smic.CAMERAS[name]

    def scan(root: Path, ann: Path | None) -> Scan:
        if ann is not None:
            raise ConfigError("SMIC has no annotation file (labels come from the folder names); leave --annotation out")
        tree = smic.find_tree(root, camera)
        rows, _ = smic.scan_rows(tree, fps)
        return Scan(tree, None, rows, [r.folder for r in rows if r.folder is not None])

    return scan


def _scan_casme_sq(root: Path, ann: Path | None) -> Scan:
    tree, a = casme_sq.resolve(root, ann)
    parsed = casme_sq.read_annotation(a)
    rows = casme_sq.place(parsed.rows, tree, parsed.code_of)
    return Scan(tree, a, rows, _two_level(tree, r"s?\d+", r".+"))


def _scan_casme3(mm: bool) -> Callable[[Path, Path | None], Scan]:
    def scan(root: Path, ann: Path | None) -> Scan:
        tree, kind = casme3.find_tree(root)
        patterns = casme3.MM_PATTERNS if mm else casme3.LABEL_PATTERNS
        a = ann or find_file([Path(root) / d for d in casme3.ANNOTATION_DIRS] + [tree.parent, tree.parent.parent],
                             patterns)
        if a is None:
            raise ConfigError(f"{root}: no CAS(ME)^3 annotation found (annotation/partA/{patterns[0]}); "
                              "pass --annotation FILE")
        rows = (casme3.read_macro_micro if mm else casme3.read_annotation)(Path(a))
        casme3.place(rows, tree, kind)
        if kind == "full":
            folders = [(v / "color").relative_to(tree) for s in subdirs(tree) for v in subdirs(s)
                       if (v / "color").is_dir()]
        else:
            folders = [p.relative_to(tree) for p in subdirs(tree)]
        return Scan(tree, Path(a), rows, folders)

    return scan


SCANNERS: dict[str, Callable[[Path, Path | None], Scan]] = {
    "casme2": _scan_casme2, "casme": _scan_casme, "samm": _scan_samm, "samm_lv": _scan_samm_lv,
    "smic": _scan_smic("smic"), "smic_vis": _scan_smic("smic_vis"), "smic_nir": _scan_smic("smic_nir"),
    "casme_sq": _scan_casme_sq, "casme3": _scan_casme3(False), "casme3_mm": _scan_casme3(True),
}


def _frame_problems(report: Report, row: Row, tree: Path, listing: dict[Path, tuple], read_images: bool,
                    read: set[Path]) -> None:
    assert row.folder is not None
    folder = tree / row.folder
    if folder not in listing:
        listing[folder] = numbered_frames(folder)
    frames, numbers = listing[folder]
    if row.span:
        lo = row.onset if row.onset is not None else 0
        hi = row.offset if row.offset is not None else (row.apex if row.apex is not None else lo)
    else:
        bounds = [n for n in (row.onset, row.offset, numbers[0] if numbers else None,
                              numbers[-1] if numbers else None) if n is not None]
        if not bounds:
            report.problems.append(Problem("missing frames", str(folder), f"the clip folder has no frames ({row.source})"))
            return
        lo, hi = min(bounds), max(bounds)
    have = set(numbers)
    missing = [n for n in range(lo, hi + 1) if n not in have]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" …" if len(missing) > 10 else "")
        report.problems.append(Problem("missing frames", str(folder),
                                       f"{len(missing)} frame number(s) absent in {lo}..{hi}: {shown} ({row.source})"))
    if read_images:
        for path, n in zip(frames, numbers, strict=True):
            if lo <= n <= hi and path not in read:
                read.add(path)
                if cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) is None:
                    report.problems.append(Problem("unreadable image", str(path)))


def check_dataset(name: str, root: Path, annotation: Path | None = None, read_images: bool = True) -> Report:
    """Check a dataset tree against its annotation (see the module doc). Never raises for a bad tree or file:
    the failure is a problem of the report, with hints."""
    root = Path(root)
    report = Report(name, root, annotation=Path(annotation) if annotation else None)
    if name == "megc2019":
        return _check_megc(root, annotation, read_images, report)
    if name not in SCANNERS:
        raise ConfigError(f"data check: unknown dataset {name!r} (known: {', '.join(sorted(SCANNERS))}, megc2019)")
    if not root.exists():
        report.problems.append(Problem("missing root", str(root), "the folder does not exist"))
        return report
    try:
        scan = SCANNERS[name](root, Path(annotation) if annotation else None)
    except MicroexpError as exc:
        report.problems.append(Problem("annotation" if "row" in str(exc) or "column" in str(exc) else "layout",
                                       str(root), str(exc)))
        report.hints += hints(name, root)
        return report
    report.tree, report.annotation, report.rows = scan.tree, scan.annotation, len(scan.rows)
    labels = LABELS[name]
    listing: dict[Path, tuple] = {}
    read: set[Path] = set()
    referenced: set[Path] = set()
    for row in scan.rows:
        if row.emotion not in labels:
            report.problems.append(Problem("unknown label", f"{row.subject}/{row.clip_id}",
                                           f"{row.emotion!r} is not one of {list(labels)} ({row.source})"))
        if row.invalid:
            report.notes.append(f"left out {row.subject}/{row.clip_id}: {row.invalid}")
            continue
        assert row.folder is not None
        referenced.add(row.folder)
        if not (scan.tree / row.folder).is_dir():
            report.problems.append(Problem("missing clip folder", str(scan.tree / row.folder),
                                           f"row with no folder ({row.source})"))
            continue
        _frame_problems(report, row, scan.tree, listing, read_images, read)
    spans = any(r.span for r in scan.rows)
    for folder in scan.folders:
        if folder in referenced:
            continue
        if spans:  # a long video without an annotated expression is normal (CAS(ME)^3: 13 videos per subject)
            report.notes.append(f"long video with no annotated expression: {scan.tree / folder}")
        else:
            report.problems.append(Problem("folder with no row", str(scan.tree / folder),
                                           "no annotation row refers to it"))
    # exclusions of build_records (no folder, no frames, invalid row) are all reported above
    report.records, _ = build_records(name, scan.tree, scan.rows)
    report.notes += [f"repaired {r.subject}/{r.clip_id}: {'; '.join(r.meta['repairs'])}"
                     for r in report.records if r.meta.get("repairs") and "has no file" not in str(r.meta["repairs"])]
    if not report.records:
        report.hints += hints(name, root)
    return report


def _check_megc(root: Path, annotation: Path | None, read_images: bool, report: Report) -> Report:
    try:
        src = megc2019.find_sources(root, Path(annotation) if annotation else None)
    except MicroexpError as exc:
        report.problems.append(Problem("layout", str(root), str(exc)))
        return report
    report.annotation = src.gt
    for ds in megc2019.SOURCES:
        sub = check_dataset(ds, src.roots[ds], src.annotations[ds], read_images)
        report.problems += [Problem(p.kind, f"[{ds}] {p.where}", p.detail) for p in sub.problems]
        report.hints += [f"[{ds}] {h}" for h in sub.hints]
    try:
        records, excluded = megc2019.load(root, annotation)
    except MicroexpError as exc:
        report.problems.append(Problem("annotation", str(src.gt), str(exc)))
        return report
    report.records, report.rows = records, len(records) + len(excluded)
    for exc in excluded:
        if "not loaded" in exc.reason:
            report.problems.append(Problem("missing clip folder", exc.clip, exc.reason))
    return report


# ---------------------------------------------------------------------------------------------------- hints

def _looks(name: str, folder: Path) -> bool:
    try:
        if name in ("casme2", "casme"):
            mod = casme2 if name == "casme2" else casme
            tree = pick_tree(folder, mod.TREES, mod.looks_like_tree)
            return mod.looks_like_tree(tree) and find_file([tree, tree.parent, folder], mod.ANNOTATION_PATTERNS) is not None
        if name == "samm":
            tree = pick_tree(folder, samm.TREES, samm.looks_like_tree)
            return any(re.fullmatch(r"\d{3}_\d+_\d+", c.name) for s in subdirs(tree) for c in subdirs(s))
        if name == "samm_lv":
            return samm_lv.looks_like_tree(pick_tree(folder, samm_lv.TREES, samm_lv.looks_like_tree))
        if name in ("smic", "smic_vis", "smic_nir"):
            return smic.looks_like_tree(smic.find_tree(folder, smic.CAMERAS[name][0]))
        if name == "casme_sq":
            return any((folder / t).is_dir() for t in casme_sq.TREES) or any(
                re.fullmatch(r"\d+_\d{4}\w+", v.name) for s in subdirs(folder) for v in subdirs(s))
        if name in ("casme3", "casme3_mm"):
            tree, kind = casme3.find_tree(folder)
            return casme3._is_full(tree) or casme3._is_clips(tree)
    except (MicroexpError, OSError):
        return False
    return False


def detect(folder: Path) -> list[str]:
    """Dataset names whose release layout ``folder`` looks like."""
    return [n for n in SCANNERS if _looks(n, folder)]


_SUBJECT_NAMES = {"casme2": r"sub\d+", "casme": r"sub\d+", "samm": r"\d{3}", "smic": r"s\d+", "smic_vis": r"s\d+",
                  "smic_nir": r"s\d+", "casme_sq": r"s?\d+", "casme3": r"spno\.?\d+", "casme3_mm": r"spno\.?\d+",
                  "samm_lv": r"\d{3}_\d+"}


def hints(name: str, root: Path) -> list[str]:
    out: list[str] = []
    root = Path(root)
    if not root.is_dir():
        return out
    if image_files(root):
        out.append(f"{root} holds image files: it looks like a clip folder; point --root at the release folder "
                   f"(several levels up)")
    subject_rx = _SUBJECT_NAMES.get(name)
    if subject_rx and re.fullmatch(subject_rx, root.name, re.I):
        out.append(f"{root.name} looks like a {name} subject folder; point --root at the release folder above it "
                   f"({root.parent})")
    if _looks(name, root):
        return out
    others = [n for n in detect(root) if n != name and not (n.startswith("smic") and name.startswith("smic"))]
    if others:
        out.append(f"{root} looks like {' / '.join(others)}, not {name}: try --dataset {others[0]}")
    for child in [*subdirs(root), *(g for c in subdirs(root) for g in subdirs(c))]:
        if _looks(name, child):
            out.append(f"{child} looks like the {name} release: try --root {child}")
            break
    if not out:
        out.append(f"{root} does not look like a {name} release; see the layout in the microexp.data.{name.split('_')[0]}"
                   " module documentation")
    return out
