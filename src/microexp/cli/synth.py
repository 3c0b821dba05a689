"""``microexp synth``: generate a synthetic micro-expression data set tree from real faces (microexp.synth)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from microexp.data.fixtures import LAYOUTS as FIXTURE_LAYOUTS
from microexp.errors import ConfigError
from microexp.synth import SynthClip, SynthConfig, generate, write_plain

# output layouts: name -> writer(clips, out_dir, progress) -> Path. Dataset-style layouts (casme2, samm, ...)
# register here.
LAYOUTS: dict[str, Callable[..., Path]] = {"plain": write_plain}
LONG_LAYOUTS = ("samm_lv", "casme_sq-long")  # long videos for spotting: microexp.synth.longvideo


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("synth", help="generate a synthetic micro-expression data set from real faces",
                              description="Render subtle AU-driven micro-expressions on real faces loaded from "
                                          "installed packages and write them as a data set tree.")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--layout", choices=sorted(LAYOUTS) + list(FIXTURE_LAYOUTS) + list(LONG_LAYOUTS), default="plain",
                   help="tree layout (plain: OUT/<subject>/<clip>/frame_0001.png + annotations.csv; casme2, samm, "
                        "smic, casme_sq, casme, casme3: the real release's layout, naming and annotation format, "
                        "see microexp.data.fixtures)")
    p.add_argument("--annotation", type=Path, default=None,
                   help="with a dataset layout: a real annotation file to mirror (copied into the tree; one clip "
                        "folder per row). For smic pass the MEGC2019 combined_3class_gt.csv. Default: a small "
                        "generated annotation in the release's format")
    d = SynthConfig()
    p.add_argument("--subjects", type=int, default=d.n_subjects, help=f"number of faces (default {d.n_subjects})")
    p.add_argument("--clips-per-class", type=int, default=d.clips_per_class,
                   help=f"clips per subject and class (default {d.clips_per_class})")
    p.add_argument("--classes", default=",".join(d.classes),
                   help=f"comma-separated classes (default {','.join(d.classes)})")
    p.add_argument("--frames", type=int, default=d.n_frames, help=f"frames per clip (default {d.n_frames})")
    p.add_argument("--size", type=int, default=d.size[0], help=f"frame side in pixels (default {d.size[0]})")
    p.add_argument("--fps", type=float, default=d.fps, help=f"frame rate (default {d.fps:g})")
    p.add_argument("--intensity", type=float, default=d.intensity, help=f"AU intensity (default {d.intensity:g})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--videos", type=int, default=2, help="samm_lv|casme_sq-long: long videos per subject (default 2; "
                   "--frames is then frames per video, default 10 s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.layout in LONG_LAYOUTS:
        from microexp.synth.longvideo import run_cli

        return run_cli(args)
    if args.layout in FIXTURE_LAYOUTS:
        return _dataset_layout(args)
    if args.annotation is not None:
        raise ConfigError("--annotation needs a dataset layout (--layout casme2|samm|smic|casme_sq|casme|casme3)")
    classes = tuple(c.strip() for c in str(args.classes).split(",") if c.strip())
    if not classes:
        raise ConfigError("--classes is empty")
    if args.size < 16:
        raise ConfigError(f"--size {args.size} is too small (>= 16)")
    config = SynthConfig(n_subjects=args.subjects, clips_per_class=args.clips_per_class, classes=classes,
                         size=(args.size, args.size), n_frames=args.frames, fps=args.fps,
                         intensity=args.intensity, seed=args.seed)
    config.validate()
    total = config.n_subjects * len(classes) * config.clips_per_class
    start = time.perf_counter()
    with tqdm(total=2 * total, desc="synth", unit="clip", disable=args.no_progress) as bar:
        clips: list[SynthClip] = generate(config, progress=bar.update)
        out = LAYOUTS[args.layout](clips, args.out, progress=bar.update)
    seconds = time.perf_counter() - start
    print(f"wrote {len(clips)} clips ({config.n_subjects} subjects x {len(classes)} classes x "
          f"{config.clips_per_class}, {config.n_frames} frames {config.size[0]}x{config.size[1]} at "
          f"{config.fps:g} fps, seed {config.seed}) to {out} [{args.layout}] in {seconds:.1f} s")
    return 0


def _dataset_layout(args: argparse.Namespace) -> int:
    """A tree in a real dataset's layout (microexp.data.fixtures), frames rendered by microexp.synth."""
    from microexp.data.fixtures import build_fixture

    if args.size < 16:
        raise ConfigError(f"--size {args.size} is too small (>= 16)")
    start = time.perf_counter()
    fx = build_fixture(args.layout, args.out, args.annotation, size=args.size, seed=args.seed)
    seconds = time.perf_counter() - start
    subjects = len({r.subject for r in fx.rows})
    print(f"wrote {len(fx.rows)} clips of {subjects} subjects in the {args.layout} layout to {fx.root}"
          + (f" (annotation {fx.annotation})" if fx.annotation else "") + f" in {seconds:.1f} s; "
          f"check it with: microexp data check --dataset {args.layout} --root {fx.root}")
    return 0
