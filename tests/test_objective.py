"""Objective classes (Davison et al. 2018) from AU codes: the rule, the class protocols, the real coding files'
own objective-class columns checked against the rule, and `data list` / `data check` showing them."""

from __future__ import annotations

from collections import Counter

import pytest

from _real import CASME2, SAMM, need
from microexp.cli import main
from microexp.data import casme2, classes, samm
from microexp.data.objective import CLASSES, column_class, disagreements, objective_class, record_class
from microexp.data.records import ClipRecord


def as_records(rows, dataset):
    return [ClipRecord(dataset, r.subject, r.clip_id, r.emotion, (), (), aus=r.aus, meta=r.meta) for r in rows]


@pytest.mark.parametrize(("numbers", "expected"), [
    ({12}, "I"), ({6, 7, 12}, "I"), ({1, 2}, "II"), ({25, 26}, "II"), ({4}, "III"), ({23}, "III"), ({4, 38}, "III"),
    ({9}, "IV"), ({4, 7, 10}, "IV"), ({1}, "V"), ({15, 17}, "V"), ({1, 2, 4}, "VI"), ({20}, "VI"),
    ({14}, "VII"), ({4, 7, 43}, "VII"), (set(), "VII")])
def test_rule(numbers, expected):
    assert objective_class(numbers) == expected


def test_rule_reads_certain_codes_only():
    rec = ClipRecord("x", "s", "c", "happiness", (), (), aus="(R6 or R12)+R15")
    assert record_class(rec) == "V"  # only R15 is certain
    assert column_class(ClipRecord("x", "s", "c", "e", (), (), meta={"objective_class": "3"})) == "III"
    assert column_class(ClipRecord("x", "s", "c", "e", (), (), meta={"objective_class": "II"})) == "II"


def test_casme2_objective_classes():
    recs = as_records(casme2.read_annotation(need(CASME2)), "casme2")
    # the coding file's own column (datasets.md §1.3) and the rule
    assert Counter(column_class(r) for r in recs) == {"I": 30, "II": 18, "III": 93, "IV": 15, "V": 18, "VI": 2,
                                                      "VII": 79}
    assert Counter(record_class(r) for r in recs) == {"I": 30, "II": 18, "III": 93, "IV": 13, "V": 18, "VI": 2,
                                                      "VII": 81}
    # the column follows the rule on 253 of 255 clips; the two others code AU10 with AU4 (+AU7+AU9) as class IV
    assert disagreements(recs) == [("casme2/sub03/EP07_04", "IV", "VII", "4+L10"),
                                   ("casme2/sub11/EP13_02f", "IV", "VII", "4+7+9+10")]
    five = classes.get("casme2-objective").apply(recs)
    assert five.classes == CLASSES[:5] and len(five) == 172
    assert five.counts() == {"I": 30, "II": 18, "III": 93, "IV": 13, "V": 18}
    assert sum("objective class 'VII' not used" in e.reason for e in five.excluded) == 81
    assert len(classes.get("casme2-objective-7").apply(recs)) == 255


def test_samm_objective_classes():
    recs = as_records(samm.read_annotation(need(SAMM)), "samm")
    assert Counter(column_class(r) for r in recs) == {"I": 24, "II": 13, "III": 20, "IV": 8, "V": 3, "VI": 7,
                                                      "VII": 84}
    assert Counter(record_class(r) for r in recs) == {"I": 18, "II": 13, "III": 18, "IV": 6, "V": 5, "VI": 4,
                                                      "VII": 95}
    found = disagreements(recs)
    # SAMM's coders also classed clips whose AUs add eye, head or mouth-opening codes to a listed combination
    assert len(found) == 15
    assert Counter((col, rule) for _, col, rule, _ in found) == {
        ("I", "VII"): 6, ("VI", "VII"): 3, ("IV", "VII"): 2, ("III", "VII"): 2, ("VII", "V"): 2}
    assert ("samm/026/026_2_3", "III", "VII", "4B+7B+43E") in found
    assert classes.get("samm-objective").apply(recs).counts() == {"I": 18, "II": 13, "III": 18, "IV": 6, "V": 5}


def test_data_list_shows_objective_protocols(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("casme2-objective ", "casme2-objective-7", "samm-objective ", "samm-objective-7"):
        assert name in out


@pytest.mark.slow
def test_data_check_names_unreadable_au_pieces_and_objective_disagreements(tmp_path):
    from microexp.data.check import check_dataset
    from microexp.synth.fixtures import build_fixture, placeholder_renderer

    fx = build_fixture("samm", tmp_path / "samm", annotation=need(SAMM), render=placeholder_renderer, size=8)
    report = check_dataset("samm", fx.root, read_images=False)
    au_notes = [n for n in report.notes if n.startswith("AU code not understood")]
    assert len(au_notes) == 1 and "'soft focus'" in au_notes[0] and "SAMM_Micro_FACS_Codes_v2.xlsx:" in au_notes[0]
    objective = [n for n in report.notes if n.startswith("objective class")]
    assert len(objective) == 15
    assert any("samm/026/026_2_3" in n and "III in the annotation, VII by the AU rule" in n for n in objective)
    assert "soft focus" in report.text(limit=500)
