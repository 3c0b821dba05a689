"""The run directory: its layout, and the one place that writes and reads it.

    RUN_DIR/config.yaml          the resolved configuration (preprocessing filled in)
    RUN_DIR/metrics.json         pooled metrics, control, chance, epoch policy
    RUN_DIR/predictions.csv      one row per test clip and seed
    RUN_DIR/history.csv          learning curves per fold
    RUN_DIR/excluded.csv         clip, reason
    RUN_DIR/repairs.csv          clip, repair (a known error of the release, and what was done about it)
    RUN_DIR/folds/<task>.json    each finished fold task (written atomically as it ends; resuming reads them)
    RUN_DIR/checkpoints/seed{S}-{fold}.pt       torch models (``.joblib`` for scikit-learn baselines)
    RUN_DIR/spotter.json (+ spotter.pt)         a spotting run's fitted spotter (microexp.spot)

Checkpoints are read with ``torch.load(weights_only=True)`` only: a run directory someone sent you may hold a
pickle that runs code when unpickled, and the safe loader refuses it (:func:`load_checkpoint`). What a
checkpoint holds (tensors, str, int, float, lists, dicts, None) needs nothing more.

torch is imported inside the checkpoint functions only, so reading a run's tables stays light.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from microexp.errors import ConfigError, DataError, first_line
from microexp.fileio import output_errors, write_atomic

CONFIG = "config.yaml"
METRICS = "metrics.json"
PREDICTIONS = "predictions.csv"
HISTORY = "history.csv"
EXCLUDED = "excluded.csv"
REPAIRS = "repairs.csv"
FOLDS = "folds"
CHECKPOINTS = "checkpoints"
CHECKPOINT_KEYS = ("model", "state_dict", "preprocess", "classes")
SPOTTER = "spotter.json"  # what a spotting run (microexp.spot) fitted on all its subjects


# ------------------------------------------------------------------------------------------------------ paths
def file_name(name: str) -> str:
    """A fold or task name as a file name: dataset-qualified subjects (``casme2/sub01``) become ``casme2__sub01``."""
    return name.replace("/", "__").replace("\\", "__")


def checkpoint_path(out: str | Path, seed: int, fold: str) -> Path:
    return Path(out) / CHECKPOINTS / f"seed{seed}-{file_name(fold)}.pt"


def fold_path(out: str | Path, task: Any) -> Path:
    """``folds/<task name>.json``; ``task`` is a :class:`~microexp.train.folds.FoldTask` or its name."""
    return Path(out) / FOLDS / f"{file_name(task if isinstance(task, str) else task.name)}.json"


# ------------------------------------------------------------------------------------------- config, metrics
def write_config(out: str | Path, resolved: dict[str, Any]) -> Path:
    path = Path(out) / CONFIG
    write_atomic(path, yaml.safe_dump(resolved, sort_keys=False))
    return path


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """``config.yaml`` as a dict; a missing or unreadable file is a one-line error naming it."""
    path = Path(run_dir) / CONFIG
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise DataError(f"{path}: missing (not a run directory?)") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DataError(f"{path}: unreadable run file ({first_line(exc)})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: not a run configuration (a YAML mapping expected)")
    return data


def write_metrics(out: str | Path, metrics: dict[str, Any]) -> Path:
    path = Path(out) / METRICS
    write_atomic(path, json.dumps(metrics, indent=2))
    return path


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / METRICS
    if not path.is_file():
        raise DataError(f"{run_dir}: not a finished run directory (no {METRICS})")
    return read_json(path, "run file")


def read_json(path: Path, what: str = "file") -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable {what} ({first_line(exc)})") from None


def write_json(path: Path, data: Any, indent: int | None = None) -> Path:
    write_atomic(path, json.dumps(data, indent=indent))
    return path


# ---------------------------------------------------------------------------------------------------- tables
def write_tables(out: str | Path, predictions: Any, history: Any, excluded: list[Any],
                 repairs: Sequence[tuple[str, str]] = ()) -> None:
    """predictions.csv, history.csv, excluded.csv (``excluded``: objects with ``clip`` and ``reason``) and
    repairs.csv (``repairs``: (clip, repair) pairs of the clips used)."""
    import pandas as pd

    out = Path(out)
    with output_errors(out):
        predictions.to_csv(out / PREDICTIONS, index=False)
        history.to_csv(out / HISTORY, index=False)
        pd.DataFrame([{"clip": e.clip, "reason": e.reason} for e in excluded], columns=["clip", "reason"]).to_csv(
            out / EXCLUDED, index=False)
        pd.DataFrame(list(repairs), columns=["clip", "repair"]).to_csv(out / REPAIRS, index=False)


def read_table(run_dir: str | Path, name: str) -> Any:
    """A CSV of the run as a DataFrame (empty when the file is missing or empty); ids stay strings."""
    import pandas as pd

    path = Path(run_dir) / name
    try:
        return pd.read_csv(path, dtype={"subject": str, "clip_id": str, "fold": str}) if path.is_file() \
            else pd.DataFrame()
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: unreadable run file ({first_line(exc)})") from None


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """metrics.json, config.yaml, predictions, history and exclusions of a finished run directory."""
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir)
    config = read_config(run_dir)
    return {"dir": run_dir, "metrics": metrics, "config": config, "predictions": read_table(run_dir, PREDICTIONS),
            "history": read_table(run_dir, HISTORY), "excluded": read_table(run_dir, EXCLUDED)}


# ----------------------------------------------------------------------------------------------- checkpoints
@dataclass(frozen=True)
class Checkpoint:
    path: Path
    name: str  # file stem, e.g. seed0-sub01
    fold: str
    data: dict[str, Any]


def save_checkpoint(path: Path, data: dict[str, Any]) -> Path:
    """A torch checkpoint (plain containers and tensors only, so that the safe loader reads it)."""
    import torch

    with output_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(data, path)
    return path


def save_sklearn_checkpoint(path: Path, data: dict[str, Any]) -> Path:
    import joblib

    with output_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(data, path)
    return path


def load_checkpoint(path: str | Path, map_location: str = "cpu",
                    keys: Sequence[str] = CHECKPOINT_KEYS) -> dict[str, Any]:
    """A microexp checkpoint, read with ``weights_only=True`` (anything that is not plain data is refused);
    ``keys``: the entries it must hold (a recognition fold's by default)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint (was the run made with save_checkpoints: false?)")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure (or a refused global) is a bad file
        raise DataError(f"{path}: not a readable microexp checkpoint ({type(exc).__name__}: "
                        f"{first_line(exc)})") from None
    missing = [k for k in keys if not isinstance(data, dict) or k not in data]
    if missing or not isinstance(data, dict):
        raise DataError(f"{path}: not a microexp checkpoint (missing {missing})")
    return data


def _fold_of(stem: str) -> str:
    return stem.split("-", 1)[1] if stem.startswith("seed") and "-" in stem else stem


def checkpoint_files(run_dir: str | Path) -> list[Path]:
    """The torch checkpoints of a run directory, sorted (empty when it has none)."""
    folder = Path(run_dir) / CHECKPOINTS
    return sorted(folder.glob("*.pt")) if folder.is_dir() else []


def is_spotting_run(run_dir: str | Path) -> bool:
    return (Path(run_dir) / SPOTTER).is_file()


def find_checkpoints(run_dir: str | Path, fold: str | None = None) -> list[Checkpoint]:
    """Checkpoints of a run directory (not yet read); ``fold`` (a fold name or checkpoint file stem) selects
    some. ``run_dir`` may also be one ``.pt`` file."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise DataError(f"{run_dir}: run directory does not exist")
    if run_dir.is_file() and run_dir.suffix == ".pt":  # one checkpoint file given directly
        return [Checkpoint(run_dir, run_dir.stem, _fold_of(run_dir.stem), {})]
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: not a run directory (expected a folder with checkpoints/)")
    folder = run_dir / CHECKPOINTS
    paths = checkpoint_files(run_dir)
    if not paths and folder.is_dir() and any(folder.glob("*.joblib")):
        raise ConfigError(f"{run_dir}: a scikit-learn baseline run (checkpoints/*.joblib); predict and export "
                          "take the torch models")
    if not paths:
        raise DataError(f"{run_dir}: no checkpoint in this run directory (expected checkpoints/*.pt; "
                        "runs save them unless save_checkpoints is false)")
    found = [Checkpoint(p, p.stem, _fold_of(p.stem), {}) for p in paths]
    if fold is not None:
        chosen = [c for c in found if fold in (c.name, c.fold)]
        if not chosen:
            names = sorted({c.fold for c in found})
            raise ConfigError(f"{run_dir}: no checkpoint for fold {fold!r} (folds: {', '.join(names)})")
        found = chosen
    return found


def read_checkpoints(run_dir: str | Path, fold: str | None = None) -> list[Checkpoint]:
    """:func:`find_checkpoints`, each read with :func:`load_checkpoint`."""
    return [Checkpoint(c.path, c.name, c.fold, load_checkpoint(c.path)) for c in find_checkpoints(run_dir, fold)]


def leaks(config: Any) -> list[dict[str, str]]:
    """The one list of what makes a run LEAKY (test data influencing training or the epoch choice): a leaky epoch
    policy (``test-peek``, ``whole-set``) and every ``reproduce`` switch, each as ``{switch, description}``.
    ``config`` is a :class:`~microexp.config.RunConfig` or a run's ``config.yaml`` as a dict."""
    from microexp.config import EPOCH_POLICIES, LEAKY_POLICIES, REPRODUCE

    if isinstance(config, dict):
        policy = (config.get("train") or {}).get("epoch_policy", "fixed")
        reproduce = list(config.get("reproduce") or [])
    else:
        policy, reproduce = config.train.epoch_policy, list(config.reproduce)
    out = [{"switch": policy, "description": EPOCH_POLICIES[policy]}] if policy in LEAKY_POLICIES else []
    return out + [{"switch": name, "description": f"LEAKY: {REPRODUCE.get(name, 'unknown reproduction switch')}"}
                  for name in reproduce]
