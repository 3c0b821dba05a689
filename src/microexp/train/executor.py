"""Executors map fold tasks to outputs. ``LocalExecutor`` runs them in this process, in order."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from tqdm.auto import tqdm

if TYPE_CHECKING:
    from microexp.train.folds import FoldOutput, FoldTask, RunContext


class Executor(Protocol):
    def run(self, ctx: RunContext, tasks: list[FoldTask]) -> list[FoldOutput]: ...


class LocalExecutor:
    """Folds one after another, with one progress bar counting epochs over all of them."""

    def __init__(self, progress: bool = True):
        self.progress = progress

    def run(self, ctx: RunContext, tasks: list[FoldTask]) -> list[FoldOutput]:
        from microexp.train.folds import run_fold

        epochs = ctx.config.train.epochs
        control = " (shuffle control)" if tasks and tasks[0].control else ""
        outputs = []
        with tqdm(total=len(tasks) * epochs, unit="epoch", disable=not self.progress,
                  desc=f"{ctx.config.model} {ctx.config.protocol}{control}") as bar:
            for task in tasks:
                bar.set_postfix_str(task.name)
                out = run_fold(ctx, task, on_epoch=lambda _r: bar.update(1))
                bar.update(epochs - len(out.history))  # early stopping
                outputs.append(out)
        return outputs
