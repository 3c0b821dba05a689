"""``microexp synth``: generate a synthetic micro-expression data set tree from real faces (microexp.synth)."""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from microexp.errors import ConfigError, DataError

# options of the generated plain set; a dataset layout takes clip count, lengths, fps and labels from its annotation
GENERATOR_OPTIONS = ("subjects", "clips_per_class", "classes", "frames", "fps", "intensity")
LONG_LAYOUTS = ("samm_lv", "casme_sq-long")  # long videos for spotting: microexp.synth.longvideo


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("synth", help="generate a synthetic micro-expression data set from real faces",
                              description="Render subtle AU-driven micro-expressions on real faces loaded from "
                                          "installed packages and write them as a data set tree.")
    p.add_argument("--out", type=Path, required=True, help="output folder (must be empty or new, see --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="clear a non-empty output folder first (otherwise it is refused: stale frames of an "
                        "earlier render would join the new clips)")
    p.add_argument("--layout", default="plain",
                   help="tree layout: plain (OUT/<subject>/<clip>/frame_0001.png + annotations.csv), a dataset "
                        "name (casme2, samm, smic, ...: the real release's layout, naming and annotation format, "
                        "see microexp.synth.fixtures), or samm_lv / casme_sq-long (long videos with micro- and "
                        "macro-expressions at known frames, for spotting)")
    p.add_argument("--annotation", type=Path, default=None,
                   help="with a dataset layout: a real annotation file to mirror (copied into the tree; one clip "
                        "folder per row). For smic pass the MEGC2019 combined_3class_gt.csv. Default: a small "
                        "generated annotation in the release's format")
    # defaults of microexp.synth.SynthConfig (not imported here: `microexp --help` stays fast)
    p.add_argument("--subjects", type=int, default=None, help="plain layout: number of faces (default 16)")
    p.add_argument("--clips-per-class", type=int, default=None,
                   help="plain layout: clips per subject and class (default 3)")
    p.add_argument("--classes", default=None,
                   help="plain layout: comma-separated classes (default negative,positive,surprise)")
    p.add_argument("--frames", type=int, default=None, help="plain layout: frames per clip (default 24)")
    p.add_argument("--size", type=int, default=64, help="frame side in pixels (default 64)")
    p.add_argument("--fps", type=float, default=None, help="plain layout: frame rate (default 30)")
    p.add_argument("--intensity", type=float, default=None, help="plain layout: AU intensity (default 2)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--videos", type=int, default=2, help="samm_lv|casme_sq-long: long videos per subject (default 2; "
                   "--frames is then frames per video, default 10 s)")
    p.add_argument("--renderer", choices=["tps", "bumps"], default="tps",
                   help="samm_lv: tps (default: thin-plate-spline action units) | bumps (the second, independent "
                        "renderer: landmark-anchored displacement bumps, other faces, blinks of varied speed, head "
                        "turns and talking; for testing a spotter on footage its training renderer did not make)")
    p.set_defaults(func=run)


def prepare_out(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty output folder (stale frames and subject folders would mix with the new render) unless
    ``overwrite``, which clears it; never a folder that holds the current directory."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file, not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise DataError(f"--out {out} is not empty (an earlier render's frames would mix with this one); "
                        "choose a new folder or pass --overwrite to clear it")
    if Path.cwd().resolve().is_relative_to(out.resolve()) or out.resolve() == Path.home().resolve():
        raise DataError(f"--overwrite refuses to clear {out}: it holds the current or home folder")
    for child in out.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def run(args: argparse.Namespace) -> int:
    if args.size < 16:
        raise ConfigError(f"--size {args.size} is too small (>= 16)")
    if args.renderer != "tps" and args.layout != "samm_lv":
        raise ConfigError(f"--renderer {args.renderer} writes the samm_lv layout only (got --layout {args.layout})")
    if args.layout in LONG_LAYOUTS:
        ignored = [f"--{k.replace('_', '-')}" for k in ("clips_per_class", "intensity") if getattr(args, k) is not None]
        if ignored:
            raise ConfigError(f"{', '.join(ignored)} has no effect with --layout {args.layout}: long videos hold "
                              "micro- and macro-expressions of their own intensity, a few per video")
        from microexp.synth.longvideo import run_cli

        prepare_out(args.out, args.overwrite)
        if args.renderer == "bumps":  # the second, independent renderer (samm_lv only)
            from microexp.synth.bumps import BumpConfig, plan_bumps, write_bump_layout

            return run_cli(args, (BumpConfig, plan_bumps, write_bump_layout, "bumps"))
        return run_cli(args)
    if args.layout != "plain":
        return _dataset_layout(args)
    if args.annotation is not None:
        raise ConfigError("--annotation needs a dataset layout (--layout casme2|samm|smic|casme_sq|casme|casme3)")
    from tqdm import tqdm

    from microexp.synth import SynthClip, SynthConfig, generate, write_plain

    d = SynthConfig()
    classes = d.classes if args.classes is None else tuple(c.strip() for c in str(args.classes).split(",")
                                                           if c.strip())
    if not classes:
        raise ConfigError("--classes is empty")

    def given(value: object, default: object) -> object:
        return default if value is None else value

    config = SynthConfig(n_subjects=given(args.subjects, d.n_subjects), classes=classes,
                         clips_per_class=given(args.clips_per_class, d.clips_per_class),
                         size=(args.size, args.size), n_frames=given(args.frames, d.n_frames),
                         fps=given(args.fps, d.fps), intensity=given(args.intensity, d.intensity), seed=args.seed)
    config.validate()
    prepare_out(args.out, args.overwrite)
    total = config.n_subjects * len(classes) * config.clips_per_class
    start = time.perf_counter()
    with tqdm(total=2 * total, desc="synth", unit="clip", disable=args.no_progress) as bar:
        clips: list[SynthClip] = generate(config, progress=bar.update)
        out = write_plain(clips, args.out, progress=bar.update)
    seconds = time.perf_counter() - start
    print(f"wrote {len(clips)} clips ({config.n_subjects} subjects x {len(classes)} classes x "
          f"{config.clips_per_class}, {config.n_frames} frames {config.size[0]}x{config.size[1]} at "
          f"{config.fps:g} fps, seed {config.seed}) to {out} [{args.layout}] in {seconds:.1f} s")
    return 0


def _dataset_layout(args: argparse.Namespace) -> int:
    """A tree in a real dataset's layout (microexp.synth.fixtures), frames rendered by microexp.synth."""
    from microexp.synth.fixtures import BUILDERS, build_fixture, check_annotation

    if args.layout not in BUILDERS:
        raise ConfigError(f"unknown --layout {args.layout!r} (known: plain, {', '.join(BUILDERS.names())}, "
                          f"{', '.join(LONG_LAYOUTS)})")
    ignored = [f"--{k.replace('_', '-')}" for k in GENERATOR_OPTIONS if getattr(args, k) is not None]
    if ignored:
        raise ConfigError(f"{', '.join(ignored)} has no effect with --layout {args.layout}: the clips, their "
                          "lengths and labels come from the annotation rows")
    if args.annotation is not None:
        check_annotation(args.layout, args.annotation)
    prepare_out(args.out, args.overwrite)
    start = time.perf_counter()
    fx = build_fixture(args.layout, args.out, args.annotation, size=args.size, seed=args.seed)
    seconds = time.perf_counter() - start
    subjects = len({r.subject for r in fx.rows})
    print(f"wrote {len(fx.rows)} clips of {subjects} subjects in the {args.layout} layout to {fx.root}"
          + (f" (annotation {fx.annotation})" if fx.annotation else "") + f" in {seconds:.1f} s; "
          f"check it with: microexp data check --dataset {args.layout} --root {fx.root}")
    return 0
