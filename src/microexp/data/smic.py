"""SMIC recognition release (Li et al., FG 2013): HS, VIS and NIR, raw and cropped.

Layout::

    SMIC_all_cropped/HS/s1/micro/negative/s1_ne_01/reg_image036237.bmp …   (cropped HS: reg_image<6 digits>)
    SMIC_all_cropped/VIS/s1/micro/positive/s1_po_01/reg_06524.bmp …        (cropped VIS/NIR: reg_<5 digits>)
    SMIC_all_raw/HS/s1/micro/surprise/s1_sur_01/image090823.bmp …          (raw HS: image<6 digits>)
    …/s1/non_micro/…                                                        (ignored)

Datasets ``smic`` (HS, 100 fps), ``smic_vis`` and ``smic_nir`` (25 fps). ``root`` may be ``SMIC_all_cropped`` or
``SMIC_all_raw`` (the camera folder is picked), the camera folder itself, or a folder holding
``SMIC_all_cropped`` (preferred) / ``SMIC_all_raw``. There is no annotation spreadsheet: subject, emotion and
clip come from the folder names; frames are sorted by their number (not directory order). Onset and offset are
the first and last frame of the folder; the apex is not annotated, so the middle frame is used
(``meta["apex_annotated"] = False``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from microexp.data._common import Row, Scan, build_records, numbered_frames, subdirs
from microexp.data.classes import ClassProtocol
from microexp.data.records import ClipRecord, Exclusion
from microexp.data.registry import DatasetSpec, Loader, register_dataset
from microexp.errors import ConfigError, DataError

EMOTIONS = ("negative", "positive", "surprise")
CAMERAS = {"smic": ("HS", 100.0), "smic_vis": ("VIS", 25.0), "smic_nir": ("NIR", 25.0)}
RELEASES = ("SMIC_all_cropped", "SMIC_all_raw")
SUBJECT = re.compile(r"s\d+", re.IGNORECASE)


def looks_like_tree(folder: Path) -> bool:
    return any(SUBJECT.fullmatch(p.name) and (p / "micro").is_dir() for p in subdirs(folder))


def find_tree(root: Path, camera: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset root {root} does not exist or is not a folder")
    if looks_like_tree(root):
        return root
    for cand in (Path(camera), *(Path(r) / camera for r in RELEASES), *(Path(r) / r / camera for r in RELEASES)):
        if looks_like_tree(root / cand):
            return root / cand
    return root


def scan_rows(tree: Path, fps: float) -> tuple[list[Row], list[Path]]:
    """One row per clip folder under ``s<k>/micro/<emotion>/``; also returns the clip folders whose emotion
    folder is not one of negative/positive/surprise (reported by ``data check``; loaded with that label)."""
    rows: list[Row] = []
    odd: list[Path] = []
    for subj in subdirs(tree):
        if not SUBJECT.fullmatch(subj.name):
            continue
        for emo in subdirs(subj / "micro"):
            for clip in subdirs(emo):
                _, numbers = numbered_frames(clip)
                onset, offset = (numbers[0], numbers[-1]) if numbers else (None, None)
                row = Row(subject=subj.name, clip_id=clip.name, emotion=emo.name.lower(), onset=onset, apex=None,
                          offset=offset, folder=clip.relative_to(tree), fps=fps, source=str(clip),
                          meta={"apex_annotated": False})
                if onset is not None and offset is not None:
                    row.apex = (onset + offset) // 2
                    row.meta["note"] = "SMIC has no apex annotation; middle frame used"
                if row.emotion not in EMOTIONS:
                    odd.append(clip)
                rows.append(row)
    return rows, odd


def make_loader(name: str) -> Loader:
    camera, fps = CAMERAS[name]

    def load(root: Path, annotation: Path | None = None) -> tuple[list[ClipRecord], list[Exclusion]]:
        if annotation is not None:
            raise DataError(f"{annotation}: SMIC has no annotation file (labels come from the folder names); "
                            "leave --annotation out")
        tree = find_tree(root, camera)
        rows, _ = scan_rows(tree, fps)
        if not rows:
            raise DataError(f"{root}: no SMIC clips found (expected {camera}/s<k>/micro/<emotion>/<clip>/ "
                            f"under SMIC_all_cropped or SMIC_all_raw)")
        return build_records(name, tree, rows)

    load.__name__ = f"load_{name}"
    return load


def make_scan(name: str) -> Callable[[Path, Path | None], Scan]:
    camera, fps = CAMERAS[name]

    def scan(root: Path, annotation: Path | None) -> Scan:
        if annotation is not None:
            raise ConfigError("SMIC has no annotation file (labels come from the folder names); leave --annotation out")
        tree = find_tree(root, camera)
        rows, _ = scan_rows(tree, fps)
        return Scan(tree, None, rows, [r.folder for r in rows if r.folder is not None])

    return scan


def make_looks_like(name: str) -> Callable[[Path], bool]:
    camera = CAMERAS[name][0]
    return lambda folder: looks_like_tree(find_tree(folder, camera))


load = make_loader("smic")
PROTOCOLS = (ClassProtocol(
    "smic-3", EMOTIONS, {e: e for e in EMOTIONS},
    "SMIC 3-class: negative, positive, surprise, the emotion folders of the release (HS: 70/51/43)."),)
SPECS = {name: register_dataset(DatasetSpec(
    name, make_loader(name), "smic-3", f"SMIC-{camera} recognition release (labels from folders)",
    protocols=PROTOCOLS if name == "smic" else (), labels=EMOTIONS, subject_pattern=SUBJECT.pattern,
    scan=make_scan(name), looks_like=make_looks_like(name), family="smic"))
    for name, (camera, _) in CAMERAS.items()}
