"""The run directory: its layout, and the one place that writes and reads it.

    RUN_DIR/config.yaml          the resolved configuration (preprocessing filled in)
    RUN_DIR/metrics.json         pooled metrics, control, chance, epoch policy
    RUN_DIR/predictions.csv      one row per test clip and seed
    RUN_DIR/history.csv          learning curves per fold
    RUN_DIR/excluded.csv         clip, reason
    RUN_DIR/repairs.csv          clip, repair (a known error of the release, and what was done about it)
    RUN_DIR/folds/<task>.json    each finished fold task (written atomically as it ends; resuming reads them)
    RUN_DIR/checkpoints/seed{S}-{fold}.safetensors   torch models (``.joblib`` for scikit-learn baselines)
    RUN_DIR/spotter.json (+ spotter.safetensors)     a spotting run's fitted spotter (microexp.spot)

Checkpoints are safetensors files: the tensors, plus everything else of the checkpoint (model name, parameters,
preprocessing, classes, normaliser, ...) as one JSON document in the file's metadata. Loading one runs no code,
whoever made it. Floating-point tensors may be stored in bf16 or fp16 (``checkpoint_dtype``) and are read back
as fp32. Checkpoints of older runs (``.pt``) are still read, with ``torch.load(weights_only=True)`` only: a
pickle that would run code when unpickled is refused (:func:`load_checkpoint`).

torch is imported inside the checkpoint functions only, so reading a run's tables stays light.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from microexp.config import (  # noqa: F401 - the checkpoint names are re-exported
    CHECKPOINT_DTYPES,
    CHECKPOINT_POLICIES,
    EPOCH_POLICIES,
    LEAKY_POLICIES,
    REPRODUCE,
    checkpoint_policy,
)
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
CHECKPOINT_SUFFIX = ".safetensors"
LEGACY_SUFFIX = ".pt"  # runs made before safetensors: read, never written
SPOTTER = "spotter.json"  # what a spotting run (microexp.spot) fitted on all its subjects
SPOTTER_NETS = "spotter" + CHECKPOINT_SUFFIX  # the learned spotter's networks (older runs: spotter.pt)


# ------------------------------------------------------------------------------------------------------ paths
def file_name(name: str) -> str:
    """A fold or task name as a file name: dataset-qualified subjects (``casme2/sub01``) become ``casme2__sub01``."""
    return name.replace("/", "__").replace("\\", "__")


def checkpoint_path(out: str | Path, seed: int, fold: str) -> Path:
    return Path(out) / CHECKPOINTS / f"seed{seed}-{file_name(fold)}{CHECKPOINT_SUFFIX}"


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


def keeps_checkpoint(config: Any, seed: int) -> bool:
    """Whether a run with ``config`` (a RunConfig) saves the fold model of ``seed``."""
    policy = checkpoint_policy(config.save_checkpoints)
    return policy == "all" or (policy == "predict" and seed == min(config.seeds))


def _torch_dtype(dtype: str) -> Any:
    import torch

    if dtype not in CHECKPOINT_DTYPES:
        raise ConfigError(f"checkpoint_dtype={dtype!r} is not one of {', '.join(CHECKPOINT_DTYPES)}")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]


def _split(data: Any, path: tuple[str, ...], tensors: dict[str, Any]) -> Any:
    """``data`` without its tensors (JSON-able), each tensor put in ``tensors`` under its key path joined by /."""
    import torch

    if isinstance(data, dict):
        rest = {}
        for k, v in data.items():
            if not isinstance(k, str) or "/" in k:
                raise TypeError(f"checkpoint key {k!r} (keys are strings without /)")
            if isinstance(v, torch.Tensor):
                tensors["/".join((*path, k))] = v
            else:
                rest[k] = _split(v, (*path, k), tensors)
        return rest
    if isinstance(data, list | tuple):
        if any(isinstance(v, torch.Tensor) for v in data):
            raise TypeError(f"tensors in a list at {'/'.join(path)}")
        return [_split(v, path, tensors) for v in data]
    return data


def save_checkpoint(path: Path, data: dict[str, Any], dtype: str = "fp32") -> Path:
    """A safetensors checkpoint: the tensors of ``data`` (nested mappings, e.g. a ``state_dict``) with the rest of
    ``data`` as JSON in the file's metadata; floating-point tensors stored as ``dtype`` (fp32 | bf16 | fp16)."""
    from safetensors.torch import save_file

    target = _torch_dtype(dtype)
    tensors: dict[str, Any] = {}
    meta = _split(data, (), tensors)
    seen: set[int] = set()
    for key, t in tensors.items():
        t = t.detach().cpu()
        if t.is_floating_point() and t.dtype != target:
            t = t.to(target)
        elif t.untyped_storage().data_ptr() in seen:  # safetensors refuses tensors sharing memory (tied weights)
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        tensors[key] = t.contiguous()
    header = json.dumps({"data": meta, "dtype": dtype, "order": list(tensors)})  # safetensors sorts its keys
    with output_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, tmp, metadata={"format": "pt", "microexp": header})
        tmp.replace(path)  # atomic: an interrupted run leaves no half-written checkpoint
    return path


def _read_safetensors(path: Path, map_location: str) -> dict[str, Any]:
    import torch
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device=map_location) as fh:
        meta = fh.metadata() or {}
        if "microexp" not in meta:
            raise ValueError("a safetensors file without microexp metadata")
        header = json.loads(meta["microexp"])
        data = header["data"]
        for key in header.get("order") or fh.keys():  # the order the state_dict had
            t = fh.get_tensor(key)
            if t.is_floating_point() and t.dtype != torch.float32:
                t = t.float()  # stored in bf16 / fp16: every consumer works in fp32
            *parents, leaf = key.split("/")
            node = data
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = t
    return data


def save_sklearn_checkpoint(path: Path, data: dict[str, Any]) -> Path:
    import joblib

    with output_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(data, path)
    return path


def load_checkpoint(path: str | Path, map_location: str = "cpu",
                    keys: Sequence[str] = CHECKPOINT_KEYS) -> dict[str, Any]:
    """A microexp checkpoint: a safetensors file, or an older run's ``.pt`` read with ``weights_only=True``
    (anything that is not plain data is refused); ``keys``: the entries it must hold (a recognition fold's by
    default). A path whose file is missing is also tried with the other suffix (old runs keep working)."""
    import torch

    path = Path(path)
    if not path.is_file():
        other = path.with_suffix(LEGACY_SUFFIX if path.suffix == CHECKPOINT_SUFFIX else CHECKPOINT_SUFFIX)
        if not other.is_file():
            raise DataError(f"{path}: no such checkpoint (was the run made with save_checkpoints: none, or "
                            "predict, which keeps the lowest seed's only?)")
        path = other
    try:
        if path.suffix == LEGACY_SUFFIX:
            data = torch.load(path, map_location=map_location, weights_only=True)
        else:
            data = _read_safetensors(path, map_location)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure (or a refused global), a bad header: a bad file
        raise DataError(f"{path}: not a readable microexp checkpoint ({type(exc).__name__}: "
                        f"{first_line(exc) or 'no microexp metadata'})") from None
    missing = [k for k in keys if not isinstance(data, dict) or k not in data]
    if missing or not isinstance(data, dict):
        raise DataError(f"{path}: not a microexp checkpoint (missing {missing})")
    return data


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


def is_spotting_run(run_dir: str | Path) -> bool:
    return (Path(run_dir) / SPOTTER).is_file()


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
