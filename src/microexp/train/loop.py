"""Training loop: seeded SGD with cross-entropy, and the epoch policy (fixed, validation, test-peek)."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from microexp import precision as prec
from microexp.config import TrainConfig
from microexp.runtime import tune_allocator
from microexp.train.metrics import core_metrics


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    TrainConfig(device=name).check_device()  # one line, not a CUDA traceback mid-run
    return torch.device(name)


Inputs = dict[str, torch.Tensor]


def _batch(inputs: Inputs, idx: np.ndarray | torch.Tensor, device: torch.device) -> Inputs:
    index = torch.as_tensor(idx, dtype=torch.long)
    return {k: v.index_select(0, index).to(device, non_blocking=True) for k, v in inputs.items()}


@torch.no_grad()
def predict_proba(model: nn.Module, inputs: Inputs, idx: np.ndarray, batch_size: int = 32,
                  device: torch.device | None = None, precision: str | None = None) -> np.ndarray:
    """Class probabilities for rows ``idx`` (eval mode, no dropout), in ``precision`` (default: the one the
    model was trained in, :func:`microexp.precision.of`)."""
    device = device or next(model.parameters()).device
    model.eval()
    out = []
    with prec.autocast(precision or prec.of(model), device):
        for start in range(0, len(idx), batch_size):
            logits = model(**_batch(inputs, idx[start:start + batch_size], device))
            out.append(torch.softmax(logits.float(), dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def _evaluate(model: nn.Module, inputs: Inputs, y: torch.Tensor, idx: np.ndarray, batch_size: int,
              device: torch.device, n_classes: int) -> dict[str, float]:
    probs = predict_proba(model, inputs, idx, batch_size, device)
    yt = y[torch.as_tensor(idx)].numpy()
    loss = float(nn.functional.nll_loss(torch.log(torch.as_tensor(probs).clamp_min(1e-7)),
                                        torch.as_tensor(yt)).item())
    m = core_metrics(yt, probs.argmax(1), n_classes)
    return {"loss": loss, "accuracy": m["accuracy"], "uf1": m["uf1"], "uar": m["uar"]}


@dataclass
class FitResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    chosen_epoch: int = 0
    stopped_early: bool = False


def fit(model: nn.Module, inputs: Inputs, y: torch.Tensor, fit_idx: np.ndarray, cfg: TrainConfig, seed: int,
        n_classes: int, val_idx: np.ndarray | None = None, test_idx: np.ndarray | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None) -> FitResult:
    """Train ``model`` in place on rows ``fit_idx`` and leave it at the epoch the policy chooses.

    ``validation`` chooses the epoch with the best validation UF1 (ties: lower validation loss) on ``val_idx``,
    which the caller draws from the training fold. ``test-peek`` does the same on ``test_idx`` and exists only to
    reproduce published numbers; ``fixed`` keeps the last epoch and never looks at held-out data.
    """
    device = next(model.parameters()).device
    prec.note_once(prec.check(cfg.precision, device, "train.precision"))
    prec.tag(model, cfg.precision)  # predict_proba scores it in the precision it was trained in
    tune_allocator()
    set_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    if cfg.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    choose_on = {"validation": val_idx, "test-peek": test_idx}.get(cfg.epoch_policy)
    if cfg.epoch_policy != "fixed" and (choose_on is None or len(choose_on) == 0):
        raise ValueError(f"epoch policy {cfg.epoch_policy!r} needs its held-out indices")
    result = FitResult()
    best_key: tuple[float, float] | None = None
    best_state: dict[str, torch.Tensor] | None = None
    since_best = 0
    fit_t = torch.as_tensor(fit_idx, dtype=torch.long)
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = fit_t[torch.randperm(len(fit_t), generator=gen)]
        total, correct, seen = 0.0, 0, 0
        for start in range(0, len(order), cfg.batch_size):
            rows = order[start:start + cfg.batch_size]
            batch = _batch(inputs, rows, device)
            target = y.index_select(0, rows).to(device)
            opt.zero_grad(set_to_none=True)
            with prec.autocast(cfg.precision, device):
                logits = model(**batch)
                loss = loss_fn(logits.float(), target)
            loss.backward()
            opt.step()
            total += float(loss.item()) * len(rows)
            correct += int((logits.argmax(1) == target).sum().item())
            seen += len(rows)
        record: dict[str, Any] = {"epoch": epoch, "train_loss": total / seen, "train_accuracy": correct / seen}
        if choose_on is not None:
            held = _evaluate(model, inputs, y, choose_on, cfg.batch_size * 4, device, n_classes)
            prefix = "val" if cfg.epoch_policy == "validation" else "test"
            record.update({f"{prefix}_{k}": v for k, v in held.items()})
            key = (held["uf1"], -held["loss"])
            if best_key is None or key > best_key:
                best_key, since_best = key, 0
                best_state = copy.deepcopy(model.state_dict())
                result.chosen_epoch = epoch
            else:
                since_best += 1
        result.history.append(record)
        if on_epoch:
            on_epoch(record)
        if cfg.patience is not None and choose_on is not None and since_best >= cfg.patience:
            result.stopped_early = True
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        result.chosen_epoch = len(result.history)
    return result
