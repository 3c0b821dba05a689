"""``microexp report RUN_DIR``: a self-contained HTML report of a run (RUN_DIR/report.html)."""

from __future__ import annotations

import argparse
from pathlib import Path

from microexp.errors import ConfigError


def run(args: argparse.Namespace) -> int:
    from microexp import runs

    if runs.is_spotting_run(args.run_dir):  # a spotting run: timelines (microexp.spot.report)
        from microexp.spot.report import render_spot_report

        print(f"report written to {render_spot_report(args.run_dir, out=args.out)}")
        return 0
    from microexp.report.html import render_report

    if args.saliency < 0:
        raise ConfigError(f"--saliency {args.saliency}: give a number of examples >= 0")
    path = render_report(args.run_dir, out=args.out, saliency=args.saliency)
    print(f"report written to {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="HTML report of a run directory",
                       description="Write RUN_DIR/report.html: epoch policy (red LEAKY banner for test-peek runs), "
                                   "metrics beside the shuffle control and chance, dataset summary with excluded "
                                   "clips, confusion matrix, per-class/subject/dataset bars, learning curves, seed "
                                   "spread, saliency examples and the configuration. One self-contained file.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--out", type=Path, help="output file (default RUN_DIR/report.html)")
    p.add_argument("--saliency", type=int, default=2,
                   help="saliency examples to generate when RUN_DIR/explain has none (default 2; 0: none)")
    p.set_defaults(func=run)
