"""A spotting data set on disk: the ground truth of a long-video release plus the folder of every video.

Videos found on disk without any annotated interval are kept (predictions there are false positives); an
annotated video whose folder is missing, or that holds no frames, is an exclusion and its intervals leave the
scoring, named; an interval outside its video's frames is an exclusion too.

Frame rate: the release's (SAMM-LV 200 fps, CAS(ME)^2 and CAS(ME)^3 30 fps), unless a file ``fps.txt`` (one
number) lies in the root folder or beside the annotation file, as the synthetic long videos of
:mod:`microexp.synth.longvideo` write it; a run's explicit ``fps`` overrides both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from microexp.data.records import Exclusion
from microexp.errors import DataError
from microexp.spot.groundtruth import FPS, GroundTruth, check_dataset


@dataclass
class SpotData:
    dataset: str
    fps: float
    gt: GroundTruth
    videos: dict[tuple[str, str], tuple[str, Path]] = field(default_factory=dict)  # key -> (subject, folder)
    annotation: Path | None = None

    @property
    def excluded(self) -> list[Exclusion]:
        return self.gt.excluded


def _samm_lv(root: Path, annotation: Path | None) -> tuple[GroundTruth, dict[tuple[str, str], tuple[str, Path]],
                                                           Path]:
    from microexp.data import samm, samm_lv
    from microexp.data.folders import find_file, subdirs
    from microexp.spot.groundtruth import samm_lv_intervals

    tree, ann = samm_lv.resolve(root, annotation)
    micro = find_file([tree, tree.parent, Path(root)], samm.ANNOTATION_PATTERNS)
    gt = samm_lv_intervals(ann, micro)
    if micro is None:
        gt.notes.append("no SAMM micro-expression coding sheet found: micro intervals have no emotion")
    videos = {("samm_lv", p.name): (p.name.split("_")[0], p) for p in subdirs(tree)
              if re.fullmatch(r"\d{3}_\d+", p.name)}
    for key, subject in gt.videos.items():
        videos.setdefault(key, (subject, tree / key[1]))
    return gt, videos, ann


def _casme_sq(root: Path, annotation: Path | None) -> tuple[GroundTruth, dict[tuple[str, str], tuple[str, Path]],
                                                            Path]:
    from microexp.data import casme_sq
    from microexp.data.folders import subdirs
    from microexp.spot.groundtruth import casme_sq_intervals

    tree, ann = casme_sq.resolve(root, annotation)
    if casme_sq.tree_kind(tree) != "rawpic":
        raise DataError(f"{root}: spotting needs the long videos (rawpic/s15/15_0401girlcrashing/…); found the "
                        f"{casme_sq.tree_kind(tree)} tree of cut expressions")
    gt = casme_sq_intervals(ann)
    videos = {("casme_sq", f"{s.name}/{v.name}"): (s.name, v) for s in subdirs(tree) for v in subdirs(s)}
    for key, subject in gt.videos.items():
        videos.setdefault(key, (subject, tree / key[1]))
    return gt, videos, ann


def _casme3(root: Path, annotation: Path | None) -> tuple[GroundTruth, dict[tuple[str, str], tuple[str, Path]],
                                                          Path]:
    from microexp.data import casme3
    from microexp.data.folders import subdirs
    from microexp.spot.groundtruth import casme3_intervals

    tree, kind = casme3.find_tree(root)
    if kind != "full":
        raise DataError(f"{root}: spotting needs the full Part A tree (spNO.<k>/<video>/color/), not ME clips")
    ann = annotation or casme3.find_annotation(Path(root), tree, casme3.MM_PATTERNS)
    if ann is None:
        raise DataError(f"{root}: no CAS(ME)3_part_A_v2.xls found; pass --annotation FILE")
    labels = casme3.find_annotation(Path(root), tree, casme3.LABEL_PATTERNS)
    gt = casme3_intervals(Path(ann), labels)
    videos = {}
    for s in subdirs(tree):
        m = re.fullmatch(r"spno\.?(\d+)", s.name, re.IGNORECASE)
        if m:
            for v in subdirs(s):
                videos[("casme3", f"spNO.{int(m.group(1))}/{v.name.lower()}")] = (f"spNO.{int(m.group(1))}",
                                                                                  v / "color")
    for key, subject in gt.videos.items():
        videos.setdefault(key, (subject, tree / subject / key[1].split("/", 1)[1] / "color"))
    return gt, videos, Path(ann)


FPS_FILE = "fps.txt"


def release_fps(dataset: str, root: Path, annotation: Path | None) -> tuple[float, str | None]:
    """The frame rate of a spotting data set and, when it came from an ``fps.txt``, a note naming the file."""
    folders = [root] + ([annotation.parent] if annotation is not None and annotation.parent != root else [])
    for folder in folders:
        path = folder / FPS_FILE
        if path.is_file():
            text = path.read_text(errors="replace").strip()
            try:
                fps = float(text)
            except ValueError:
                fps = float("nan")
            if not 0 < fps < float("inf"):
                raise DataError(f"{path}: not a frame rate (one positive number expected, found {text[:40]!r})")
            return fps, f"frame rate {fps:g} fps read from {path}"
    return FPS[dataset], None


def load_spot_data(dataset: str, root: str | Path, annotation: str | Path | None = None) -> SpotData:
    """Ground truth and video folders of a long-video data set; see the module docstring for what is excluded."""
    from microexp.data.folders import numbered_frames

    check_dataset(dataset)
    loader = {"samm_lv": _samm_lv, "casme_sq": _casme_sq, "casme3": _casme3}[dataset]
    gt, videos, ann = loader(Path(root), Path(annotation) if annotation else None)
    if dataset == "casme3":  # folder names are lower case; the annotation spells one video "J"
        gt = replace(gt, intervals=[replace(i, video=i.video.lower()) for i in gt.intervals], videos={})
    spans: dict[tuple[str, str], tuple[int, int]] = {}
    missing: dict[tuple[str, str], str] = {}
    for key, (_, folder) in sorted(videos.items()):
        if not folder.is_dir():
            missing[key] = f"video folder {folder} not found"
            continue
        _, numbers = numbered_frames(folder)
        if not numbers:
            missing[key] = f"video folder {folder} holds no frame images"
            continue
        spans[key] = (numbers[0], numbers[-1])
    excluded = list(gt.excluded)
    kept = []
    for iv in gt.intervals:
        if iv.key in missing:
            excluded.append(Exclusion(f"{iv.dataset}/{iv.subject}/{iv.id}", f"{missing[iv.key]} ({iv.source})"))
        else:
            kept.append(iv)
    gt = replace(gt, intervals=kept, excluded=excluded, spans=spans, videos={})
    gt = gt.check_bounds()
    for key, (subject, _) in videos.items():
        if key not in missing:
            gt.videos.setdefault(key, subject)
    videos = {k: v for k, v in videos.items() if k not in missing}
    if not videos:
        raise DataError(f"{root}: no {dataset} video with frames found")
    fps, note = release_fps(dataset, Path(root), Path(ann) if ann else None)
    if note:
        gt.notes.append(note)
    return SpotData(dataset, fps, gt, videos, ann)
