"""Training loop: seeded SGD/Adam/AdamW with cross-entropy, the plateau and exponential schedulers, and the epoch
policy (fixed, validation, test-peek, whole-set)."""

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
from microexp.fast.dense import sgd_in_backward
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


def batch_bounds(n: int, batch_size: int, drop_last: bool = False) -> list[tuple[int, int]]:
    """(start, stop) of each training batch over ``n`` shuffled rows. ``drop_last``: the remainder is left out
    (Keras' ``steps_per_epoch = len // batch``). Otherwise a lone last row joins the batch before it: batch
    normalisation cannot train on one row, and no row is dropped."""
    if drop_last and n >= batch_size:
        return [(s, s + batch_size) for s in range(0, n - n % batch_size, batch_size)]
    bounds = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


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
              device: torch.device, n_classes: int) -> tuple[dict[str, float], np.ndarray]:
    probs = predict_proba(model, inputs, idx, batch_size, device)
    yt = y[torch.as_tensor(idx)].numpy()
    loss = float(nn.functional.nll_loss(torch.log(torch.as_tensor(probs).clamp_min(1e-7)),
                                        torch.as_tensor(yt)).item())
    m = core_metrics(yt, probs.argmax(1), n_classes)
    return {"loss": loss, "accuracy": m["accuracy"], "uf1": m["uf1"], "uar": m["uar"]}, probs


@dataclass
class FitResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    chosen_epoch: int = 0
    stopped_early: bool = False
    # train.report_epochs: class probabilities of the test rows at each epoch of the range (scored, never chosen on)
    test_probs: dict[int, np.ndarray] = field(default_factory=dict)


def choice_rows(policy: str, fit_idx: np.ndarray, val_idx: np.ndarray | None,
                test_idx: np.ndarray | None) -> np.ndarray | None:
    """The rows the epoch policy chooses on: none (fixed), the validation split, the test fold (test-peek, LEAKY)
    or every clip of the run, test fold included (whole-set, LEAKY: the FuseNet code validated on its whole set)."""
    if policy == "fixed":
        return None
    if policy == "whole-set":
        parts = [p for p in (fit_idx, val_idx, test_idx) if p is not None]
        rows = np.unique(np.concatenate(parts)) if test_idx is not None else None
    else:
        rows = {"validation": val_idx, "test-peek": test_idx}[policy]
    if rows is None or len(rows) == 0:
        raise ValueError(f"epoch policy {policy!r} needs its held-out indices")
    return rows


def plateau_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.ReduceLROnPlateau:
    """Keras' ReduceLROnPlateau (mode min, min_delta 1e-4 absolute, cooldown 0) with torch's class: Keras lowers the
    rate after ``patience`` epochs without improvement, torch after ``patience + 1``, hence ``patience - 1``."""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=cfg.scheduler_factor, patience=cfg.scheduler_patience - 1, threshold=1e-4,
        threshold_mode="abs", cooldown=0, min_lr=cfg.min_lr, eps=0.0)


# Adam / AdamW over at least this many parameters take PyTorch's fused step (one kernel over all tensors): HTNet's
# 139.6 M parameters, AdamW step 0.33 s -> 0.09 s, Adam 2.2-3.1 s -> 0.8-1.5 s on a loaded 2-core host (AVX-512,
# torch 2.13; docs/models.md "HTNet"). Smaller models keep the per-tensor loop: the fused kernel rounds differently,
# and over a small run that moves results other tests pin (MMNet's 16x16 learnability test: 0.89 -> 0.81).
FUSED_ADAM_MIN_PARAMS = 50_000_000


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``cfg.optimizer`` names over ``model``'s parameters (Adam / AdamW fused for large models: the
    same update within float rounding, tests/test_htnet.py)."""
    params = list(model.parameters())
    if cfg.optimizer in ("adam", "adamw"):
        cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
        if sum(p.numel() for p in params) >= FUSED_ADAM_MIN_PARAMS:
            try:
                return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
            except RuntimeError:  # a device without the fused kernel: the loop below
                pass
        return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def train_step(model: nn.Module, opt: torch.optim.Optimizer, batch: dict[str, torch.Tensor], target: torch.Tensor,
               loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = nn.functional.cross_entropy,
               precision: str = "fp32", device: Any = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step as :func:`fit` takes it, and as ``microexp bench`` times it: forward and loss in
    ``precision`` (fp32 logits into the loss), backward, ``opt.step()``; the gradients are dropped before and
    after. A wide Dense layer on the fast CPU path whose weight ``opt`` steps as plain SGD applies that step in its
    backward (:func:`microexp.fast.dense.sgd_in_backward`). Returns the loss and the logits."""
    opt.zero_grad(set_to_none=True)
    with sgd_in_backward(opt), prec.autocast(precision, device):
        logits = model(**batch)
        loss = loss_fn(logits.float(), target)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)  # freed now, not at the next step: evaluation and other models get the memory
    return loss, logits


def fit(model: nn.Module, inputs: Inputs, y: torch.Tensor, fit_idx: np.ndarray, cfg: TrainConfig, seed: int,
        n_classes: int, val_idx: np.ndarray | None = None, test_idx: np.ndarray | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None) -> FitResult:
    """Train ``model`` in place on rows ``fit_idx`` and leave it at the epoch the policy chooses.

    ``validation`` chooses the epoch with the best validation ``cfg.epoch_metric`` (UF1 or accuracy; ties: lower
    validation loss) on ``val_idx``, which the caller draws from the training fold. ``test-peek`` does the same on
    ``test_idx`` and ``whole-set`` on every row given; both exist only to reproduce published numbers. ``fixed``
    keeps the last epoch and never looks at held-out data. With ``cfg.report_epochs`` the ``test_idx`` rows are
    scored at each epoch of the range (kept in ``FitResult.test_probs``) but never chosen on. The plateau
    scheduler steps on the training loss or on the validation loss of ``val_idx``.
    """
    device = next(model.parameters()).device
    prec.note_once(prec.check(cfg.precision, device, "train.precision"))
    prec.tag(model, cfg.precision)  # predict_proba scores it in the precision it was trained in
    tune_allocator()
    set_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = make_optimizer(model, cfg)
    scheduler = plateau_scheduler(opt, cfg) if cfg.scheduler == "plateau" else None
    decay = (torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.scheduler_factor)
             if cfg.scheduler == "exponential" else None)
    if scheduler is not None and cfg.scheduler_monitor == "val_loss" and (val_idx is None or len(val_idx) == 0):
        raise ValueError("train.scheduler_monitor=val_loss needs the validation indices")
    if cfg.augment != "none":  # run_fold enlarges the training rows once (microexp.train.folds.augment_training_rows)
        raise ValueError("fit: train.augment is applied by run_fold before training, not per batch")
    report = range(cfg.report_epochs[0], cfg.report_epochs[1] + 1) if cfg.report_epochs else range(0)
    if report and (test_idx is None or len(test_idx) == 0):
        raise ValueError("train.report_epochs needs the test indices")
    loss_fn = nn.CrossEntropyLoss()
    choose_on = choice_rows(cfg.epoch_policy, fit_idx, val_idx, test_idx)
    chosen_prefix = {"validation": "val", "test-peek": "test", "whole-set": "whole"}.get(cfg.epoch_policy, "")
    result = FitResult()
    best_key: tuple[float, float] | None = None
    best_state: dict[str, torch.Tensor] | None = None
    since_best = 0
    fit_t = torch.as_tensor(fit_idx, dtype=torch.long)
    held_batch = cfg.batch_size * 4
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = fit_t[torch.randperm(len(fit_t), generator=gen)]
        total, correct, seen = 0.0, 0, 0
        for start, stop in batch_bounds(len(order), cfg.batch_size, cfg.drop_last):
            rows = order[start:stop]
            batch = _batch(inputs, rows, device)
            target = y.index_select(0, rows).to(device)
            loss, logits = train_step(model, opt, batch, target, loss_fn, cfg.precision, device)
            total += float(loss.item()) * len(target)
            correct += int((logits.argmax(1) == target).sum().item())
            seen += len(target)
        record: dict[str, Any] = {"epoch": epoch, "train_loss": total / seen, "train_accuracy": correct / seen}
        if scheduler is not None or decay is not None:
            record["lr"] = opt.param_groups[0]["lr"]  # the rate this epoch trained with
        scored: dict[str, dict[str, float]] = {}
        if val_idx is not None and len(val_idx):
            scored["val"], _ = _evaluate(model, inputs, y, val_idx, held_batch, device, n_classes)
        if test_idx is not None and (cfg.epoch_policy == "test-peek" or epoch in report):
            scored["test"], probs = _evaluate(model, inputs, y, test_idx, held_batch, device, n_classes)
            if epoch in report:
                result.test_probs[epoch] = probs
        if cfg.epoch_policy == "whole-set":
            scored["whole"], _ = _evaluate(model, inputs, y, choose_on, held_batch, device, n_classes)
        for prefix, held in scored.items():
            record.update({f"{prefix}_{k}": v for k, v in held.items()})
        if choose_on is not None:
            held = scored[chosen_prefix]
            key = (held[cfg.epoch_metric], -held["loss"])
            if best_key is None or key > best_key:
                best_key, since_best = key, 0
                best_state = copy.deepcopy(model.state_dict())
                result.chosen_epoch = epoch
            else:
                since_best += 1
        if scheduler is not None:
            scheduler.step(record["train_loss"] if cfg.scheduler_monitor == "train_loss" else record["val_loss"])
        if decay is not None and (cfg.scheduler_epochs is None or epoch <= cfg.scheduler_epochs):
            decay.step()
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
