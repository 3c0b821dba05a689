"""``microexp data check``: is a dataset tree complete and consistent with its annotation?

:func:`check_dataset` matches the annotation rows with the clip folders on disk and reads every frame the
records would use. It reports clips per class and per subject and names every problem:

* ``missing clip folder`` — an annotation row whose folder does not exist (``row with no folder``);
* ``folder with no row`` — a clip folder no annotation row refers to (for long-video trees — CAS(ME)^2
  ``rawpic``, CAS(ME)^3 Part A, SAMM-LV — a video without annotated expressions is normal and only noted);
* ``missing frames`` — frame numbers absent inside a clip (or inside a span of a long video); the loaders repair
  a few (the frame before each hole is repeated, recorded in ``meta["repairs"]`` and the run's ``repairs.csv``)
  and exclude a clip with more than :data:`~microexp.data.frames.MAX_MISSING_SHARE` of its frames missing;
* ``unreadable image`` — a frame file OpenCV cannot decode (without ``read_images``: whose header cannot be read);
* ``frame size`` — a frame whose size differs from the clip's first frame (read from the image headers);
* ``unknown label`` — an emotion the dataset's labels (or the ``labels`` declared) do not include;
* notes name every piece of an AU cell that is no AU code (file and row; docs/action-units.md);
* ``annotation`` / ``layout`` — the annotation file could not be read (file, row and column named) or the tree
  was not recognised.

Known errors of the official annotation files that the loaders repair (``/`` apex, apex outside onset..offset,
offset ``0``) or cannot use (onset after offset) are listed as *notes*: they do not make the check fail, since a
complete, untouched release has them.

A clip with many missing frames inside it, an unreadable frame header or a frame of another size is excluded by
the loaders too (:func:`~microexp.data._common.build_records`), so ``evaluate`` never trains on it, whichever frames
it samples. Every registered dataset is checked through its spec (:class:`~microexp.data.registry.DatasetSpec`).

When the root looks like another dataset, a parent of the release or a subject/clip folder, hints say so.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from microexp.data import classes as class_protocols
from microexp.data._common import Row, build_records, image_files, numbered_frames, subdirs
from microexp.data.aus import parse_aus_cell
from microexp.data.frames import MAX_MISSING_SHARE, describe_missing
from microexp.data.objective import disagreements
from microexp.data.records import ClipRecord
from microexp.data.registry import annotation_mismatch, dataset_names, get_dataset, parse_labels
from microexp.errors import ConfigError, MicroexpError


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
        fate = ("loaders repeat the frame before each hole (a recorded repair)"
                if len(missing) <= MAX_MISSING_SHARE * (hi - lo + 1) else "loaders exclude the clip")
        report.problems.append(Problem("missing frames", str(folder),
                                       f"{describe_missing(missing, (lo, hi))}; {fate} ({row.source})"))
    if read_images:
        for path, n in zip(frames, numbers, strict=True):
            if lo <= n <= hi and path not in read:
                read.add(path)
                if cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) is None:
                    report.problems.append(Problem("unreadable image", str(path)))


def check_dataset(name: str, root: Path, annotation: Path | None = None, read_images: bool = True,
                  labels: str | Sequence[str] | None = None) -> Report:
    """Check a dataset tree against its annotation (see the module doc). Never raises for a bad tree or file:
    the failure is a problem of the report, with hints. ``labels``: the labels the annotation may use (default:
    the release's own; the plain layout has none unless declared)."""
    spec = get_dataset(name)
    declared = parse_labels(labels)
    root = Path(root)
    report = Report(name, root, annotation=Path(annotation) if annotation else None)
    if spec.check is not None:
        return spec.check(root, annotation, read_images, report)
    if spec.scan is None:
        raise ConfigError(f"data check: dataset {name} has no tree scan")
    if not root.exists():
        report.problems.append(Problem("missing root", str(root), "the folder does not exist"))
        return report
    try:
        if annotation is not None and (why := annotation_mismatch(spec, Path(annotation))):
            raise ConfigError(why)
        scan = spec.scan(root, Path(annotation) if annotation else None)
    except MicroexpError as exc:
        report.problems.append(Problem("annotation" if "row" in str(exc) or "column" in str(exc) else "layout",
                                       str(root), str(exc)))
        report.hints += hints(name, root)
        return report
    report.tree, report.annotation, report.rows = scan.tree, scan.annotation, len(scan.rows)
    if not scan.rows:  # SMIC (labels from folders) on a wrong folder finds nothing: never "no problems found"
        report.problems.append(Problem("layout", str(root), f"no {name} clips found under {scan.tree}"))
        report.hints += hints(name, root)
        return report
    try:
        user_labels = declared or (spec.declared_labels(root) if spec.declared_labels else None)
    except MicroexpError as exc:
        report.problems.append(Problem("labels", str(root), str(exc)))
        return report
    labels_ = user_labels or spec.labels
    if user_labels:  # a declared label without a clip would be an empty class (evaluate refuses it)
        used = {r.emotion for r in scan.rows}
        report.problems += [Problem("label with no clip", repr(x), "declared but no annotation row uses it")
                            for x in user_labels if x not in used]
    listing: dict[Path, tuple] = {}
    read: set[Path] = set()
    referenced: set[Path] = set()
    for row in scan.rows:
        if labels_ is not None and row.emotion not in labels_:
            report.problems.append(Problem("unknown label", f"{row.subject}/{row.clip_id}",
                                           f"{row.emotion!r} is not one of {list(labels_)} ({row.source})"))
        for piece in parse_aus_cell(row.aus).unparsed:
            report.notes.append(f"AU code not understood, left out of the clip's AUs: {piece!r} ({row.source})")
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
    # exclusions of build_records: no folder, no frames, invalid row and missing frames are reported above; the
    # rest of its frame checks (the ones evaluate applies too) become problems here
    report.records, dropped = build_records(name, scan.tree, scan.rows)
    for exc in dropped:
        kind, _, rest = exc.reason.partition(": ")
        if kind == "frame size" or (kind == "unreadable image" and not read_images):
            where, _, detail = rest.partition(": ")
            report.problems.append(Problem(kind, where, detail))
    for r in report.records:  # frame repairs are reported above as problems: the annotation's repairs are notes
        notes = [x for x in r.meta.get("repairs", []) if "has no file" not in x and not x.startswith("missing frames")]
        if notes:
            report.notes.append(f"repaired {r.subject}/{r.clip_id}: {'; '.join(notes)}")
    uses = (f"; {name}-objective uses the annotation's class, {name}-objective-rule the rule's"
            if f"{name}-objective" in class_protocols.names() else "")
    sources = sorted({str(r.meta["objective_source"]) for r in report.records if r.meta.get("objective_source")})
    for src in sources:
        listed = sum(1 for r in report.records
                     if r.meta.get("objective_source") == src and r.meta.get("objective_class"))
        report.notes.append(f"objective classes from {src} (in place of the coding file's own column): {listed} of "
                            f"{len(report.records)} clips listed")
    for key, column, rule, aus in disagreements(report.records):
        report.notes.append(f"objective class {column} in the annotation, {rule} by the AU rule of Davison et al. "
                            f"2018: {key} (AUs {aus!r}{uses})")
    if not report.records:
        report.hints += hints(name, root)
    return report


# ---------------------------------------------------------------------------------------------------- hints

def _looks(name: str, folder: Path) -> bool:
    looks_like = get_dataset(name).looks_like
    try:
        return looks_like is not None and looks_like(folder)
    except (MicroexpError, OSError):
        return False


def detect(folder: Path) -> list[str]:
    """Dataset names whose release layout ``folder`` looks like."""
    return [n for n in dataset_names() if _looks(n, folder)]


def hints(name: str, root: Path) -> list[str]:
    out: list[str] = []
    root = Path(root)
    spec = get_dataset(name)
    if not root.is_dir():
        return out
    if image_files(root):
        out.append(f"{root} holds image files: it looks like a clip folder; point --root at the release folder "
                   f"(several levels up)")
    if spec.subject_pattern and re.fullmatch(spec.subject_pattern, root.name, re.I):
        out.append(f"{root.name} looks like a {name} subject folder; point --root at the release folder above it "
                   f"({root.parent})")
    if _looks(name, root):
        return out
    family = spec.family or name
    others = [n for n in detect(root) if n != name and (get_dataset(n).family or n) != family]
    if others:
        out.append(f"{root} looks like {' / '.join(others)}, not {name}: try --dataset {others[0]}")
    for child in [*subdirs(root), *(g for c in subdirs(root) for g in subdirs(c))]:
        if _looks(name, child):
            out.append(f"{child} looks like the {name} release: try --root {child}")
            break
    if not out:
        out.append(f"{root} does not look like a {name} release; see the layout in the {spec.loader.__module__}"
                   " module documentation")
    return out
