"""``microexp bench --vs-keras``: the Keras references in benchmarks/ have exactly microexp's parameter counts, the
side-by-side runner reports each ratio, and without TensorFlow the command says in one line how to install it.

TensorFlow and Keras are optional (benchmarks/requirements.txt); the tests that need them are skipped, saying so,
where they are not installed."""

from __future__ import annotations

import importlib.util

import pytest

from microexp.bench import keras as benchvs
from microexp.bench import timing
from microexp.cli import main

HAVE_TF = importlib.util.find_spec("tensorflow") is not None and importlib.util.find_spec("keras") is not None
needs_tf = pytest.mark.skipif(not HAVE_TF, reason="TensorFlow/Keras not installed (pip install -r "
                                                   "benchmarks/requirements.txt); the Keras references need them")

# the seeds' published counts at CAS(ME)^2 size, 3 classes (reference tables; tests/_models_helpers.PARAMETERS)
SEED_COUNTS = {"stcnn": 44_241_667, "fusenet-intermediate": 177_088_515, "fusenet-late": 177_221_123}


@needs_tf
@pytest.mark.parametrize("name", benchvs.MODELS)
def test_keras_reference_has_microexps_parameter_count(name: str, one_torch_thread) -> None:
    full = benchvs.parameter_counts(name)
    assert full == {"microexp": SEED_COUNTS[name], "keras": SEED_COUNTS[name]}
    small = benchvs.parameter_counts(name, quick=True)
    assert small["microexp"] == small["keras"] < full["keras"]


@needs_tf
def test_vs_keras_alternates_and_reports_each_ratio(one_torch_thread) -> None:
    r = benchvs.run_vs_keras(models=("stcnn",), quick=True, repeats=2, warmup=1, threads=1)
    (b,) = r["models"]
    assert b["model"] == "stcnn" and b["parameters_equal"] and r["threads"] == 1
    for key, batch in (("train", 2), ("infer_batch", 2), ("infer_single", 1)):
        f = b[key]
        assert f["batch"] == batch and set(f["seconds"]) == {"microexp", "keras"}
        assert len(f["seconds"]["microexp"]) == len(f["seconds"]["keras"]) >= 2
        assert f["ratios"]["keras"] == 1.0 and f["ratios"]["microexp"] > 0
        assert b["ratio_microexp_to_keras"][key] == f["ratios"]["microexp"]
    text = benchvs.summary(r)
    assert "stcnn: 824,067 parameters, equal" in text and "ratio" in text


def test_alternate_times_in_turn() -> None:
    calls: list[str] = []
    times = timing.alternate({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1)
    assert calls == ["a", "b"] * 4 and [len(v) for v in times.values()] == [3, 3]
    s = timing.summarise({"a": [1.0, 3.0, 2.0], "b": [4.0, 4.0, 4.0]}, 8, "b")
    assert s["clips_per_s"] == {"a": 4.0, "b": 2.0} and s["ratios"] == {"a": 2.0, "b": 1.0}


def test_without_tensorflow_one_line_says_how_to_install(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(benchvs.importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorflow" else real(name, *a))
    assert main(["bench", "--vs-keras", "--quick", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["microexp bench: error: --vs-keras needs TensorFlow and Keras, and tensorflow is not installed: "
                   "pip install -r benchmarks/requirements.txt (tensorflow-cpu 2.21, keras 3)"]


def test_without_the_benchmarks_folder_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("MICROEXP_BENCHMARKS", str(tmp_path))
    assert main(["bench", "--vs-keras", "--quick", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"microexp bench: error: --vs-keras: no Keras references at {tmp_path}")


def test_goals_reads_each_done_when_figure_from_one_alternated_run() -> None:
    """``--goals``: microexp fp32, bf16 and plain against Keras in one alternation; each of issue #28's figures is
    the median ratio with its per-repeat range, against its goal."""
    t = {"microexp": [1.0, 1.0, 2.0], "microexp_bf16": [0.5, 0.8, 1.0], "microexp_plain": [3.0, 4.0, 4.0],
         "keras": [3.0, 2.0, 4.0]}
    assert timing.pair_ratio(t, "microexp_bf16", "microexp") == {"ratio": 1.25, "range": [1.25, 2.0]}

    def fig() -> dict:
        s = timing.summarise(t, 8, "keras")
        s["between"] = {f"{k}/microexp": timing.pair_ratio(t, k, "microexp") for k in ("microexp_bf16", "microexp_plain")}
        return s

    r = {"models": [{"model": m, "train": fig(), "infer_batch": fig(), "infer_single": fig()}
                    for m in benchvs.GOALS_MODELS]}
    rows = benchvs.goals(r)
    assert len(rows) == len(benchvs.GOALS)
    first = rows[0]
    assert (first["model"], first["figure"], first["what"], first["goal"]) == ("stcnn", "train", "microexp / keras", 2.5)
    assert first["ratio"] == 3.0 and first["range"] == [2.0, 3.0] and first["met"]
    plain = next(g for g in rows if g["what"] == "microexp / microexp_plain")
    assert plain["ratio"] == 4.0 and plain["met"] and plain["range"] == [2.0, 4.0]  # fast over plain: plain / fast
    bf16 = next(g for g in rows if g["what"] == "microexp_bf16 / microexp" and g["figure"] == "train")
    assert bf16["ratio"] == 1.25 and not bf16["met"]


def test_goals_says_in_one_line_what_it_needs(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    assert main(["bench", "--goals", "--precision", "bf16", "--quick", "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == ("microexp bench: error: --goals times fp32, bf16 and the plain layers "
                                               "itself; leave --precision out")
    real = importlib.util.find_spec
    monkeypatch.setattr(benchvs.importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorflow" else real(name, *a))
    assert main(["bench", "--goals", "--quick", "--no-progress"]) == 2
    assert "--vs-keras needs TensorFlow and Keras" in capsys.readouterr().err
