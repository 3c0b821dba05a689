"""``microexp demo``: synthetic micro-expressions -> MicroExpSTCNN, scored leak-free (see :mod:`microexp.demo`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from microexp.demo import DemoSettings


def run(args: argparse.Namespace) -> int:
    from microexp.demo import run_demo
    from microexp.report.text import results_table

    started = time.time()
    out = args.out or Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    settings = DemoSettings(subjects=args.subjects, clips_per_class=args.clips_per_class, protocol=args.protocol,
                            folds=args.folds, epochs=args.epochs, seed=args.seed, control=not args.no_control,
                            precision=args.precision)
    result = run_demo(out, settings, progress=not args.no_progress)
    print()
    print(results_table(result.metrics))
    print(f"\nrun directory: {out / 'run'}   ({time.time() - started:.0f} s in all)"
          f"\nnext: microexp report {out / 'run'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    d = DemoSettings()
    p = sub.add_parser("demo", help="synthetic micro-expressions -> MicroExpSTCNN, scored leak-free (~2 min)",
                       description="Render a synthetic micro-expression set from real faces, train a small-input "
                                   "MicroExpSTCNN under subject-grouped k-fold and print UF1/UAR beside the "
                                   "shuffled-label control.")
    p.add_argument("--out", type=Path, help="output folder (default runs/demo-<time>)")
    p.add_argument("--subjects", type=int, default=d.subjects, help=f"synthetic subjects (default {d.subjects})")
    p.add_argument("--clips-per-class", type=int, default=d.clips_per_class,
                   help=f"clips per subject and class (default {d.clips_per_class})")
    p.add_argument("--protocol", choices=["kfold", "loso"], default=d.protocol, help="default kfold (grouped)")
    p.add_argument("--folds", type=int, default=d.folds, help=f"folds for kfold (default {d.folds})")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"training epochs (default {d.epochs})")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--no-control", action="store_true", help="skip the shuffled-label control run")
    p.add_argument("--precision", choices=["fp32", "bf16"], default=d.precision,
                   help="train.precision: fp32 (default) or bf16 (autocast; see microexp.precision)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
