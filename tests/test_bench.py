"""microexp bench: the quick run reports every figure, and the FLOP counts follow the stated formula."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from microexp.bench.stcnn import fast_path_flops, stcnn_flops
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
    assert isinstance(r["machine"]["cpu_flags"], list) and isinstance(r["machine"]["bf16_native"], bool)
    assert r["tuned"]["mode"] == "off" and "tuned fast path: none timed (MICROEXP_TUNE=off)" in text
    assert r["preprocess"]["frames_per_s"] > 0 and r["preprocess"]["source"]
    assert [s["fps"] for s in r["spotting"]] == [30.0, 200.0] and all(s["frames_per_s"] > 0 for s in r["spotting"])
    assert "spotting 160x120 at 30 fps" in text
    assert r["peak_rss_mb"] >= r["peak_rss_mb_after_stcnn"] > 0
    lo, hi = r["train_speedup_range"]  # the fast / plain ratio of each alternated repeat: one repeat here
    assert lo == hi and abs(r["train_speedup"] - lo) <= 0.02
    assert len(r["train_fast"]["step_seconds"]) == len(r["train_naive"]["step_seconds"]) == 1
    assert r["infer_fast"]["single"]["repeats"] == 5 and "latency_ms_range" in r["infer_fast"]["single"]
    assert r["memory"]["gbs"] > 0 and r["memory"]["best_gbs"] >= r["memory"]["gbs"]
    _check_models(r["models"])
    st = r["stream"]  # the streamed video predictor, end to end: 2 s of 30 fps video in the quick run
    assert st["frames"] == 60 and st["frames_per_s"] > 0 and st["windows"] >= 1 and st["face_detections"] >= 1
    assert f"predict stream {st['video']}: {st['frames_per_s']} frames/s" in text
    assert "fusenet-intermediate" in text and "skipped" in text  # the per-model table
    assert main(["bench", "--repeats", "0"]) == 2


def _check_models(models: list[dict]) -> None:
    from microexp.models import get, names

    assert [m["name"] for m in models] == names()  # every registered model, in the registry's order
    for m in models:
        if get(m["name"]).kind != "torch":
            assert m["skipped"]  # said, not dropped
            continue
        assert m["precision"] == "fp32" and m["parameters"] > 0 and m["batch"] == 2 and not m["full_size"]
        assert m["flops_per_clip"]["train_step"] > m["flops_per_clip"]["inference"] > 0, m["name"]
        assert m["bytes_per_clip"]["train_step"] > m["bytes_per_clip"]["inference"] > 0, m["name"]
        for key in ("train", "infer_batch", "latency_batch1"):
            fig, roof = m[key], m[key]["roofline"]
            assert fig["clips_per_s"] > 0, (m["name"], key)
            # the fraction is the roofline time over the measured one (no bound on it: the ceilings are measured
            # under the machine's current load, so a loaded host reads above 1)
            seconds = fig["seconds_per_step"] if key == "train" else fig["latency_ms"] / 1000
            roof_s = max(roof["compute_seconds"], roof["memory_seconds"])
            assert roof["fraction"] > 0 and roof["fraction"] == pytest.approx(roof_s / seconds, rel=0.02, abs=2e-3)
            assert roof["bound"] == ("compute" if roof["compute_seconds"] >= roof["memory_seconds"] else "memory")
        assert m["infer_batch"]["batch"] == 2 and m["latency_batch1"]["batch"] == 1
        assert m["peak_rss_mb"] > 0
        # models with a fast path (the Reddy models, HTNet, MMNet) time their plain layers in the same run
        assert ("train_speedup" in m) == m["name"].startswith(("stcnn", "fusenet", "htnet", "mmnet")), m["name"]
    two = next(m for m in models if m["name"] == "twostream")
    assert two["input"]["clip"] == [1, 8, 8, 8] and "152x32x32" in two["reduced"]  # says it is reduced


def test_bench_models_flag_times_only_the_named_models_and_rejects_unknown_ones(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "b.json"
    assert main(["bench", "--quick", "--repeats", "1", "--warmup", "0", "--models", "ststnet,lbptop-svm",
                 "--json", str(out), "--no-progress"]) == 0
    assert [m["name"] for m in json.loads(out.read_text())["models"]] == ["ststnet", "lbptop-svm"]
    capsys.readouterr()
    assert main(["bench", "--quick", "--models", "stcnn,fusenet"]) == 2
    assert "unknown model 'fusenet'" in capsys.readouterr().err
    assert main(["bench", "--models", ","]) == 2
    assert "--models=',' names no model" in capsys.readouterr().err


def test_flop_count_of_fusenet_is_its_two_convolutions_and_dense_layers() -> None:
    from microexp.bench.models import count_flops
    from microexp.models.fusenet import IntermediateFuseNet

    shape = (1, 18, 32, 32)
    model = IntermediateFuseNet(3, shape, shape)
    conv = 2 * 32 * 4 * 30 * 30 * 135  # per stream: 32 filters over 4x30x30 valid outputs, 135 taps
    dense = 2 * (2 * 32 * 1 * 10 * 10 * 1024 + 1024 * 128 + 128 * 3)
    f = count_flops(model, {"eyes": shape, "mouth": shape}, 3)
    assert f["inference"] == 2 * conv + dense
    # backward: the convs' weight gradients only (the clips need no gradient), both gradients of every Dense
    assert f["train_step"] == 4 * conv + 3 * dense
    assert model.fast  # counted on the plain layers, the flag restored


def test_bench_records_and_prints_the_tuned_choices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from microexp.bench.tuning import lines, tuned_choices
    from microexp.fast import tune

    monkeypatch.setenv("MICROEXP_TUNE_CACHE", str(tmp_path / "tune.json"))
    monkeypatch.delenv("MICROEXP_TUNE")
    monkeypatch.setattr(tune, "log", lambda m: None)
    tune.clear_memory()
    model = MicroExpSTCNN(3, (1, 20, 16, 16), filters=4, dense=8).eval()
    import torch

    with torch.no_grad():
        model(clip=torch.randn(2, 1, 20, 16, 16))
    t = tuned_choices()
    assert t["mode"] == "measured" and t["machine"]["torch"] == torch.__version__
    ops = sorted(c["op"] for c in t["choices"])
    assert ops == ["conv_relu_pool", "linear"]
    for c in t["choices"]:
        assert c["winner"] in tune.CANDIDATES[c["op"]]["fp32"] and c["speedup_vs_plain"] >= 0.9
        assert set(c["seconds"]) == set(tune.CANDIDATES[c["op"]]["fp32"])
    text = lines(t)
    assert text[0].startswith("tuned fast path (measured") and len(text) == 3
    assert "conv_relu_pool infer fp32 2x1x20x16x16" in text[1] and "x plain" in text[1]
    tune.clear_memory()


@pytest.mark.slow
def test_bench_app_times_the_app_job_against_predict_and_spot(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    """bench --app (issue #23 item 5): one app job (upload to results, a recognition and a spotting run) against
    `microexp predict` + `microexp spot` on the same video, each a fresh process; --quick uses a 4-s video."""
    out = tmp_path / "app.json"
    assert main(["bench", "--app", "--quick", "--repeats", "1", "--json", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    r = json.loads(out.read_text())
    assert r["video"] == {"seconds": 4.0, "frames": 120, "width": 640, "height": 480, "fps": 30.0}
    assert r["face"] == "dlib" and r["repeats"] == 1
    assert r["cli_predict_s"] > 0 and r["cli_spot_s"] > 0 and r["app_job_s"] > 0
    assert r["cli_s"] == pytest.approx(r["cli_predict_s"] + r["cli_spot_s"])
    assert r["ratio"] == pytest.approx(r["app_job_s"] / r["cli_s"])
    assert len(r["rounds"]["cli"]) == len(r["rounds"]["app"]) == 1
    assert "ratio app / command line" in text and "120 frames" in text
