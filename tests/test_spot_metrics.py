"""Spotting ground truth on the real annotation files, the MEGC interval metric (hand-made cases for each rule),
STRS and the output formats."""

from __future__ import annotations

from collections import Counter

import pytest

from _real import CASME3, CASME3_MM, CASME_SQ, SAMM_LV, need
from _real import SAMM as SAMM_MICRO
from microexp.spot import groundtruth as gtm
from microexp.spot.groundtruth import GroundTruth, Interval
from microexp.spot.metrics import Spot, iou, match, score, strs
from microexp.spot.outputs import megc_log, parse_megc_log, str_csv


# ------------------------------------------------------------------------------------------------ ground truth
def test_samm_lv_ground_truth_counts_and_emotion_join():
    gt = gtm.samm_lv_intervals(need(SAMM_LV), need(SAMM_MICRO))
    assert gt.counts() == {"macro": 343, "micro": 159}
    assert len(gt.videos) == 147 and len(gt.subjects) == 30 and not gt.excluded
    # every micro interval joins the micro coding sheet by Filename; macro intervals carry no emotion
    assert gt.unjoined == []
    micro = gt.of(type="micro")
    assert Counter(i.emotion for i in micro) == {"anger": 57, "other": 26, "happiness": 26, "surprise": 15,
                                                 "contempt": 12, "disgust": 9, "fear": 8, "sadness": 6}
    assert all(i.emotion == "" for i in gt.of(type="macro"))
    first = next(i for i in gt.intervals if i.id == "006_1_2")
    assert (first.video, first.onset, first.apex, first.offset, first.length, first.type) == \
        ("006_1", 3562, 3588, 3632, 71, "micro")
    assert 30 <= min(i.length for i in micro) and max(i.length for i in micro) <= 101


def test_samm_lv_unjoined_rows_are_reported(tmp_path):
    # a micro sheet that lacks one filename: that row is named, not dropped
    import openpyxl

    from microexp.data import samm

    rows = samm.read_annotation(need(SAMM_MICRO))
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Subject", "Filename", "Onset Frame", "Apex Frame", "Offset Frame", "Estimated Emotion"])
    for r in rows:
        if r.clip_id != "006_1_2":
            ws.append([r.subject, r.clip_id, r.onset, r.apex, r.offset, r.emotion])
    wb.save(tmp_path / "micro.xlsx")
    gt = gtm.samm_lv_intervals(SAMM_LV, tmp_path / "micro.xlsx")
    assert len(gt.unjoined) == 1 and "006_1_2" in gt.unjoined[0] and "micro.xlsx" in gt.unjoined[0]
    assert gt.counts() == {"macro": 343, "micro": 159}


def test_casme_sq_ground_truth_offset_zero_ends_at_apex():
    gt = gtm.casme_sq_intervals(need(CASME_SQ))
    assert gt.counts() == {"macro": 300, "micro": 57}
    assert len(gt.subjects) == 22 and not gt.excluded
    no_offset = [i for i in gt.intervals if i.meta.get("offset_annotated") is False]
    assert len(no_offset) == 44 and all(i.offset == i.apex and i.type == "macro" for i in no_offset)
    a = next(i for i in gt.intervals if i.subject == "s15" and i.id == "anger2_1")
    assert (a.video, a.onset, a.offset) == ("s15/15_0402beatingpregnantwoman", 2155, 2163)
    assert Counter(i.emotion for i in gt.of(type="micro")) == {"negative": 21, "others": 19, "surprise": 9,
                                                               "positive": 8}
    assert sum("overlap" in n for n in gt.notes) == 15  # same-type overlaps in the release: kept, named


def test_casme3_part_a_ground_truth():
    gt = gtm.casme3_intervals(need(CASME3_MM), need(CASME3))
    assert gt.counts() == {"macro": 3346, "micro": 860}
    assert len(gt.subjects) == 98
    # the label file's one broken row (onset 3647 after offset) has onset 2647 in the macro/micro file: reported
    assert len(gt.unjoined) == 1 and "spNO.216/d_2647" in gt.unjoined[0]


def test_bad_intervals_become_named_exclusions():
    good = Interval("x", "s1", "v1", 10, 20, "micro", id="a")
    gt = GroundTruth([good, Interval("x", "s1", "v1", 90, 120, "micro", id="late")], spans={("x", "v1"): (1, 100)})
    checked = gt.check_bounds()
    assert checked.intervals == [good]
    assert len(checked.excluded) == 1 and "outside video v1 (frames 1..100)" in checked.excluded[0].reason
    ov = gtm.overlaps([good, Interval("x", "s1", "v1", 15, 30, "micro", id="b")])
    assert len(ov) == 1 and "a 10..20 and b 15..30 overlap" in ov[0]


# ------------------------------------------------------------------------------------------------------ metric
def g(video: str, on: int, off: int, type: str = "micro", subject: str = "s1", emotion: str = "") -> Interval:
    return Interval("d", subject, video, on, off, type, emotion=emotion)


def p(video: str, on: int, off: int, type: str = "micro", subject: str = "s1", emotion: str = "") -> Spot:
    return Spot("d", subject, video, on, off, type, emotion=emotion)


def test_iou_counts_frames_inclusively():
    assert iou((1, 10), (1, 10)) == 1.0
    assert iou((1, 10), (6, 15)) == pytest.approx(5 / 15)
    assert iou((1, 1), (1, 1)) == 1.0
    assert iou((1, 10), (11, 20)) == 0.0
    # exactly 0.5 is a hit: |[1,10] & [1,5]| = 5, union 10
    assert score([g("v", 1, 10)], [p("v", 1, 5)]).get().tp == 1
    assert score([g("v", 1, 10)], [p("v", 1, 4)]).get().tp == 0


def test_matching_is_optimal_not_greedy():
    # p1 hits A and B (IoU 7/13 each), p2 hits only A: greedy in prediction order gives p1->A and 1 TP,
    # the optimal assignment p1->B, p2->A gives 2
    gts = [g("v", 0, 9), g("v", 6, 15)]
    preds = [p("v", 3, 12), p("v", 0, 10)]
    assert sorted((a, b) for a, b, _ in match(gts, preds)) == [(0, 1), (1, 0)]
    assert score(gts, preds).get().to_dict() == {"tp": 2, "fp": 0, "fn": 0, "n_pred": 2, "n_gt": 2,
                                                      "precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_one_prediction_hits_at_most_one_interval_and_vice_versa():
    # one prediction over two hit intervals: one TP, one FN (a script that lets it match both says 2 TP)
    c = score([g("v", 0, 9), g("v", 1, 10)], [p("v", 0, 10)]).get()
    assert (c.tp, c.n_pred - c.tp, c.n_gt - c.tp) == (1, 0, 1)
    # two predictions on one interval: the second is a false positive
    c = score([g("v", 0, 9)], [p("v", 0, 9), p("v", 1, 9)]).get()
    assert (c.tp, c.n_pred - c.tp, c.n_gt - c.tp) == (1, 1, 0)


def test_ground_truth_of_subjects_without_predictions_counts():
    gts = [g("v1", 0, 9), g("v2", 0, 9, subject="s2"), g("v3", 0, 9, subject="s3")]
    c = score(gts, [p("v1", 0, 9)]).get()
    assert (c.tp, c.n_pred, c.n_gt, c.recall, c.precision) == (1, 1, 3, pytest.approx(1 / 3), 1.0)
    assert c.f1 == pytest.approx(0.5)


def test_predictions_in_videos_without_ground_truth_are_false_positives():
    c = score([g("v1", 0, 9)], [p("v1", 0, 9), p("elsewhere", 0, 9), p("elsewhere", 50, 59)]).get()
    assert (c.tp, c.n_pred, c.n_gt) == (1, 3, 1) and c.precision == pytest.approx(1 / 3)


def test_types_are_matched_separately_and_pooled():
    gts = [g("v", 0, 9, "micro"), g("v", 100, 199, "macro"), g("v", 300, 399, "macro")]
    preds = [p("v", 0, 9, "macro"), p("v", 100, 199, "macro"), p("v", 0, 9, "micro")]
    r = score(gts, preds)
    assert (r.get(type="micro").tp, r.get(type="macro").tp, r.get(type="macro").n_pred) == (1, 1, 2)
    assert r.get().to_dict()["tp"] == 2 and r.get().n_gt == 3 and r.get().n_pred == 3
    assert r.get().f1 == pytest.approx(2 * 2 / 6)


def test_overall_pools_counts_over_datasets():
    gts = [Interval("a", "s", "v", 0, 9, "micro"), Interval("b", "s", "v", 0, 9, "micro"),
           Interval("b", "s", "v", 20, 29, "micro")]
    preds = [Spot("a", "s", "v", 0, 9, "micro"), Spot("b", "s", "v", 20, 29, "micro")]
    r = score(gts, preds)
    assert r.get("a").f1 == 1.0 and r.get("b").f1 == pytest.approx(2 / 3)
    assert r.get().f1 == pytest.approx(2 * 2 / 5)  # pooled counts, not the mean of 1.0 and 0.667
    assert set(r.to_dict()["datasets"]) == {"a", "b"}


def test_strs_scores_the_class_of_true_positives():
    gts = [g("v", 0, 9, emotion="anger"), g("v", 20, 29, emotion="happiness"), g("v", 40, 49, emotion="surprise"),
           g("v", 60, 69, emotion="other"), g("v", 80, 89, emotion="anger")]
    preds = [p("v", 0, 9, emotion="negative"), p("v", 20, 29, emotion="negative"),
             p("v", 40, 49, emotion="surprise"), p("v", 60, 69, emotion="negative")]
    a = strs(gts, preds)
    # spotting: 4 TP of 4 predictions and 5 intervals -> F1 8/9; 'other' is not analysed
    assert (a.n_tp, a.n_analysed) == (4, 3) and a.f1_spot == pytest.approx(8 / 9)
    # negative: P 1/2 R 1; positive: P 0 R 0; surprise: P 1 R 1 -> macro P 1/2, R 2/3
    assert a.precision == pytest.approx(0.5) and a.recall == pytest.approx(2 / 3)
    assert a.f1_analysis == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert a.strs == pytest.approx(a.f1_spot * a.f1_analysis)


# ----------------------------------------------------------------------------------------------------- outputs
def test_megc_log_and_str_csv():
    gts = [Interval("samm_lv", "006", "006_1", 100, 170, "micro"), Interval("samm_lv", "006", "006_1", 500, 560,
                                                                           "micro")]
    preds = [Spot("samm_lv", "006", "006_1", 105, 170, "micro", emotion="negative"),
             Spot("samm_lv", "006", "006_2", 10, 70, "micro", emotion="positive")]
    text = megc_log(score(gts, preds), "samm_lv")
    assert text.splitlines() == ["1", "006_1 100 170 105 170 TP", "006_1 500 560 - - FN", "006_2 - - 10 70 FP"]
    head, rows = parse_megc_log(text)
    assert head == "1" and rows[1] == ("006_1", (500, 560), None, "FN")
    assert str_csv(preds).splitlines() == ["subject,video,onset,offset,emotion", "006,006_1,105,170,negative",
                                           "006,006_2,10,70,positive"]
