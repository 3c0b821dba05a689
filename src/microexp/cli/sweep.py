"""``microexp sweep``: evaluate a grid of configurations under one protocol and tabulate the results."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from microexp.cli import add_dataset_option
from microexp.cli.evaluate import add_run_options, config_from_args
from microexp.errors import ConfigError


def run(args: argparse.Namespace) -> int:
    from microexp.train.sweep import load_grid, parse_grid, run_sweep, sweep_table

    grid = load_grid(args.grid_file) if args.grid_file else {}
    grid.update(parse_grid(args.grid))
    if not grid:
        raise ConfigError("no grid: give --grid KEY=[v1,v2,...] or --grid-file FILE")
    base = config_from_args(args)
    out = args.out or Path("runs") / f"sweep-{base.dataset}-{base.model}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = run_sweep(base, grid, out=out, progress=not args.no_progress)
    print(sweep_table(result.table, list(grid)))
    print(f"sweep written to {out} (sweep.csv, sweep.json, one run directory per point)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep", help="run a grid of configurations (e.g. STCNN kernel sizes) under one protocol",
        description="Evaluate every combination of a grid of configuration values under one protocol. Example, "
                    "the kernel-size ablation of Reddy et al. 2019 Table IX: microexp sweep --dataset casme_sq "
                    "--root DATA --grid 'model_params.kernel=[[3,3,3],[3,3,7],[3,3,15]]'. Each point is a run "
                    "directory under --out; sweep.csv / sweep.json tabulate UF1/UAR/accuracy, with Table IX's "
                    "published accuracies beside STCNN kernels, labelled as published. Re-running the same "
                    "command reuses finished points and resumes killed ones.")
    add_dataset_option(p)
    p.add_argument("--root", help="dataset root folder")
    p.add_argument("--annotation", help="annotation file")
    p.add_argument("--classes", help="class protocol")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=[V1,V2,...]",
                   help="a grid axis over any configuration key (repeatable; values in YAML flow syntax)")
    p.add_argument("--grid-file", type=Path, help="YAML mapping from configuration keys to lists of values")
    add_run_options(p)
    p.set_defaults(func=run)
