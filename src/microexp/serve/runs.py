"""The run directories under ``--runs``: listing, headline metrics, and the one gate every run path passes.

A run is named by its path relative to the runs folder. :func:`resolve_run` refuses absolute paths, ``..``
parts, and anything (a symlink included) that resolves outside the folder, so no request reads a file that
does not lie under ``--runs``.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

from microexp import runs as rundir
from microexp.errors import ConfigError, DataError


class OutsideRunsError(ConfigError):
    """A run path that is absolute, has ``..`` in it, or resolves outside the runs folder."""


class RunNotFoundError(DataError):
    """A run path under the runs folder that is not a run directory (or lacks the file asked for)."""


def resolve_run(root: Path, rel: str, need: str = rundir.METRICS) -> Path:
    """The run directory ``rel`` (relative to ``root``, ``/``-separated) holding ``need``."""
    if not rel or "\\" in rel or "\x00" in rel:
        raise OutsideRunsError(f"run path {rel!r}: give a folder under the runs folder, e.g. 'demo/run'")
    parts = PurePosixPath(rel)
    if parts.is_absolute() or Path(rel).is_absolute():
        raise OutsideRunsError(f"run path {rel!r} is absolute; runs are named relative to the runs folder")
    if ".." in parts.parts:
        raise OutsideRunsError(f"run path {rel!r} has '..' in it; only folders under the runs folder are served")
    base = root.resolve()
    path = (base / rel).resolve()  # follows symlinks: one pointing out of the folder ends up outside
    if not path.is_relative_to(base):
        raise OutsideRunsError(f"run path {rel!r} leads outside the runs folder (a symlink?); refused")
    if not path.is_dir() or not (path / need).is_file():
        raise RunNotFoundError(f"run path {rel!r}: not a run directory under the runs folder (no {need})")
    return path


def find_runs(root: Path) -> list[str]:
    """Every folder under ``root`` with a ``metrics.json`` (symlinked folders are not entered), sorted."""
    found = []
    base = root.resolve()
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if rundir.METRICS in filenames and Path(dirpath) != base:
            found.append(Path(dirpath).relative_to(base).as_posix())
            dirnames[:] = [d for d in dirnames if d not in (rundir.CHECKPOINTS, rundir.FOLDS, rundir.EXPLAIN)]
    return sorted(found)


def _number(m: dict[str, Any], key: str) -> dict[str, float] | None:
    if not isinstance(m.get(key), int | float):
        return None
    std = m.get(f"{key}_std")
    return {"value": float(m[key]), "std": float(std) if isinstance(std, int | float) else None}


def run_summary(root: Path, rel: str) -> dict[str, Any]:
    """The headline of one run: what the Runs page shows in its table."""
    path = resolve_run(root, rel)
    m = rundir.read_metrics(path)
    if rundir.is_spotting_run(path):
        return spotting_summary(rel, m)
    policy = m.get("epoch_policy") or {}
    control = m.get("control") or {}
    return {"run": rel, "model": m.get("model"), "dataset": m.get("dataset"), "protocol": m.get("protocol"),
            "uf1": _number(m, "uf1"), "uar": _number(m, "uar"), "accuracy": _number(m, "accuracy"),
            "control": {"uf1": _number(control, "uf1"), "uar": _number(control, "uar")} if control else None,
            "chance": m.get("chance"), "epoch_policy": policy.get("name"), "leaky": bool(policy.get("leaky")),
            "classes": m.get("classes"), "n_clips": m.get("n_clips"), "n_subjects": m.get("n_subjects"),
            "seeds": m.get("seeds"), "predictable": bool(rundir.checkpoint_files(path)),
            # a spotting run (microexp evaluate --task spot) spots; the page offers it in the spotting choice only
            "spotting": rundir.is_spotting_run(path)}


def spotting_summary(rel: str, m: dict[str, Any]) -> dict[str, Any]:
    """The headline of a spotting run (``microexp evaluate --task spot``): its dataset, method and F1 per
    interval type pooled over its videos, with the shuffled-prediction control's where the run has one."""
    overall = m.get("overall") or {}
    chance = m.get("chance") or {}

    def f1(block: dict[str, Any], t: str) -> float | None:
        value = (block.get(t) or {}).get("f1")
        return float(value) if isinstance(value, int | float) else None

    types = [t for t in overall if isinstance(overall[t], dict)]
    return {"run": rel, "spotting": True, "model": m.get("method"), "method": m.get("method"),
            "dataset": m.get("dataset") or ", ".join(m.get("datasets") or {}) or None, "protocol": m.get("protocol"),
            "f1": {t: f1(overall, t) for t in types},
            "chance_f1": {t: float(v) for t, v in chance.items() if isinstance(v, int | float)},
            "uf1": None, "uar": None, "accuracy": None, "control": None, "chance": None,
            "epoch_policy": m.get("threshold_policy"), "leaky": bool(m.get("leaky")), "classes": None,
            "n_clips": m.get("n_videos"), "n_subjects": m.get("n_subjects"), "seeds": None, "predictable": False}


def list_runs(root: Path) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Summaries of every run, and the runs that could not be read (with the reason) beside them."""
    runs, broken = [], []
    for rel in find_runs(root):
        try:
            runs.append(run_summary(root, rel))
        except (ConfigError, DataError) as exc:
            broken.append({"run": rel, "error": str(exc)})
    return runs, broken
