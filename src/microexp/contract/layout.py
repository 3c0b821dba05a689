"""The run directory's layout: every file name of both kinds of run, in one place, and the layout version.

A recognition run (``microexp evaluate``)::

    RUN_DIR/layout.json          {"layout": 2, "kind": "recognition"} (runs before layout 2 lack it)
    RUN_DIR/config.yaml          the resolved configuration (preprocessing filled in)
    RUN_DIR/metrics.json         pooled metrics, control, chance, epoch policy
    RUN_DIR/predictions.csv      one row per test clip and seed
    RUN_DIR/history.csv          learning curves per fold
    RUN_DIR/excluded.csv         clip, reason
    RUN_DIR/repairs.csv          clip, repair (a known error of the release, and what was done about it)
    RUN_DIR/folds/<task>.json    each finished fold task (written atomically as it ends; resuming reads them)
    RUN_DIR/checkpoints/seed{S}-{fold}.safetensors   torch models (``.joblib`` for scikit-learn baselines)

A spotting run (``microexp evaluate --task spot``): ``layout.json`` (kind ``spotting``), ``config.yaml``,
``metrics.json``, ``spotter.json`` (+ ``spotter.safetensors``: what was fitted on all subjects),
``predictions.json``, ``curves.npz``, ``ground_truth.json``, ``megc_<dataset>.log`` and, with a recognition run,
``str.csv``.

Layout 1 (no ``layout.json``) is every run made before the version was written: read as it always was, its kind
told by ``spotter.json``. A run of a newer layout than this microexp knows is refused with one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from microexp.errors import DataError
from microexp.fileio import write_atomic

LAYOUT_VERSION = 2
LAYOUT = "layout.json"
RECOGNITION, SPOTTING = "recognition", "spotting"
KINDS = (RECOGNITION, SPOTTING)

CONFIG = "config.yaml"
METRICS = "metrics.json"
PREDICTIONS = "predictions.csv"
HISTORY = "history.csv"
EXCLUDED = "excluded.csv"
REPAIRS = "repairs.csv"
FOLDS = "folds"
CHECKPOINTS = "checkpoints"
CHECKPOINT_SUFFIX = ".safetensors"
LEGACY_SUFFIX = ".pt"  # runs made before safetensors: read, never written
EXPLAIN = "explain"  # microexp explain's output inside a run

SPOTTER = "spotter.json"  # what a spotting run fitted on all its subjects
SPOTTER_NETS = "spotter" + CHECKPOINT_SUFFIX  # the learned spotter's networks (older runs: spotter.pt)
SPOT_PREDICTIONS = "predictions.json"  # every predicted interval, per-fold parameters, exclusions
CURVES = "curves.npz"  # score curves for the report's timeline
GROUND_TRUTH = "ground_truth.json"
STR_CSV = "str.csv"  # spot-then-recognise rows (with a recognition run)


def megc_log(dataset: str) -> str:
    """The MEGC spotting log of a spotting run."""
    return f"megc_{dataset}.log"


def file_name(name: str) -> str:
    """A fold or task name as a file name: dataset-qualified subjects (``casme2/sub01``) become ``casme2__sub01``."""
    return name.replace("/", "__").replace("\\", "__")


def checkpoint_path(out: str | Path, seed: int, fold: str) -> Path:
    return Path(out) / CHECKPOINTS / f"seed{seed}-{file_name(fold)}{CHECKPOINT_SUFFIX}"


def fold_path(out: str | Path, task: Any) -> Path:
    """``folds/<task name>.json``; ``task`` is a :class:`~microexp.train.folds.FoldTask` or its name."""
    return Path(out) / FOLDS / f"{file_name(task if isinstance(task, str) else task.name)}.json"


def layout_record(kind: str) -> dict[str, Any]:
    if kind not in KINDS:
        raise ValueError(f"run kind {kind!r}")
    return {"layout": LAYOUT_VERSION, "kind": kind}


def write_layout(out: str | Path, kind: str) -> Path:
    path = Path(out) / LAYOUT
    write_atomic(path, json.dumps(layout_record(kind)))
    return path


def read_layout(run_dir: str | Path) -> dict[str, Any]:
    """``{"layout": N, "kind": ...}`` of a run directory; a run without ``layout.json`` is layout 1, its kind told
    by ``spotter.json``. A newer layout, or an unreadable record, is one line naming the file."""
    run_dir = Path(run_dir)
    path = run_dir / LAYOUT
    if not path.is_file():
        return {"layout": 1, "kind": SPOTTING if (run_dir / SPOTTER).is_file() else RECOGNITION}
    try:
        record = json.loads(path.read_text())
        version, kind = int(record["layout"]), str(record["kind"])
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as exc:
        raise DataError(f"{path}: unreadable run layout ({type(exc).__name__}: {exc})") from None
    if version > LAYOUT_VERSION:
        raise DataError(f"{path}: run layout {version} was written by a newer microexp (this one reads layouts "
                        f"1 to {LAYOUT_VERSION}); upgrade microexp")
    if kind not in KINDS:
        raise DataError(f"{path}: unknown run kind {kind!r} (known: {', '.join(KINDS)})")
    return {"layout": version, "kind": kind}


def run_kind(run_dir: str | Path) -> str:
    """``recognition`` or ``spotting``."""
    return str(read_layout(run_dir)["kind"])


def is_spotting_run(run_dir: str | Path) -> bool:
    return Path(run_dir).is_dir() and run_kind(run_dir) == SPOTTING
