"""``microexp explain``: saliency maps of a run's model on one of its held-out clips."""

from __future__ import annotations

import argparse
from pathlib import Path

from microexp.errors import ConfigError


def run(args: argparse.Namespace) -> int:
    from microexp.explain.saliency import explain_clip

    if args.n_frames < 1:
        raise ConfigError(f"--frames {args.n_frames}: show at least one frame")
    result = explain_clip(args.run_dir, args.clip, fold=args.fold, seed=args.seed, out_dir=args.out,
                          gradcam=not args.no_gradcam, n_frames=args.n_frames)
    print(f"{result.clip}: true {result.true}, predicted {result.explained} (seed {result.seed}, fold {result.fold}, "
          f"held out)")
    for f in result.files:
        print(f"  wrote {f}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="saliency maps of a run's model on a held-out clip",
                       description="Vanilla-gradient saliency per frame (binarised for display, as Reddy et al. "
                                   "Fig. 4) and Grad-CAM on the last 3D convolution, computed with the checkpoint "
                                   "of the fold in which the clip was a test clip. Writes a PNG frame grid and an "
                                   "animated GIF overlay under RUN_DIR/explain (or --out).")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory written by `microexp evaluate`")
    p.add_argument("--clip", required=True, help="clip id, subject/clip or dataset/subject/clip")
    p.add_argument("--fold", help="the fold whose checkpoint to use (default: the one that tested the clip)")
    p.add_argument("--seed", type=int, help="which seed's checkpoint (default: the lowest)")
    p.add_argument("--out", type=Path, help="output folder (default RUN_DIR/explain)")
    p.add_argument("--frames", dest="n_frames", type=int, default=8, help="frames shown in the PNG grid (default 8)")
    p.add_argument("--no-gradcam", action="store_true", help="vanilla saliency only")
    p.set_defaults(func=run)
