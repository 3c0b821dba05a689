"""Executor options shared by commands that run folds (``--executor local | dask``)."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing microexp.train loads torch: only when a command runs
    from microexp.train.executor import Executor


def add_executor_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("execution")
    g.add_argument("--executor", choices=["local", "dask"], default="local",
                   help="local: folds one after another in this process (default); dask: folds as Dask tasks")
    g.add_argument("--scheduler", metavar="ADDR",
                   help="address of a running Dask scheduler, e.g. tcp://head:8786 (default: start a local "
                        "cluster bound to 127.0.0.1)")
    g.add_argument("--workers", type=int, help="worker processes of the local Dask cluster (default: all cores)")
    g.add_argument("--threads-per-worker", type=int, default=1,
                   help="threads per Dask worker, also torch's threads per task (default 1)")
    g.add_argument("--dask-data", choices=["scatter", "files"], default="scatter",
                   help="scatter: send the preprocessed arrays to every worker (default); files: write them once "
                        "under --data-dir and let workers memory-map them")
    g.add_argument("--data-dir", help="folder every Dask worker can read (shared filesystem) for --dask-data files")


@contextlib.contextmanager
def executor_from_args(args: argparse.Namespace) -> Iterator[Executor]:
    from microexp.errors import ConfigError
    from microexp.train.executor import LocalExecutor

    for flag, value in (("--workers", getattr(args, "workers", None)),
                        ("--threads-per-worker", getattr(args, "threads_per_worker", None))):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} {value}: must be >= 1")
    progress = not getattr(args, "no_progress", False)
    if getattr(args, "executor", "local") != "dask":
        yield LocalExecutor(progress=progress)
        return
    from microexp.train.dask_executor import DaskExecutor

    with DaskExecutor(scheduler=args.scheduler, workers=args.workers, threads_per_worker=args.threads_per_worker,
                      data=args.dask_data, data_dir=args.data_dir, progress=progress) as executor:
        yield executor
