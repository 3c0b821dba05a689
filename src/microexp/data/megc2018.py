"""MEGC 2018 composite: CASME II + SAMM in the AU-based objective classes I-V.

MEGC 2018 (Yap, See, Hong and Wang, "Facial micro-expressions grand challenge 2018 summary", FG 2018,
doi:10.1109/FG.2018.00106) scored recognition of the objective classes of Davison et al. 2018 on CASME II and SAMM,
two ways: composite evaluation (LOSO over the subjects of both; protocol ``megc2019``, which is LOSO over
dataset-qualified subjects with per-dataset scores) and hold-out-database evaluation (train on one dataset, test on
the other; protocol ``lodo`` with ``train_datasets``/``test_dataset``).

``root`` is a folder holding the two releases as delivered (found by their layout in any sub-folder, as
``megc2019``), or a ``.yaml``/``.json`` file mapping ``casme2`` and ``samm`` to their roots (relative to the file),
optionally with ``casme2_annotation`` and ``samm_annotation``. Each clip's ``emotion`` is its objective class as the
coding file's own column gives it (MEGC 2018 took the coders' classes; ``not coded`` where the file has none),
``meta["source_emotion"]`` the dataset's estimated emotion. Protocols ``megc2018-objective`` (I-V) and ``-7`` use
that class; ``megc2018-objective-rule`` and ``-rule-7`` derive it from the clip's AUs by the rule
(:mod:`microexp.data.objective`). Subjects are prefixed with the dataset
(``casme2_sub01``, ``samm_006``) so LOSO groups stay unique.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from microexp.data import casme2, samm
from microexp.data.megc2019 import find_releases, spec_path
from microexp.data.objective import CLASSES, NOT_CODED, coded_class, objective_protocols
from microexp.data.records import ClipRecord, Exclusion
from microexp.data.registry import DatasetSpec, register_dataset
from microexp.errors import DataError, MicroexpError

NAME = "megc2018"
SOURCES = ("casme2", "samm")


def _detect(folder: Path) -> str | None:
    for name, module in (("samm", samm), ("casme2", casme2)):
        try:
            if module.looks_like_tree(module.resolve(folder, None)[0]):
                return name
        except DataError:
            continue
    return None


def find_sources(root: Path) -> dict[str, tuple[Path, Path | None]]:
    """(root, annotation or None) of CASME II and SAMM."""
    root = Path(root)
    if root.is_file() and root.suffix.lower() in (".yaml", ".yml", ".json"):
        text = root.read_text(encoding="utf-8")
        spec = json.loads(text) if root.suffix.lower() == ".json" else yaml.safe_load(text)
        if not isinstance(spec, dict) or any(k not in spec for k in SOURCES):
            raise DataError(f"{root}: expected a mapping with keys {list(SOURCES)} (the two releases' roots)")

        def rel(value: object) -> Path:
            return spec_path(root, value)

        return {k: (rel(spec[k]), rel(spec[f"{k}_annotation"]) if spec.get(f"{k}_annotation") else None)
                for k in SOURCES}
    if not root.is_dir():
        raise DataError(f"{root}: not a folder or a .yaml/.json file naming the casme2 and samm roots")
    found = find_releases(root, SOURCES, _detect, "put both releases under one folder or pass a .yaml file "
                                                  "mapping casme2 and samm to their roots")
    return {k: (found[k], None) for k in SOURCES}


def load(root: Path, annotation: Path | None = None) -> tuple[list[ClipRecord], list[Exclusion]]:
    if annotation is not None:
        raise DataError("megc2018 reads each release's own coding file; name them in a .yaml root "
                        "(casme2_annotation, samm_annotation) instead of --annotation")
    records: list[ClipRecord] = []
    excluded: list[Exclusion] = []
    for ds, (src, ann) in find_sources(root).items():
        recs, exc = {"casme2": casme2.load, "samm": samm.load}[ds](src, ann)
        excluded += exc
        for r in recs:
            meta = dict(r.meta, source_emotion=r.emotion, source_subject=r.subject)
            records.append(ClipRecord(dataset=ds, subject=f"{ds}_{r.subject}", clip_id=r.clip_id,
                                      emotion=coded_class(r), frames=r.frames, frame_numbers=r.frame_numbers,
                                      onset=r.onset, apex=r.apex, offset=r.offset, fps=r.fps, aus=r.aus,
                                      source=r.source, meta=meta))
    return records, excluded


def check(root: Path, annotation: Path | None, read_images: bool, report: Any) -> Any:
    """``data check`` of the composite: each release checked as its own dataset, then the composite loaded."""
    from microexp.data.check import Problem, check_dataset

    try:
        sources = find_sources(root)
    except MicroexpError as exc:
        report.problems.append(Problem("layout", str(root), str(exc)))
        return report
    for ds, (src, ann) in sources.items():
        sub = check_dataset(ds, src, ann, read_images)
        report.problems += [Problem(p.kind, f"[{ds}] {p.where}", p.detail) for p in sub.problems]
        report.notes += [f"[{ds}] {n}" for n in sub.notes]
        report.hints += [f"[{ds}] {h}" for h in sub.hints]
    try:
        records, excluded = load(root, annotation)
    except MicroexpError as exc:
        report.problems.append(Problem("annotation", str(root), str(exc)))
        return report
    report.records, report.rows = records, len(records) + len(excluded)
    return report


# the protocols of each release's objective classes (the coders' column, and the AU rule), over the composite: a
# clip's emotion here is already its coded class, which ``coded_class`` reads again from the same column
PROTOCOLS = objective_protocols(NAME, "MEGC 2018 composite (CASME II + SAMM)")

SPEC = register_dataset(DatasetSpec(
    NAME, load, "megc2018-objective", "MEGC 2018 composite: CASME II + SAMM in objective classes I-V (the coders' "
    "columns); root holds the two releases or is a .yaml naming them", protocols=PROTOCOLS,
    labels=(*CLASSES, NOT_CODED), check=check))
