"""Checkpoint files: safetensors with the rest of the checkpoint as JSON metadata, and the older ``.pt`` read safely.

A checkpoint is the tensors plus everything else of it (model name, parameters, preprocessing, classes,
normaliser, ...) as one JSON document in the file's metadata. Loading one runs no code, whoever made it.
Floating-point tensors may be stored in bf16 or fp16 (``checkpoint_dtype``) and are read back as fp32.
Checkpoints of older runs (``.pt``) are still read, with ``torch.load(weights_only=True)`` only: a pickle that
would run code when unpickled is refused (:func:`load_checkpoint`). torch is imported inside the functions only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from microexp.contract.layout import CHECKPOINT_SUFFIX, LEGACY_SUFFIX
from microexp.errors import ConfigError, DataError, first_line
from microexp.fileio import output_errors

CHECKPOINT_KEYS = ("model", "state_dict", "preprocess", "classes")
# save_checkpoints: all = every seed's fold models; predict = what predict / explain / export use by default (the
# lowest seed's fold models); none. checkpoint_dtype: how floating-point weights are stored.
CHECKPOINT_POLICIES = ("all", "predict", "none")
CHECKPOINT_DTYPES = ("fp32", "bf16", "fp16")


def checkpoint_policy(value: Any) -> str:
    """``save_checkpoints`` as one of :data:`CHECKPOINT_POLICIES` (true = all, false = none, as before)."""
    if isinstance(value, bool):
        return "all" if value else "none"
    text = str(value).strip().lower()
    text = {"true": "all", "yes": "all", "false": "none", "no": "none"}.get(text, text)
    if text not in CHECKPOINT_POLICIES:
        raise ConfigError(f"save_checkpoints={value!r} is not one of {', '.join(CHECKPOINT_POLICIES)} "
                          "(true = all, false = none)")
    return text



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
