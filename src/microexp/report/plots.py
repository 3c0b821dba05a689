"""Matplotlib figures of a run, returned as base64 ``data:`` URIs so the HTML report is one self-contained file."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def to_data_uri(fig: Figure, dpi: int = 90) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def png_file_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def confusion(matrix: Sequence[Sequence[int]], classes: Sequence[str], title: str = "confusion (rows: true)") -> str:
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * len(classes), 1.0 + 0.8 * len(classes)))
    ax.imshow(m, cmap="Blues")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, str(m[i, j]), ha="center", va="center",
                    color="white" if m[i, j] > m.max() / 2 else "black", fontsize=9)
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    return to_data_uri(fig)


def bars(groups: Mapping[str, Mapping[str, Any]], keys: Sequence[str], title: str,
         chance: Mapping[str, float] | None = None) -> str:
    """Grouped bars: one group per entry (class, subject, dataset), one bar per metric key."""
    names = list(groups)
    x = np.arange(len(names))
    width = 0.8 / len(keys)
    fig, ax = plt.subplots(figsize=(min(2.0 + 0.45 * len(names) * len(keys), 14), 3.2))
    for k, key in enumerate(keys):
        values = [float(groups[n].get(key, np.nan)) for n in names]
        errs = [float(groups[n].get(f"{key}_std", 0.0)) for n in names]
        ax.bar(x + (k - (len(keys) - 1) / 2) * width, values, width, yerr=errs if any(errs) else None, label=key)
        if chance and key in chance:
            ax.axhline(chance[key], color=f"C{k}", ls=":", lw=1)
    ax.set_xticks(x, names, rotation=45 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center",
                  fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, ncols=len(keys))
    return to_data_uri(fig)


def learning_curves(history: pd.DataFrame) -> str:
    """Training loss and held-out UF1 (validation or test-peek, when recorded) per epoch, one line per fold."""
    real = history[~history["control"].astype(str).str.lower().eq("true")] if "control" in history else history
    held = next((c for c in ("val_uf1", "test_uf1") if c in real), None)
    panels = [("train_loss", "training loss"), ("train_accuracy", "training accuracy")]
    if held:
        panels.append((held, f"{'validation' if held.startswith('val') else 'TEST-PEEK (leaky)'} UF1"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.0), squeeze=False)
    for ax, (col, label) in zip(axes[0], panels, strict=True):
        for (seed, fold), g in real.groupby(["seed", "fold"], sort=False):
            ax.plot(g["epoch"], g[col], lw=1, label=f"s{seed} {fold}")
        ax.set_xlabel("epoch")
        ax.set_title(label, fontsize=10)
    n_lines = real.groupby(["seed", "fold"]).ngroups
    if n_lines <= 12:
        axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return to_data_uri(fig)


def seed_spread(per_seed: Sequence[Mapping[str, Any]], control: Sequence[Mapping[str, Any]] | None,
                chance: Mapping[str, float]) -> str:
    """Each seed's pooled UF1 / UAR / accuracy as points (the shuffle control beside, hollow), chance as lines."""
    keys = ("uf1", "uar", "accuracy")
    fig, ax = plt.subplots(figsize=(5.5, 3.0))
    for k, key in enumerate(keys):
        vals = [m[key] for m in per_seed]
        ax.scatter(np.full(len(vals), k - 0.1), vals, color=f"C{k}", label=f"{key} (run)")
        if control:
            cvals = [m[key] for m in control]
            ax.scatter(np.full(len(cvals), k + 0.1), cvals, facecolors="none", edgecolors=f"C{k}",
                       label=f"{key} (shuffle control)")
        ax.hlines(chance[key], k - 0.3, k + 0.3, colors="gray", linestyles=":")
    ax.set_xticks(range(len(keys)), keys)
    ax.set_ylim(0, 1.05)
    ax.set_title(f"spread over {len(per_seed)} seed(s); dotted: chance", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    return to_data_uri(fig)
