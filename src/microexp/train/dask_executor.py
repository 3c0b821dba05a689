"""Run fold tasks (seed x fold x real/control) as Dask tasks, on a local cluster or an existing scheduler.

``DaskExecutor`` is an :class:`~microexp.train.executor.Executor`: ``run(ctx, tasks)`` returns one
:class:`~microexp.train.folds.FoldOutput` per task, in task order, exactly as ``LocalExecutor`` does. Each
task calls :func:`~microexp.train.folds.run_fold`, which seeds everything from the task, so results do not
depend on which worker ran what.

How workers get the preprocessed arrays (``data``):

- ``"scatter"`` (default): the run context, arrays included, is sent once to every worker (``Client.scatter``
  with ``broadcast=True``); workers need neither the dataset nor the cache.
- ``"files"``: the arrays are written once as ``.npy`` files under ``data_dir`` (which every worker must see,
  e.g. a shared filesystem) and each worker memory-maps them; only the small context travels.

With no scheduler address a ``LocalCluster`` is started, bound to 127.0.0.1 with its dashboard disabled.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from microexp.errors import ConfigError
from microexp.train.arrays import load_arrays, save_arrays

if TYPE_CHECKING:
    from microexp.train.folds import FoldOutput, FoldTask, RunContext

DATA_MODES = ("scatter", "files")


def _run_task(ctx: RunContext, task: FoldTask, torch_threads: int | None,
              files: dict[str, str] | None = None) -> FoldOutput:
    """Worker side: fix the thread count, reattach memory-mapped inputs if the context came without them."""
    import torch

    from microexp.train.folds import run_fold

    if torch_threads:
        torch.set_num_threads(torch_threads)
    if files is not None:
        ctx = dataclasses.replace(ctx, inputs=load_arrays(files))
    return run_fold(ctx, task)


class DaskExecutor:
    """Folds as Dask tasks. Use as a context manager (or call :meth:`close`) to stop a cluster it started.

    scheduler: address of a running scheduler (``tcp://host:8786``), or None for a local cluster of
    ``workers`` processes with ``threads_per_worker`` threads each. torch_threads: torch's intra-op threads in
    each task (default: threads_per_worker), fixed so that results do not depend on the worker's machine.
    """

    def __init__(self, scheduler: str | None = None, workers: int | None = None, threads_per_worker: int = 1,
                 torch_threads: int | None = None, data: str = "scatter", data_dir: str | Path | None = None,
                 progress: bool = True):
        if data not in DATA_MODES:
            raise ConfigError(f"dask data mode {data!r} is not one of {list(DATA_MODES)}")
        if workers is not None and workers < 1:
            raise ConfigError(f"workers={workers} must be >= 1")
        self.scheduler = scheduler
        self.workers = workers or os.cpu_count() or 1
        self.threads_per_worker = threads_per_worker
        self.torch_threads = torch_threads or threads_per_worker
        self.data = data
        self.data_dir = Path(data_dir) if data_dir else None
        self.progress = progress
        self._client: Any = None
        self._cluster: Any = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def client(self) -> Any:
        if self._client is None:
            from dask.distributed import Client, LocalCluster

            if self.scheduler:
                self._client = Client(self.scheduler)
            else:
                self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=self.threads_per_worker,
                                             processes=True, host="127.0.0.1", dashboard_address=None)
                self._client = Client(self._cluster)
        return self._client

    def _files(self, ctx: RunContext) -> dict[str, str]:
        if self.data_dir is None:
            if self.scheduler:
                raise ConfigError("dask data mode 'files' with a remote scheduler needs a data_dir every worker "
                                  "can read (a shared filesystem)")
            self._tmp = self._tmp or tempfile.TemporaryDirectory(prefix="microexp-dask-")
            folder = Path(self._tmp.name)
        else:
            folder = self.data_dir
        return save_arrays(ctx.inputs, folder)

    def run(self, ctx: RunContext, tasks: list[FoldTask]) -> list[FoldOutput]:
        from dask.distributed import as_completed

        client = self.client()
        files = None
        if self.data == "files":
            files = self._files(ctx)
            shipped: Any = client.scatter(dataclasses.replace(ctx, inputs={}), broadcast=True)
        else:
            shipped = client.scatter(ctx, broadcast=True)
        futures = [client.submit(_run_task, shipped, task, self.torch_threads, files, pure=False,
                                 key=f"microexp-{task.name}-{uuid.uuid4().hex}") for task in tasks]
        control = " (shuffle control)" if tasks and tasks[0].control else ""
        with tqdm(total=len(tasks), unit="fold", disable=not self.progress,
                  desc=f"{ctx.config.model} {ctx.config.protocol}{control} on dask") as bar:
            for _ in as_completed(futures):
                bar.update(1)
        outputs = client.gather(futures)
        client.cancel([shipped])
        return list(outputs)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        if self._tmp is not None:
            self._tmp.cleanup()
        self._client = self._cluster = self._tmp = None

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
