"""Every public official annotation file in ../shared/real-annotations parses to its known counts
(docs/datasets.md), class protocols give the published totals, and malformed files fail with one clear error."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import openpyxl
import pytest

from _real import CASME2, CASME3, CASME3_MM, CASME_SQ, GT, REAL, SAMM, SAMM_LV, need
from microexp.data import casme2, casme3, casme_sq, classes, megc2019, samm, samm_lv
from microexp.data.records import ClipRecord
from microexp.data.registry import dataset_names
from microexp.errors import AnnotationError


def as_records(rows, dataset: str = "x") -> list[ClipRecord]:
    return [ClipRecord(dataset, r.subject, r.clip_id, r.emotion, (), (), meta=r.meta) for r in rows]


def test_every_real_annotation_file_is_covered():
    if not REAL.exists():
        pytest.skip("real annotations not available")
    files = sorted(p.relative_to(REAL).as_posix() for p in REAL.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(REAL).as_posix() for p in (CASME2, SAMM, SAMM_LV, GT, CASME3, CASME3_MM,
                                                                    CASME_SQ))


def test_all_datasets_registered():
    assert {"casme2", "samm", "samm_lv", "smic", "smic_vis", "smic_nir", "casme_sq", "casme", "casme3", "casme3_mm",
            "megc2019"} <= set(dataset_names())


def test_casme2_coding_file():
    rows = casme2.read_annotation(need(CASME2))
    assert len(rows) == 255
    per_subject = Counter(r.subject for r in rows)
    assert per_subject == {
        "sub01": 9, "sub02": 13, "sub03": 7, "sub04": 5, "sub05": 19, "sub06": 5, "sub07": 9, "sub08": 3, "sub09": 14,
        "sub10": 14, "sub11": 10, "sub12": 12, "sub13": 8, "sub14": 4, "sub15": 3, "sub16": 4, "sub17": 36,
        "sub18": 3, "sub19": 16, "sub20": 11, "sub21": 2, "sub22": 2, "sub23": 12, "sub24": 10, "sub25": 7,
        "sub26": 17}
    assert Counter(r.emotion for r in rows) == {"others": 99, "disgust": 63, "happiness": 32, "surprise": 28,
                                                "repression": 27, "sadness": 4, "fear": 2}
    assert Counter(r.meta["objective_class"] for r in rows) == {"3": 93, "7": 79, "1": 30, "2": 18, "5": 18, "4": 15,
                                                                "6": 2}
    assert sum(r.clip_id.endswith("f") for r in rows) == 72
    first = rows[0]
    assert (first.subject, first.clip_id, first.onset, first.apex, first.offset, first.aus) == \
        ("sub01", "EP02_01f", 46, 59, 86, "12")
    lengths = [r.offset - r.onset + 1 for r in rows]
    assert (min(lengths), max(lengths), min(r.onset for r in rows), max(r.offset for r in rows)) == (24, 141, 4, 446)
    # the one '/' apex is repaired to the middle frame and the repair recorded
    repaired = [r for r in rows if r.meta.get("repairs")]
    assert [(r.subject, r.clip_id, r.apex) for r in repaired] == [("sub04", "EP12_01f", (r.onset + r.offset) // 2)
                                                                  for r in repaired]
    assert "'/'" in repaired[0].meta["repairs"][0]
    recs = as_records(rows)
    assert classes.get("casme2-5").apply(recs).counts() == {"happiness": 32, "disgust": 63, "repression": 27,
                                                            "surprise": 28, "others": 99}
    assert len(classes.get("casme2-all").apply(recs)) == 255
    assert classes.get("casme2-4").apply(recs).counts() == {"positive": 32, "negative": 69, "surprise": 28,
                                                            "others": 126}


def test_samm_coding_file():
    rows = samm.read_annotation(need(SAMM))
    assert len(rows) == 159 and len({r.subject for r in rows}) == 29
    assert rows[0].source.endswith(":15")  # header on row 14 below the 13-row notes block
    assert Counter(r.emotion for r in rows) == {"anger": 57, "other": 26, "happiness": 26, "surprise": 15,
                                                "contempt": 12, "disgust": 9, "fear": 8, "sadness": 6}
    per_subject = Counter(r.subject for r in rows)
    assert per_subject["011"] == 20 and per_subject["026"] == 13 and {"008", "027", "029"}.isdisjoint(per_subject)
    assert Counter(r.meta["objective_class"] for r in rows) == {"7": 84, "1": 24, "3": 20, "2": 13, "4": 8, "6": 7,
                                                                "5": 3}
    by_clip = {r.clip_id: r for r in rows}
    assert by_clip["033_1_4"].aus == "12+15"  # trailing space stripped
    assert (by_clip["006_1_2"].onset, by_clip["006_1_2"].apex) == (5562, 5588)
    for clip, onset, offset in (("028_4_1", 1071, 1134), ("032_3_1", 4896, 4970)):
        r = by_clip[clip]
        assert r.apex == (onset + offset) // 2 and "outside onset..offset" in r.meta["repairs"][0]
    recs = as_records(rows)
    assert len(classes.get("samm-5").apply(recs)) == 136
    assert classes.get("samm-7").apply(recs).counts() == {"happiness": 26, "surprise": 15, "anger": 57, "fear": 8,
                                                          "disgust": 9, "contempt": 12, "sadness": 6}
    assert classes.get("samm-binary").apply(recs).counts() == {"positive": 26, "negative": 92}
    three = classes.get("samm-3").apply(recs)
    assert three.counts() == {"negative": 92, "positive": 26, "surprise": 15} and len(set(three.subjects)) == 28


def test_samm_long_videos_csv():
    rows = samm_lv.read_annotation(need(SAMM_LV))
    assert len(rows) == 502
    assert Counter(r.emotion for r in rows) == {"macro": 343, "micro": 159}
    assert len({r.meta["video"] for r in rows}) == 147 and len({r.subject for r in rows}) == 30
    assert sum(r.meta.get("apex_annotated") is False for r in rows) == 6
    assert all(r.span for r in rows)
    by_clip = {r.clip_id: r for r in rows}
    assert (by_clip["006_1_2"].onset, by_clip["006_1_2"].folder) == (3562, Path("006_1"))  # LV numbering
    # the release lists 037_4_1 twice (micro and macro): the second gets a unique id, recorded
    assert by_clip["037_4_1@1487"].meta["repairs"] and by_clip["037_4_1"].emotion == "micro"


def test_casme_sq_csv_export():
    ann = casme_sq.read_annotation(need(CASME_SQ))
    rows = ann.rows
    assert len(rows) == 357 and len({r.subject for r in rows}) == 22
    assert Counter(r.meta["type"] for r in rows) == {"macro": 300, "micro": 57}
    micro = [r for r in rows if r.meta["type"] == "micro"]
    assert len({r.subject for r in micro}) == 14
    assert Counter(r.emotion for r in micro) == {"negative": 21, "others": 19, "surprise": 9, "positive": 8}
    no_offset = [r for r in rows if r.offset is None]
    assert len(no_offset) == 44 and all(r.meta["type"] == "macro" and r.meta["repairs"] for r in no_offset)
    first = rows[0]
    assert (first.subject, first.clip_id, first.onset, first.meta["rawpic_folder"]) == \
        ("s15", "anger1_1", 557, "s15/15_0401girlcrashing")
    assert {r.meta["participant"]: r.subject for r in rows} == {p: f"s{s}" for p, s in
                                                                casme_sq.PARTICIPANT_SUBJECT.items()}
    assert not any(r.aus.lower() == "null" for r in rows)
    recs = as_records(rows)
    assert len(classes.get("casme_sq-4").apply(recs)) == 357
    assert classes.get("casme_sq-micro-4").apply(recs).counts() == {"positive": 8, "negative": 21, "surprise": 9,
                                                                    "others": 19}
    assert classes.get("casme_sq-seed").apply(recs).counts() == {"angry": 102, "happy": 167, "disgust": 88}
    reddy = classes.get("casme_sq-reddy").apply(recs)  # stimulus agrees with the estimated emotion, offset coded
    assert reddy.counts() == {"angry": 67, "happy": 99, "disgust": 42}
    reasons = [x.reason for x in reddy.excluded]
    assert reasons.count("offset_coded 'no' not used by casme_sq-reddy") == 44
    assert "stimulus_emotion 'happy/surprise' not used by class protocol casme_sq-reddy" in reasons


def test_casme3_label_file():
    rows = casme3.read_annotation(need(CASME3))
    assert len(rows) == 860 and len({r.subject for r in rows}) == 94
    assert Counter(r.emotion for r in rows) == {"disgust": 250, "surprise": 187, "others": 161, "fear": 86,
                                                "anger": 64, "sad": 57, "happy": 55}
    assert Counter(r.meta["objective_class"] for r in rows) == {"VII": 373, "III": 234, "II": 151, "V": 47, "IV": 37,
                                                                "I": 15, "VI": 3}
    assert sum(r.meta["video"] == "J" for r in rows) == 1
    assert (rows[0].subject, rows[0].clip_id, rows[0].onset, rows[0].apex, rows[0].offset) == \
        ("spNO.1", "a_355", 355, 359, 360)
    assert sum(r.subject == "spNO.1" and r.meta["video"] == "e" for r in rows) == 2  # repeated video
    # known errors of v2: onset after offset (left out, with reason), offset 0 (clip ends at apex)
    assert [(r.subject, r.clip_id) for r in rows if r.invalid] == [("spNO.216", "d_3647")]
    assert sum("offset 0" in " ".join(r.meta.get("repairs", [])) for r in rows) == 2
    recs = as_records(rows)
    assert classes.get("casme3-4").apply(recs).counts() == {"negative": 457, "positive": 55, "surprise": 187,
                                                            "others": 161}
    assert len(classes.get("casme3-3").apply(recs)) == 699
    assert len(classes.get("casme3-7").apply(recs)) == 860


def test_casme3_macro_micro_xls():
    rows = casme3.read_macro_micro(need(CASME3_MM))
    assert len(rows) == 4206 and len({r.subject for r in rows}) == 98
    assert Counter(r.emotion for r in rows) == {"macro": 3346, "micro": 860}


def test_megc2019_ground_truth():
    gt = megc2019.read_gt(need(GT))
    assert len(gt) == 442 and len({(g.dataset, g.subject) for g in gt}) == 68
    assert Counter(g.label for g in gt) == {"negative": 250, "positive": 109, "surprise": 83}
    expected = {"casme2": (145, 24, (88, 32, 25)), "smic": (164, 16, (70, 51, 43)), "samm": (133, 28, (92, 26, 15))}
    for ds, (n, subjects, (neg, pos, sur)) in expected.items():
        part = [g for g in gt if g.dataset == ds]
        assert len(part) == n and len({g.subject for g in part}) == subjects
        assert Counter(g.label for g in part) == {"negative": neg, "positive": pos, "surprise": sur}
    # GT spellings reconciled with the folders
    smic_first = next(g for g in gt if g.dataset == "smic")
    assert (smic_first.gt_subject, smic_first.gt_clip, smic_first.subject, smic_first.clip) == \
        ("s01", "s01_ne_01", "s1", "s1_ne_01")
    samm_first = next(g for g in gt if g.dataset == "samm")
    assert (samm_first.gt_subject, samm_first.subject, samm_first.clip) == ("6", "006", "006_1_2")
    assert Counter(g.subject for g in gt if g.dataset == "smic") == {
        "s1": 6, "s2": 6, "s3": 39, "s4": 19, "s5": 2, "s6": 4, "s8": 13, "s9": 4, "s11": 7, "s12": 9, "s13": 10,
        "s14": 10, "s15": 4, "s18": 7, "s19": 2, "s20": 22}
    assert "sub10" not in {g.subject for g in gt if g.dataset == "casme2"}
    assert GT.read_bytes().count(b"\r\n") == 442


def test_megc2019_derived_from_coding_files_equals_ground_truth():
    gt = megc2019.read_gt(need(GT))
    derived, left = megc2019.derive_rows(casme2.read_annotation(need(CASME2)), samm.read_annotation(need(SAMM)))
    assert {(g.dataset, g.subject, g.clip, g.label) for g in derived} == \
        {(g.dataset, g.subject, g.clip, g.label) for g in gt if g.dataset != "smic"}
    assert len(left) == 255 + 159 - 278
    assert {e.clip for e in left if "organisers" in e.reason or "MEGC2019 GT" in e.reason
            or "apex" in e.reason} == {f"casme2/{s}/{c}" for s, c in megc2019.CASME2_LEFT_OUT}


# ------------------------------------------------------------------------------------------ malformed files

def _casme2_sheet(path: Path, header: list, rows: list[list]) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append(header)
    for r in rows:
        ws.append(r)
    wb.save(path)
    return path


HEADER = ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None, "Action Units",
          "Estimated Emotion"]
GOOD = [["01", "EP02_01f", None, 46, 59, 86, None, 12, "happiness"],
        ["01", "EP03_02", None, 131, 139, 161, None, "4+7", "others"]]


@pytest.mark.parametrize(("case", "row", "column", "words"), [
    ("missing column", 1, "ApexFrame", "lacks column"),
    ("bad header row", 1, "Subject", "no header row"),
    ("non-numeric onset", 3, "OnsetFrame", "not a frame number"),
    ("duplicate clip", 4, "Filename", "duplicate clip sub01/EP02_01f"),
])
def test_malformed_casme2_file_names_file_row_column(tmp_path, case, row, column, words):
    header, rows = list(HEADER), [list(r) for r in GOOD]
    if case == "missing column":
        header[4] = "ApexFrm"
    elif case == "bad header row":
        header = ["sub", "file", None, "on", "ap", "off", None, "au", "emo"]
    elif case == "non-numeric onset":
        rows[1][3] = "13l"
    else:
        rows.append(list(GOOD[0]))
    path = _casme2_sheet(tmp_path / "CASME2-coding-bad.xlsx", header, rows)
    with pytest.raises(AnnotationError) as info:
        casme2.read_annotation(path)
    err = info.value
    assert (err.file, err.row, err.column) == (path, row, column)
    msg = str(err)
    assert str(path) in msg and f"row {row}" in msg and repr(column) in msg and words in msg


def test_a_sheet_with_a_header_and_no_rows_is_an_error_naming_the_header_row(tmp_path):
    path = _casme2_sheet(tmp_path / "CASME2-coding-empty.xlsx", list(HEADER), [])
    with pytest.raises(AnnotationError, match=r"row 1.*no data rows below the header") as info:
        casme2.read_annotation(path)
    assert info.value.file == path


def test_malformed_files_of_other_formats(tmp_path):
    # SAMM: notes block then a header missing 'Onset Frame'
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "MICRO_ONLY"
    ws.append(["SAMM Dataset - Master FACS Codes"])
    ws.append(["Subject", "Filename", "Onst", "Apex Frame", "Offset Frame", "Estimated Emotion"])
    ws.append(["006", "006_1_2", 5562, 5588, 5632, "Anger"])
    wb.save(tmp_path / "samm.xlsx")
    with pytest.raises(AnnotationError, match=r"row 2, column 'Onset Frame'.*lacks column"):
        samm.read_annotation(tmp_path / "samm.xlsx")
    # CAS(ME)^2 has no header: a header row is named as such
    (tmp_path / "c2.csv").write_text("participant,expression,onset,apex,offset,aus,emotion,type,self\n"
                                     "1,anger1_1,557,572,608,4,negative,macro-expression,anger\n")
    with pytest.raises(AnnotationError, match=r"row 1, column '1 \(participant\)'.*header row"):
        casme_sq.read_annotation(tmp_path / "c2.csv")
    (tmp_path / "c2b.csv").write_text("1,anger1_1,557,572,608,4,negative,macro-expression,anger\n"
                                      "1,anger1_2,x,572,608,4,negative,macro-expression,anger\n")
    with pytest.raises(AnnotationError, match=r"c2b.csv, row 2, column '3 \(onset\)'"):
        casme_sq.read_annotation(tmp_path / "c2b.csv")
    # CAS(ME)^3: the same video and onset twice
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "label"
    ws.append(["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"])
    ws.append(["spNO.1", "a", "355", "359", "360", "5", "II", "others"])
    ws.append(["spNO.1", "a", "355", "358", "362", "5", "II", "others"])
    wb.save(tmp_path / "c3.xlsx")
    with pytest.raises(AnnotationError, match=r"row 3, column 'Onset'.*duplicate clip spNO.1/a_355"):
        casme3.read_annotation(tmp_path / "c3.xlsx")
    # MEGC GT: a label outside 0..2
    (tmp_path / "gt.csv").write_bytes(b"casme2,sub01,EP02_01f,1\r\nsmic,s01,s01_ne_01,5\r\n")
    with pytest.raises(AnnotationError, match=r"row 2, column 'label'"):
        megc2019.read_gt(tmp_path / "gt.csv")


def test_casme2_csv_export_with_int_subjects(tmp_path):
    """The CSV export's header (blank-named and trailing empty columns) and int subjects of other copies."""
    path = tmp_path / "CASME2-coding-20190701.csv"
    path.write_text("Subject,Filename,,OnsetFrame,ApexFrame,OffsetFrame,,Action Units,Estimated Emotion,,,,\n"
                    "1,EP02_01f,,46,59,86,,12,happiness,,,,\n"
                    "4,EP12_01f,,250,/,332,,4+7,disgust,,,,\n"
                    ",,,,,,,,,,,,\n")
    rows = casme2.read_annotation(path)
    assert [(r.subject, r.clip_id, r.onset, r.apex, r.offset) for r in rows] == \
        [("sub01", "EP02_01f", 46, 59, 86), ("sub04", "EP12_01f", 250, 291, 332)]
    assert rows[1].meta["apex_annotated"] is False
