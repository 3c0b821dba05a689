"""The run directory: the one place that writes and reads it (its layout: :mod:`microexp.contract.layout`;
checkpoint files: :mod:`microexp.contract.checkpoints`; both re-exported here).

torch is imported inside the checkpoint functions only, so reading a run's tables stays light.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from microexp.config import EPOCH_POLICIES, LEAKY_POLICIES, REPRODUCE
from microexp.contract.checkpoints import (  # noqa: F401 - re-exported: the run directory's checkpoint API
    CHECKPOINT_DTYPES,
    CHECKPOINT_KEYS,
    CHECKPOINT_POLICIES,
    checkpoint_policy,
    load_checkpoint,
    save_checkpoint,
    save_sklearn_checkpoint,
)
from microexp.contract.layout import (  # noqa: F401 - re-exported: the run directory's file names
    CHECKPOINT_SUFFIX,
    CHECKPOINTS,
    CONFIG,
    CURVES,
    EXCLUDED,
    EXPLAIN,
    FOLDS,
    GROUND_TRUTH,
    HISTORY,
    LAYOUT,
    LAYOUT_VERSION,
    LEGACY_SUFFIX,
    METRICS,
    PREDICTIONS,
    RECOGNITION,
    REPAIRS,
    SPOT_PREDICTIONS,
    SPOTTER,
    SPOTTER_NETS,
    SPOTTING,
    STR_CSV,
    checkpoint_path,
    file_name,
    fold_path,
    is_spotting_run,
    megc_log,
    read_layout,
    run_kind,
    write_layout,
)
from microexp.errors import ConfigError, DataError, first_line
from microexp.fileio import output_errors, write_atomic


# ------------------------------------------------------------------------------------------- config, metrics
def write_config(out: str | Path, resolved: dict[str, Any]) -> Path:
    """``config.yaml``, and ``layout.json`` (the layout version; the kind: spotting for ``task: spot``)."""
    write_layout(out, SPOTTING if resolved.get("task") == "spot" else RECOGNITION)
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


def keeps_checkpoint(config: Any, seed: int) -> bool:
    """Whether a run with ``config`` (a RunConfig) saves the fold model of ``seed``."""
    policy = checkpoint_policy(config.save_checkpoints)
    return policy == "all" or (policy == "predict" and seed == min(config.seeds))


def _fold_of(stem: str) -> str:
    return stem.split("-", 1)[1] if stem.startswith("seed") and "-" in stem else stem


def checkpoint_files(run_dir: str | Path) -> list[Path]:
    """The torch checkpoints of a run directory (``.safetensors``, or an older run's ``.pt`` where no safetensors
    file of that name exists), sorted by name (empty when it has none)."""
    folder = Path(run_dir) / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = {p.stem: p for p in folder.glob(f"*{LEGACY_SUFFIX}")}
    found.update({p.stem: p for p in folder.glob(f"*{CHECKPOINT_SUFFIX}")})
    return [found[k] for k in sorted(found)]


def is_checkpoint_file(path: Path) -> bool:
    return path.is_file() and path.suffix in (CHECKPOINT_SUFFIX, LEGACY_SUFFIX)


def find_checkpoints(run_dir: str | Path, fold: str | None = None) -> list[Checkpoint]:
    """Checkpoints of a run directory (not yet read); ``fold`` (a fold name or checkpoint file stem) selects
    some. ``run_dir`` may also be one checkpoint file (``.safetensors``, or ``.pt`` of an older run)."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise DataError(f"{run_dir}: run directory does not exist")
    if is_checkpoint_file(run_dir):  # one checkpoint file given directly
        return [Checkpoint(run_dir, run_dir.stem, _fold_of(run_dir.stem), {})]
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: not a run directory (expected a folder with checkpoints/)")
    folder = run_dir / CHECKPOINTS
    paths = checkpoint_files(run_dir)
    if not paths and folder.is_dir() and any(folder.glob("*.joblib")):
        raise ConfigError(f"{run_dir}: a scikit-learn baseline run (checkpoints/*.joblib); predict and export "
                          "take the torch models")
    if not paths:
        raise DataError(f"{run_dir}: no checkpoint in this run directory (expected checkpoints/*.safetensors; "
                        "runs save them unless save_checkpoints is none)")
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

    if isinstance(config, dict):
        policy = (config.get("train") or {}).get("epoch_policy", "fixed")
        reproduce = list(config.get("reproduce") or [])
    else:
        policy, reproduce = config.train.epoch_policy, list(config.reproduce)
    out = [{"switch": policy, "description": EPOCH_POLICIES[policy]}] if policy in LEAKY_POLICIES else []
    return out + [{"switch": name, "description": f"LEAKY: {REPRODUCE.get(name, 'unknown reproduction switch')}"}
                  for name in reproduce]
