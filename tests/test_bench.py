"""microexp bench: the quick run reports every figure, and the FLOP counts follow the stated formula."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from microexp.bench import fast_path_flops, stcnn_flops
from microexp.cli import main
from microexp.models.stcnn import MicroExpSTCNN


def test_direct_conv_flops_of_the_casme_sq_model() -> None:
    f = stcnn_flops(MicroExpSTCNN(3, (1, 96, 64, 64)), batch=8)
    conv = 2 * 8 * 32 * 82 * 62 * 62 * 135  # 32 filters over 82x62x62 outputs, 135 taps
    dense = 2 * 8 * (345_600 * 128 + 128 * 3)
    assert f == {"conv": conv, "dense": dense, "inference": conv + dense, "train_step": 2 * conv + 3 * dense}
    assert round(conv / 8 / 1e9, 3) == 2.723  # GFLOP per clip forward


def test_fast_path_flops_count_the_pooled_outputs_only() -> None:
    f = fast_path_flops(MicroExpSTCNN(3, (1, 96, 64, 64)), batch=8)
    conv = 2 * 8 * 32 * 81 * 60 * 60 * 135  # the 82nd frame and the last 2 rows/cols never reach a pooling window
    weight_grad = 2 * 8 * 32 * 27 * 20 * 20 * 135  # one conv output per pooled output
    dense = 2 * 8 * (345_600 * 128 + 128 * 3)
    assert f == {"conv": conv, "weight_grad": weight_grad, "dense": dense, "inference": conv + dense,
                 "train_step": conv + weight_grad + 3 * dense}


def test_quick_bench_writes_every_figure(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--repeats", "1", "--warmup", "1", "--json", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "GFLOP/s" in text and "frames/s" in text and "peak RSS" in text
    r = json.loads(out.read_text())
    assert r["machine"]["cores"] >= 1 and r["machine"]["torch"] and r["machine"]["cpu"]
    assert r["matmul"]["gflops"] > 0 and "2*N*C_out" in r["flop_formula"]
    for path in ("naive", "fast"):
        assert r[f"train_{path}"]["clips_per_s"] > 0 and 0 < r[f"train_{path}"]["fraction_of_peak"]
        assert r[f"infer_{path}"]["single"]["batch"] == 1 and r[f"infer_{path}"]["single"]["latency_ms"] > 0
        assert r[f"infer_{path}"]["batch"]["batch"] == 2
        assert ("performed_fraction_of_peak" in r[f"train_{path}"]) == (path == "fast")
    assert r["machine"]["omp_wait_policy"] and r["machine"]["numba"] != "missing"
    assert r["preprocess"]["frames_per_s"] > 0 and r["preprocess"]["source"]
    assert [s["fps"] for s in r["spotting"]] == [30.0, 200.0] and all(s["frames_per_s"] > 0 for s in r["spotting"])
    assert "spotting 160x120 at 30 fps" in text
    assert r["peak_rss_mb"] >= r["peak_rss_mb_after_naive"] > 0
    assert main(["bench", "--repeats", "0"]) == 2
