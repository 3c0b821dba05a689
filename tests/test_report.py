"""Saliency maps, the HTML report (rendered in headless Chromium), run comparison and sweeps."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from conftest import tiny_config
from microexp.cli import main
from microexp.errors import ConfigError
from microexp.explain.saliency import binarise, explain_clip, grad_cam, last_conv3d, vanilla_saliency
from microexp.models.stcnn import MicroExpSTCNN
from microexp.report.compare import compare_runs
from microexp.report.html import render_report
from microexp.train.evaluate import evaluate
from microexp.train.sweep import TABLE_IX, grid_points, load_grid, parse_grid, run_sweep

HEADINGS = ["Epoch policy", "Metrics", "Dataset", "Confusion matrix", "Per class", "Per subject", "Learning curves",
            "Seed spread", "Saliency examples", "Configuration"]


@pytest.fixture(scope="module")
def run_dir(blob_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "real"
    config = tiny_config(blob_tree, control="shuffle", seeds="[0, 1]",
                         **{"train.epochs": 2, "train.epoch_policy": "validation"})
    evaluate(config, out=out, progress=False, log=lambda _m: None)
    return out


@pytest.fixture(scope="module")
def leaky_dir(blob_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "leaky"
    config = tiny_config(blob_tree, protocol="holdout", **{"train.epochs": 2, "train.epoch_policy": "test-peek"})
    evaluate(config, out=out, progress=False, log=lambda _m: None)
    return out


def _chromium(exe: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp / 'chromium-profile'}"]
    return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=120)


# ---- saliency ---------------------------------------------------------------------------------------------------


class Linear(nn.Module):
    """Scores are sum(w_c * x): the input gradient of class c is exactly w_c."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nctHW,kctHW->nk", clip, self.w)


def test_vanilla_saliency_is_the_positive_input_gradient_of_the_predicted_class() -> None:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(3, 2, 4, 5, 6, generator=gen)
    x = torch.randn(1, 2, 4, 5, 6, generator=gen)
    maps, cls = vanilla_saliency(Linear(w), {"clip": x})
    assert cls == int(torch.einsum("nctHW,kctHW->nk", x, w).argmax())
    expected = w[cls].clamp_min(0).amax(dim=0).numpy()
    assert maps["clip"].shape == (4, 5, 6) and np.allclose(maps["clip"], expected)
    forced, c2 = vanilla_saliency(Linear(w), {"clip": x}, target=(cls + 1) % 3)
    assert c2 == (cls + 1) % 3 and np.allclose(forced["clip"], w[c2].clamp_min(0).amax(dim=0).numpy())


def test_binarise_keeps_the_top_decile_of_each_frame() -> None:
    maps = np.random.default_rng(0).random((3, 20, 20))
    b = binarise(maps, 0.9)
    assert b.dtype == bool and all(abs(frame.mean() - 0.1) < 0.01 for frame in b)


def test_grad_cam_on_the_last_conv3d_of_a_3d_cnn() -> None:
    torch.manual_seed(0)
    model = MicroExpSTCNN(3, (1, 10, 16, 16), kernel=(3, 3, 3), filters=4, dense=8)
    assert last_conv3d(model) is model.conv
    cam, cls = grad_cam(model, {"clip": torch.randn(1, 1, 10, 16, 16)})
    assert cam.shape == (10, 16, 16) and 0 <= cls < 3 and cam.min() >= 0 and cam.max() == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="no nn.Conv3d"):
        last_conv3d(nn.Linear(2, 2))


def test_explain_uses_the_checkpoint_of_the_fold_that_held_the_clip_out(run_dir: Path, tmp_path: Path) -> None:
    preds = pd.read_csv(run_dir / "predictions.csv", dtype={"subject": str, "fold": str})
    held = preds[(preds["subject"] == "s01") & (preds["clip_id"] == "up2") & (preds["seed"] == 0)]
    result = explain_clip(run_dir, "s01/up2", out_dir=tmp_path)
    assert (result.seed, result.fold, result.true) == (0, held["fold"].item(), "up")
    png, gif = result.files
    assert png.suffix == ".png" and imageio.imread(png).ndim == 3
    frames = imageio.mimread(gif)
    assert len(frames) == 10 and frames[0].shape[:2] == (16, 16)
    assert main(["explain", str(run_dir), "--clip", "plain/s01/up2", "--out", str(tmp_path / "cli"),
                 "--no-gradcam"]) == 0
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == ["plain_s01_up2.gif", "plain_s01_up2.png"]
    other = next(f for f in ("fold1", "fold2", "fold3") if f != result.fold)
    with pytest.raises(ConfigError, match="explanations use held-out data"):
        explain_clip(run_dir, "s01/up2", fold=other)
    with pytest.raises(ConfigError, match="not among the run's test predictions"):
        explain_clip(run_dir, "s09/up0")


# ---- HTML report ------------------------------------------------------------------------------------------------


def test_report_renders_its_figures_in_headless_chromium(run_dir: Path, chromium: str, tmp_path: Path) -> None:
    assert main(["report", str(run_dir), "--saliency", "1"]) == 0
    page = run_dir / "report.html"
    text = page.read_text()
    assert "LEAKY" not in text and "shuffle control" in text and "chance" in text
    sources = re.findall(r"<img src='([^']*)'", text)
    # confusion, per class, per subject, learning curves, seed spread and one generated saliency example
    assert len(sources) == 6 and all(s.startswith("data:image/png;base64,") for s in sources)  # self-contained
    assert len(list((run_dir / "explain").glob("*.png"))) == 1
    dom = _chromium(chromium, tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert re.findall(r"<h2>([^<]*)</h2>", dom.stdout) == HEADINGS
    shot = tmp_path / "report.png"
    proc = _chromium(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri())
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    img = imageio.imread(shot)[..., :3].astype(int)
    assert img.shape[:2] == (2400, 1280)
    # matplotlib's blue / orange / green bars and lines, and the blue confusion matrix, are drawn on the page
    blue = (img[..., 2] - img[..., 0] > 60).sum()
    orange = ((img[..., 0] - img[..., 2] > 100) & (img[..., 1] > 80)).sum()
    assert blue > 5000 and orange > 1000, (blue, orange)
    bands = [(img[y:y + 200] < 200).any(axis=2).mean() for y in range(0, 2400, 200)]
    assert sum(b > 0.03 for b in bands) >= 8, bands  # figures down the whole page, not one blank region


def test_report_lists_excluded_clips(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("checkpoints", "explain"))
    pd.DataFrame([{"clip": "plain/s09/up1", "reason": "preprocessing failed: needs 96 frames, has 40"}]).to_csv(
        copy / "excluded.csv", index=False)
    text = render_report(copy, saliency=0, log=lambda _m: None).read_text()
    assert "1 clip(s) excluded." in text and "plain/s09/up1" in text and "needs 96 frames, has 40" in text


def test_leaky_run_has_a_red_banner(leaky_dir: Path, chromium: str, tmp_path: Path) -> None:
    page = render_report(leaky_dir, saliency=0, log=lambda _m: None)
    text = page.read_text()
    assert "<div class='leaky' id='leaky'>LEAKY RUN" in text and "TEST-PEEK" not in text[:200]
    shot = tmp_path / "leaky.png"
    proc = _chromium(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1280,600", page.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    img = imageio.imread(shot)[..., :3].astype(int)
    red = (img[..., 0] > 170) & (img[..., 1] < 40) & (img[..., 2] < 40)
    assert red[:300].sum() > 20000  # a wide red banner near the top


def test_compare_shows_metrics_side_by_side_and_config_differences(run_dir: Path, leaky_dir: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    c = compare_runs(run_dir, leaky_dir)
    diff = {k: (a, b) for k, a, b in c["config_diff"]}
    assert diff["train.epoch_policy"] == ("validation", "test-peek") and diff["protocol"] == ("kfold", "holdout")
    assert "seeds" in diff and "root" not in diff
    assert main(["compare", str(run_dir), str(leaky_dir), "--html", str(tmp_path / "c.html")]) == 0
    out = capsys.readouterr().out
    assert "test-peek (LEAKY)" in out and "train.epoch_policy: 'validation' -> 'test-peek'" in out
    assert "Configuration differences" in (tmp_path / "c.html").read_text()


# ---- sweep ------------------------------------------------------------------------------------------------------


def test_sweep_runs_each_point_and_tabulates_with_published_table_ix(blob_tree: Path, tmp_path: Path) -> None:
    base = tiny_config(blob_tree, **{"train.epochs": 1, "preprocess.frames": 12})
    grid = parse_grid(["model_params.kernel=[[3,3,3],[3,3,5]]"])
    result = run_sweep(base, grid, out=tmp_path / "sw", progress=False, log=lambda _m: None)
    t = pd.read_csv(tmp_path / "sw" / "sweep.csv")
    assert t["model_params.kernel"].tolist() == ["[3, 3, 3]", "[3, 3, 5]"] and len(result.table) == 2
    assert t["published_table_ix_accuracy"].tolist()[0] == TABLE_IX[(3, 3, 3)] == 82.93
    assert np.isnan(t["published_table_ix_accuracy"].tolist()[1])
    for d in t["run_dir"]:
        assert (Path(d) / "metrics.json").is_file()
    assert ((t["uf1"] >= 0) & (t["uf1"] <= 1)).all()
    assert "PUBLISHED numbers, not ours" in (tmp_path / "sw" / "sweep.json").read_text()


def test_grid_file_and_cartesian_points(tmp_path: Path) -> None:
    (tmp_path / "grid.yaml").write_text("model_params.kernel: [[3, 3, 3], [5, 5, 7]]\ntrain.lr: [0.01, 0.1, 1.0]\n")
    grid = load_grid(tmp_path / "grid.yaml")
    points = grid_points(grid)
    assert len(points) == 6 and points[0] == {"model_params.kernel": [3, 3, 3], "train.lr": 0.01}
    assert points[-1] == {"model_params.kernel": [5, 5, 7], "train.lr": 1.0}
    with pytest.raises(ConfigError, match="is not KEY="):
        parse_grid(["model_params.kernel"])


def test_sweep_refuses_an_impossible_point_before_training(blob_tree: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    code = main(["sweep", "--dataset", "plain", "--root", str(blob_tree), "--frames", "10", "--size", "16",
                 "--grid", "model_params.kernel=[[3,3,3],[3,3,15]]", "--out", str(tmp_path / "s"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "kernel': [3, 3, 15]" in err and "smaller than the kernel" in err
    assert not (tmp_path / "s").exists()
