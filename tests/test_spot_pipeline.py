"""Spotting end to end on synthetic long videos: the layouts read back through the real loaders, both spotters
beat the shuffled-interval control (which stays near chance), the learned spotter beats MDMD on micro-expressions,
the run directory and its MEGC log agree with the metrics, spotting new videos, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from microexp.cli import main
from microexp.errors import ConfigError, DataError
from microexp.spot.data import load_spot_data
from microexp.spot.evaluate import SpotConfig, evaluate_spotting
from microexp.spot.features import FeatureConfig, extract_features
from microexp.spot.outputs import parse_megc_log
from microexp.synth.longvideo import LongVideoConfig, events_of, write_layout

# the former macro timing: the orderings asserted below were set on it (with the varied default one MDMD fold's
# macro threshold falls under its micro one: short macro-expressions seen through a long window)
SYNTH = LongVideoConfig(n_subjects=4, videos_per_subject=2, n_frames=300, fps=30.0, size=48, micro_per_video=2,
                        macro_per_video=1, neutral_videos=1, seed=3, macro_timing="uniform")


@pytest.fixture(scope="module")
def lv30(tmp_path_factory) -> Path:
    return write_layout("samm_lv", SYNTH, tmp_path_factory.mktemp("lv30"))


@pytest.fixture(scope="module")
def runs(lv30, tmp_path_factory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("runs")
    # 30 fps: from its fps.txt. 48-pixel faces are below what the blink rule is made for (the eye and brow regions
    # blur into each other; tests/test_spot_footage.py checks blinks at 64), and one macro window keeps this fast
    common = dict(dataset="samm_lv", root=str(lv30), crop=48, control="shuffle", blinks="ignore", macro_scales=1)
    return {m: evaluate_spotting(SpotConfig(method=m, **common), out=out / m) for m in ("mdmd", "learned")}


def test_synthetic_layouts_read_back_with_the_planned_ground_truth(lv30, tmp_path):
    data = load_spot_data("samm_lv", lv30)
    planned = events_of(SYNTH)
    assert data.gt.counts() == {"micro": 16, "macro": 8}
    assert len(data.videos) == 9 and len(data.gt.subjects) == 4 and not data.gt.excluded
    assert data.gt.unjoined == [] and all(i.emotion in ("anger", "happiness", "surprise")
                                          for i in data.gt.of(type="micro"))
    got = sorted((i.video, i.onset, i.apex, i.offset, i.type) for i in data.gt.intervals)
    want = sorted((f"{s + 1:03d}_{v + 1}", e.onset, e.apex, e.offset, e.type) for s, v, evs in planned for e in evs)
    assert got == want
    assert data.gt.spans[("samm_lv", "001_1")] == (1, 300)
    assert ("samm_lv", "001_3") in data.videos and ("samm_lv", "001_3") not in {i.key for i in data.gt.intervals}
    # CAS(ME)^2 long layout at 200 fps: the real loader and the spotting ground truth read it
    c2 = LongVideoConfig(n_subjects=1, videos_per_subject=1, n_frames=760, fps=200.0, size=24, micro_per_video=1,
                         macro_per_video=0, seed=1)
    write_layout("casme_sq-long", c2, tmp_path)
    d2 = load_spot_data("casme_sq", tmp_path)
    (ev,) = events_of(c2)[0][2]
    (iv,) = d2.gt.intervals
    assert (iv.video, iv.onset, iv.apex, iv.offset, iv.type) == ("s15/15_0101disgustingteeth", ev.onset, ev.apex,
                                                                 ev.offset, "micro")
    assert 20 <= iv.length <= 130 and d2.fps == 200.0  # 100-600 ms at 200 fps; the rate from the synth's fps.txt
    assert f"frame rate 200 fps read from {tmp_path / 'fps.txt'}" in d2.gt.notes
    # without the file: the release's rate; a file that is not a frame rate: one line naming it
    (tmp_path / "fps.txt").unlink()
    assert load_spot_data("casme_sq", tmp_path).fps == 30.0
    (tmp_path / "fps.txt").write_text("thirty\n")
    with pytest.raises(DataError, match=r"fps.txt: not a frame rate \(one positive number expected, found 'thirty'\)"):
        load_spot_data("casme_sq", tmp_path)
    assert len(list((tmp_path / "rawpic/s15/15_0101disgustingteeth").iterdir())) == 760


def test_both_spotters_beat_the_shuffled_control_and_learned_beats_mdmd(runs):
    f1 = {m: r.metrics["overall"]["micro"]["f1"] for m, r in runs.items()}
    for m, r in runs.items():
        ctrl = r.metrics["control"]
        assert f1[m] > ctrl["overall"]["micro"]["f1"] + 0.1, m
        assert f1[m] > r.metrics["chance"]["micro"] + 0.2, m
    # the learned control sees no real interval in training: near its chance level
    ctrl = runs["learned"].metrics["control"]
    assert abs(ctrl["overall"]["micro"]["f1"] - ctrl["chance"]["micro"]) < 0.15
    assert f1["learned"] > f1["mdmd"]


def test_the_shuffled_prediction_control_is_meaningful_for_the_training_free_method(runs):
    """MDMD's shuffled-training control stays far above chance (its detector is not trained: said in the run);
    its own predictions moved at random score at chance, and never as high as the real ones (p = 1/51)."""
    m = runs["mdmd"].metrics
    assert "training-free" in m["control"]["note"] and "note" not in runs["learned"].metrics["control"]
    for r in runs.values():
        s = r.metrics["shuffled_predictions"]
        assert set(s) == {"micro", "macro", "overall"} and s["micro"]["draws"] == 50
        assert s["micro"]["method_f1"] == r.metrics["overall"]["micro"]["f1"] == pytest.approx(
            r.metrics["overall"]["micro"]["f1"])
        assert s["micro"]["f1"] == r.metrics["chance"]["micro"] and s["micro"]["f1"] < 0.2
        assert s["micro"]["p_value"] == pytest.approx(1 / 51) and s["overall"]["p_value"] == pytest.approx(1 / 51)


def test_prediction_control_on_hand_made_cases():
    import numpy as np

    from microexp.spot.evaluate import prediction_control
    from microexp.spot.groundtruth import Interval
    from microexp.spot.metrics import Spot, score

    gt = [Interval("d", "s", "v", 100 * j + 10, 100 * j + 20, "micro", apex=100 * j + 14) for j in range(10)]
    spans = {("d", "v"): (1, 1000)}
    exact = [Spot("d", "s", "v", i.onset, i.offset, "micro", 1.0) for i in gt]
    c = prediction_control(gt, exact, spans, score(gt, exact), ("micro",), np.random.default_rng(0), draws=30)
    assert c["micro"]["method_f1"] == 1.0 and c["micro"]["p_value"] == pytest.approx(1 / 31)
    assert c["micro"]["f1"] < 0.1  # ten 11-frame intervals in 1000 frames: a random place rarely hits
    # predictions that miss everything are no better than their shuffles
    off = [Spot("d", "s", "v", i.onset + 50, i.offset + 50, "micro", 1.0) for i in gt]
    c = prediction_control(gt, off, spans, score(gt, off), ("micro",), np.random.default_rng(0), draws=30)
    assert c["micro"]["method_f1"] == 0.0 and c["micro"]["p_value"] == 1.0


def test_the_learned_threshold_is_fitted_on_out_of_fold_curves(runs):
    """Each fold's learned threshold comes from curves of networks that did not train on the scored subject: an
    inner split of the fold's training subjects into two halves."""
    for f in runs["learned"].folds:
        train = {"001", "002", "003", "004"} - set(f["test_subjects"])
        for t in ("micro", "macro"):
            a, b = f["types"][t]["threshold_fitted_on"]
            assert not set(a) & set(b) and set(a) | set(b) == train and {len(a), len(b)} == {1, 2}
    assert all("threshold_fitted_on" not in f["types"]["micro"] for f in runs["mdmd"].folds)


def test_choices_are_fitted_per_fold_on_training_subjects(runs):
    r = runs["mdmd"]
    assert [f["test_subjects"] for f in r.folds] == [["001"], ["002"], ["003"], ["004"]]
    for f in r.folds:
        micro, macro = f["types"]["micro"], f["types"]["macro"]
        assert micro["k"] < macro["k"] and micro["threshold"] > 0 and macro["threshold"] > 0
    # each fold's own training subjects, its own thresholds. (Micro's is not always below macro's: the face tracker
    # holds subject 001's 48-pixel face through HOG's misses, a blink included, and the fold fitted on those frames
    # sets micro 0.75 against macro 0.53.)
    assert len({f["types"]["micro"]["threshold"] for f in r.folds}) == len(r.folds)
    assert not r.metrics["leaky"] and r.metrics["threshold_policy"] == "train"


def test_run_directory_and_megc_log_agree_with_the_metrics(runs):
    r = runs["mdmd"]
    out = r.out
    assert {p.name for p in out.iterdir()} >= {"config.yaml", "metrics.json", "megc_samm_lv.log", "predictions.json",
                                               "curves.npz", "spotter.json", "ground_truth.json"}
    head, rows = parse_megc_log((out / "megc_samm_lv.log").read_text())
    m = json.loads((out / "metrics.json").read_text())["datasets"]["samm_lv"]["overall"]
    assert head == "1"
    assert sum(o == "TP" for *_, o in rows) == m["tp"] and sum(o == "FP" for *_, o in rows) == m["fp"]
    assert sum(o == "FN" for *_, o in rows) == m["fn"] and m["n_gt"] == 24
    preds = json.loads((out / "predictions.json").read_text())["predictions"]
    assert len(preds) == m["n_pred"] and {p["type"] for p in preds} == {"micro", "macro"}
    # the report draws one timeline per video
    assert main(["report", str(out)]) == 0
    assert (out / "report.html").read_text().count("data:image/png") == 9


def test_spotting_a_new_video_with_a_run(runs, lv30, capsys):
    import microexp

    run = runs["learned"].out
    spotter = microexp.load(run)
    video = lv30 / "SAMM_longvideos" / "002_1"
    calls: list[tuple[int, int | None]] = []
    result = spotter.spot(video, progress_callback=lambda done, total: calls.append((done, total)))
    assert result.n_frames == 300 and result.fps == 30.0 and result.spots
    assert calls == [(i, None) for i in range(1, 301)]  # after every frame (the app's spotting progress)
    data = load_spot_data("samm_lv", lv30)
    from microexp.spot.metrics import score

    # the all-subject spotter finds the micro-expressions of a training video
    assert score([i for i in data.gt.intervals if i.video == "002_1"], result.spots).get(type="micro").recall >= 0.5
    assert main(["spot", str(video), "--run", str(run), "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "subject,video,onset,offset,emotion" and len(lines) == len(result.spots) + 1
    assert json.loads(result.to_json())["spots"][0]["type"] in ("micro", "macro")
    for bad in ("-3", "0"):  # one line naming the option, as predict's --fps (0 used to mean "the video's rate")
        assert main(["spot", str(video), "--run", str(run), "--fps", bad]) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"microexp spot: error: --fps {float(bad)!r}: a frame rate must be a number > 0"]


def test_a_learned_spotter_with_a_malicious_pickle_is_refused(runs, tmp_path):
    """An older run's spotter.pt is read with the one safe checkpoint policy (weights_only), like every run's
    checkpoints; a genuine one still loads."""
    import os
    import shutil

    import torch

    import microexp
    from microexp.errors import DataError
    from microexp.runs import load_checkpoint

    class Evil:
        def __reduce__(self):
            return os.mkdir, (str(tmp_path / "pwned"),)

    evil = tmp_path / "evil"
    shutil.copytree(runs["learned"].out, evil)
    states = load_checkpoint(evil / "spotter.safetensors", keys=("micro", "macro"))
    (evil / "spotter.safetensors").unlink()
    torch.save(states, evil / "spotter.pt")
    assert microexp.load(evil).models["micro"].k == states["micro"]["k"]  # the legacy file still loads
    torch.save({**states, "payload": Evil()}, evil / "spotter.pt")
    with pytest.raises(DataError, match="spotter.pt: not a readable microexp checkpoint"):
        microexp.load(evil)
    assert not (tmp_path / "pwned").exists()


def test_predict_with_a_spotting_run_says_to_use_spot(runs, lv30, capsys):
    run = runs["mdmd"].out
    assert main(["predict", str(lv30 / "SAMM_longvideos" / "002_1"), "--run", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"microexp predict: error: {run} is a spotting run (it has spotter.json): it finds intervals in "
                   f"long videos; use microexp spot VIDEO --run {run} (Python: microexp.load(run).spot(video))")


def test_a_video_file_is_streamed_like_its_frame_folder(lv30, tmp_path):
    folder = lv30 / "SAMM_longvideos" / "001_1"
    frames = sorted(folder.iterdir())[:90]
    path = tmp_path / "v.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (48, 48), False)
    for f in frames:
        w.write(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE))
    w.release()
    cfg = FeatureConfig(face="none", crop=48)
    a = extract_features(path, (6,), 30.0, cfg)
    assert a.n_frames == 90 and list(a.numbers[:3]) == [1, 2, 3] and a.head[6].shape == (90, 36)
    assert not a.valid[6][:6].any() and a.valid[6][6:-6].all() and not a.valid[6][-6:].any()  # t-k, t+k exist


def test_the_in_sample_threshold_rule_is_kept_as_an_option(lv30, capsys):
    r = evaluate_spotting(SpotConfig(dataset="samm_lv", root=str(lv30), crop=48, method="learned", epochs=2,
                                     types=("micro",), threshold="in-sample"))
    assert not r.metrics["leaky"] and r.metrics["threshold_policy"] == "in-sample"
    assert all(set(f["types"]["micro"]) == {"type", "k", "before", "after", "threshold"} for f in r.folds)
    assert main(["evaluate", "--task", "spot", "--dataset", "samm_lv", "--root", str(lv30), "--set",
                 "threshold=test-peek"]) == 2
    assert "use --epoch-policy test-peek" in capsys.readouterr().err


def test_test_peek_threshold_is_marked_leaky(lv30, runs):
    r = evaluate_spotting(SpotConfig(dataset="samm_lv", root=str(lv30), fps=30.0, crop=48, method="mdmd",
                                     threshold="test-peek", macro_scales=1))  # the fixture's windows: cached flow
    assert r.metrics["leaky"] and r.metrics["threshold_policy"] == "test-peek"


# ------------------------------------------------------------------------------------------------------ bad input
def test_bad_input_gets_named_exclusions_or_one_line(lv30, tmp_path, capsys):
    import shutil

    root = tmp_path / "bad"
    shutil.copytree(lv30, root)
    for folder in (root / "SAMM_longvideos").iterdir():  # keep three videos: a small run
        if folder.name not in ("001_1", "002_1", "002_2"):
            shutil.rmtree(folder)
    ann = root / "SAMM_LongVideos_V2_Release.csv"
    text = ann.read_text().splitlines()
    rows = text[10:]
    # a row whose video is missing, onset > offset, an interval past the video's end
    rows.append("009,009_1_1,1,10,20,30,21,Micro - 1/2,4,")
    rows.append("001,001_1_9,1,120,110,100,21,Micro - 1/2,4,")
    rows.append("001,001_1_8,1,290,300,330,41,Macro,4,")
    ann.write_text("\n".join(text[:10] + rows) + "\n")
    # an undecodable frame: the video is excluded by name, the others are scored
    bad = root / "SAMM_longvideos" / "002_2" / "002_2_0005.jpg"
    bad.write_bytes(b"not a jpeg")
    data = load_spot_data("samm_lv", root)
    reasons = {e.clip: e.reason for e in data.gt.excluded}
    assert "video folder" in reasons["samm_lv/009/009_1_1"] and "not found" in reasons["samm_lv/009/009_1_1"]
    assert "onset 120 is after offset 100" in reasons["samm_lv/001/001_1_9"]
    assert "outside video 001_1 (frames 1..300)" in reasons["samm_lv/001/001_1_8"]
    r = evaluate_spotting(SpotConfig(dataset="samm_lv", root=str(root), fps=30.0, crop=48, types=("micro",)))
    excl = {e["clip"]: e["reason"] for e in r.metrics["excluded"]}
    assert any("video 002_2 not scored" in v and "002_2_0005.jpg: unreadable frame image" in v for v in excl.values())
    assert r.metrics["n_videos"] == 2
    assert "003_1 not found" in excl["samm_lv/003/003_1_1"]
    # CLI: one line, exit 2
    assert main(["spot", str(tmp_path / "nothing.mp4"), "--run", str(tmp_path)]) == 2
    assert "not a spotting run" in capsys.readouterr().err
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty file"):
        extract_features(empty, (3,), 30.0)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 1000)
    with pytest.raises(DataError, match="junk.mp4: cannot read video|junk.mp4: video has no decodable frames"):
        extract_features(junk, (3,), 30.0)
    assert main(["evaluate", "--task", "spot", "--dataset", "samm_lv", "--root", str(root), "--model", "stcnn"]) == 2
    assert "--model does not apply to --task spot" in capsys.readouterr().err
    assert main(["evaluate", "--task", "spot", "--dataset", "samm_lv", "--root", str(root), "--recognise",
                 str(tmp_path / "norun")]) == 2
    assert f"--recognise {tmp_path / 'norun'}: no such run directory" in capsys.readouterr().err
    assert main(["evaluate", "--dataset", "samm_lv", "--root", str(root), "--recognise", str(tmp_path)]) == 2
    assert "--recognise applies to --task spot only" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="spotting method"):
        SpotConfig(method="nope").validate()


def test_stretches_without_a_face_are_gaps(lv30, tmp_path):
    folder = tmp_path / "noface"
    folder.mkdir()
    src = sorted((lv30 / "SAMM_longvideos" / "001_1").iterdir())[:120]
    rng = np.random.default_rng(0)
    for i, f in enumerate(src, 1):
        img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        if 40 <= i <= 100:  # two seconds of noise: no face
            img = rng.integers(0, 255, img.shape).astype(np.uint8)
        cv2.imwrite(str(folder / f"img{i:04d}.png"), img)
    feats = extract_features(folder, (6,), 30.0, FeatureConfig(crop=48))
    assert len(feats.gaps) == 1
    first, last, reason = feats.gaps[0]
    assert reason == "no face detected" and 40 <= first <= 72 and 100 <= last <= 106
    pos = {int(n): t for t, n in enumerate(feats.numbers)}
    assert not feats.valid[6][pos[first]:pos[last] + 1].any()


def test_spot_then_recognise_scores_strs(lv30, runs, tmp_path):
    from types import SimpleNamespace

    class AlwaysNegative:  # a stand-in recognition run: every interval is "negative"
        calls: list[int] = []

        def predict(self, frames, window, stride, fps):
            self.calls.append(len(frames))
            assert window == stride == len(frames) and fps == 30.0
            return SimpleNamespace(windows=[SimpleNamespace(label="negative")])

    rec = AlwaysNegative()
    r = evaluate_spotting(SpotConfig(dataset="samm_lv", root=str(lv30), fps=30.0, crop=48, method="mdmd",
                                     recognise="stand-in"), out=tmp_path / "str", recogniser=rec)
    assert sorted(rec.calls) == sorted(p.offset - p.onset + 1 for p in r.predictions)  # each interval, whole
    s = r.metrics["strs"]["overall"]
    assert s["strs"] == pytest.approx(s["f1_spot"] * s["f1_analysis"]) and 0 < s["f1_analysis"] < 1
    per = s["per_class"]
    assert per["negative"]["recall"] == 1.0 and all(v["recall"] == 0.0 for c, v in per.items() if c != "negative")
    assert s["recall"] == pytest.approx(1 / len(per))
    lines = (tmp_path / "str" / "str.csv").read_text().splitlines()
    assert lines[0] == "subject,video,onset,offset,emotion" and all(x.endswith(",negative") for x in lines[1:])


def test_evaluate_task_spot_recognise_flag_reaches_the_run(lv30, tmp_path, monkeypatch, capsys):
    from microexp.spot import evaluate as spot_evaluate

    seen = {}

    def fake(config, out=None, progress=None):
        seen["config"] = config
        raise ConfigError("stopped here")

    monkeypatch.setattr(spot_evaluate, "evaluate_spotting", fake)
    rec = tmp_path / "rec"
    rec.mkdir()
    assert main(["evaluate", "--task", "spot", "--dataset", "samm_lv", "--root", str(lv30), "--recognise",
                 str(rec)]) == 2
    assert seen["config"].recognise == str(rec) and "stopped here" in capsys.readouterr().err


def test_synth_cli_writes_a_long_video_layout(tmp_path, capsys):
    out = tmp_path / "c2"
    assert main(["synth", "--layout", "casme_sq-long", "--out", str(out), "--subjects", "1", "--videos", "1",
                 "--size", "24", "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "wrote 2 long videos" in said and "microexp evaluate --task spot --dataset casme_sq" in said
    data = load_spot_data("casme_sq", out)
    assert len(data.videos) == 2 and data.gt.counts() == {"micro": 2, "macro": 1}
    assert data.gt.spans[("casme_sq", "s15/15_0101disgustingteeth")] == (1, 300)  # 10 s at 30 fps
    assert (out / "fps.txt").read_text() == "30\n" and data.fps == 30.0 and "fps.txt" in said
    assert main(["synth", "--layout", "samm_lv", "--out", str(tmp_path / "x"), "--frames", "40"]) == 2
    assert "cannot hold" in capsys.readouterr().err


def test_cross_renderer_figures_on_the_second_renderer(runs, tmp_path):
    """The small version of docs/spotting.md's cross-renderer table: the learned spotter trained on the first
    renderer, applied as saved to the second renderer's videos (other faces, other deformation model)."""
    from microexp.spot.transfer import summary, transfer
    from microexp.synth.bumps import BumpConfig, write_bump_layout

    root = write_bump_layout(BumpConfig(n_subjects=2, videos_per_subject=1, n_frames=420, fps=30.0, size=48,
                                        micro_per_video=2, macro_per_video=1, seed=4), tmp_path / "b")
    r = transfer(runs["learned"].out, "samm_lv", root)
    micro = r["overall"]["micro"]
    assert micro["tp"] + micro["fn"] == 4 and r["overall"]["macro"]["tp"] + r["overall"]["macro"]["fn"] == 2
    # better placed than its own predictions moved at random
    assert micro["f1"] > r["shuffled_predictions"]["micro"]["f1"]
    # the macro-expressions too: both found, F1 above the goal's 0.5 (with the former direct k-frame windows and
    # both types kept, --set long_events=direct overlap=both: 1 of 2 found among 8 macro predictions, F1 0.20).
    # One spot per movement: 2 macro and 8 micro predictions; with overlap=one-type (two overlapping spots of one
    # type both kept) 5 and 12, macro F1 0.57, micro 0.375
    macro = r["overall"]["macro"]
    assert macro["tp"] == 2 and macro["f1"] >= 0.8
    assert micro["n_pred"] <= 10
    b = r["blinks"]
    assert b["n"] >= 2 and 0 <= b["reported_as_expression"] <= b["n"] and r["false_alarms_per_minute"] >= 0
    assert "blinks:" in summary(r) and r["blink_rule"] == "ignore"  # the test run was made with blinks=ignore
