"""Shared test fixtures. Trees are built once per session in temporary folders."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

torch.set_num_threads(2)
# the fast path's autotuner takes today's defaults without timing anything (tests force candidates themselves)
os.environ.setdefault("MICROEXP_TUNE", "off")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def write_blob_tree(root: Path, subjects: int = 6, per_class: int = 4, frames: int = 24, size: int = 32,
                    seed: int = 0) -> Path:
    """A plain-layout tree where the class is the direction a bright blob moves (up / down / not at all)."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(subjects):
        for label, dy in (("up", -1), ("down", 1), ("none", 0)):
            for k in range(per_class):
                clip = root / f"s{s:02d}" / f"{label}{k}"
                clip.mkdir(parents=True, exist_ok=True)
                x0 = int(rng.integers(10, size - 10))
                for t in range(frames):
                    img = rng.normal(120, 10, (size, size)).clip(0, 255).astype(np.uint8)
                    cv2.circle(img, (x0, size // 2 + dy * min(t, frames // 2) // 2), 3, 200, -1)
                    cv2.imwrite(str(clip / f"frame_{t + 1:04d}.png"), img)
                rows.append({"subject": f"s{s:02d}", "clip": f"{label}{k}", "emotion": label, "onset": 1,
                             "apex": frames // 2, "offset": frames, "fps": 30, "aus": ""})
    with open(root / "annotations.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture(scope="session", autouse=True)
def _private_preprocessing_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never read or fill the user's preprocessing cache."""
    os.environ["MICROEXP_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def one_torch_thread():
    """Small linear algebra (orthogonal init's QR) is ~1000x slower with 2 threads on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def blob_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_blob_tree(tmp_path_factory.mktemp("blob"))


def tiny_config(root: Path, **overrides: object):  # noqa: ANN201 - RunConfig, imported lazily
    """A fast run on a plain tree: a small STCNN (4 filters, 3x3x3 kernel) on 10 frames of 16x16."""
    from microexp.config import RunConfig

    base = RunConfig(dataset="plain", root=str(root), protocol="kfold", folds=3,
                     model_params={"kernel": [3, 3, 3], "filters": 4, "dense": 16},
                     preprocess={"frames": 10, "selection": "whole",
                                 "streams": [{"name": "clip", "region": "face", "size": [16, 16], "kind": "raw"}]})
    return base.with_overrides([f"{k}={v}" for k, v in {"train.epochs": 3, **overrides}.items()])


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, located only (``make test`` installs it first, see the Makefile's ``browser`` target)."""
    exe = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if exe is None:
        pytest.skip("chromium is not installed: `make browser` installs Debian's chromium with apt-get "
                    "(make test runs it first)")
    return exe
