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
    # the default protocols take the coders' column (as MEGC 2018 did); -rule the AU rule
    five = classes.get("casme2-objective").apply(recs)
    assert five.classes == CLASSES[:5] and len(five) == 174
    assert five.counts() == {"I": 30, "II": 18, "III": 93, "IV": 15, "V": 18}
    assert sum("objective class 'VII' not used" in e.reason for e in five.excluded) == 79
    assert len(classes.get("casme2-objective-7").apply(recs)) == 255
    rule = classes.get("casme2-objective-rule").apply(recs)
    assert rule.classes == CLASSES[:5] and len(rule) == 172
    assert rule.counts() == {"I": 30, "II": 18, "III": 93, "IV": 13, "V": 18}
    assert sum("objective class 'VII' not used" in e.reason for e in rule.excluded) == 81
    assert classes.get("casme2-objective-rule-7").apply(recs).counts() == {
        "I": 30, "II": 18, "III": 93, "IV": 13, "V": 18, "VI": 2, "VII": 81}


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
    assert classes.get("samm-objective").apply(recs).counts() == {"I": 24, "II": 13, "III": 20, "IV": 8, "V": 3}
    assert classes.get("samm-objective-7").apply(recs).counts() == {"I": 24, "II": 13, "III": 20, "IV": 8, "V": 3,
                                                                    "VI": 7, "VII": 84}
    assert classes.get("samm-objective-rule").apply(recs).counts() == {"I": 18, "II": 13, "III": 18, "IV": 6, "V": 5}


def test_a_clip_without_the_coders_class_is_excluded_by_name_from_the_default_protocol():
    coded = ClipRecord("samm", "006", "006_1_2", "Anger", (), (), aus="4+7", meta={"objective_class": "3"})
    uncoded = ClipRecord("samm", "006", "006_1_3", "Anger", (), (), aus="4+7")
    got = classes.get("samm-objective").apply([coded, uncoded])
    assert got.counts() == {"I": 0, "II": 0, "III": 1, "IV": 0, "V": 0}
    assert [(e.clip, e.reason) for e in got.excluded] == [
        ("samm/006/006_1_3", "objective class 'not coded' not used by class protocol samm-objective")]
    assert classes.get("samm-objective-rule").apply([coded, uncoded]).counts()["III"] == 2


def test_data_list_shows_objective_protocols(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("casme2-objective ", "casme2-objective-7 ", "samm-objective ", "samm-objective-7 ",
                 "casme2-objective-rule ", "casme2-objective-rule-7 ", "samm-objective-rule ", "samm-objective-rule-7 ",
                 "megc2018-objective ", "megc2018-objective-rule "):
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
    assert any("samm/026/026_2_3" in n and "III in the annotation, VII by the AU rule" in n
               and n.endswith("samm-objective uses the annotation's class, samm-objective-rule the rule's)")
               for n in objective)
    assert "soft focus" in report.text(limit=500)


# Table 9 of Merghani, Davison and Yap's review (arXiv:1805.02397), "Each class represents AUs that can be linked to
# emotion", as printed (its "A23" is AU23): the rule table must be this table, entry by entry.
TABLE_9 = {
    "I": "AU6, AU12, AU6+AU12, AU6+AU7+AU12, AU7+AU12",
    "II": "AU1+AU2, AU5, AU25, AU1+AU2+AU25, AU25+AU26, AU5+AU24",
    "III": "A23, AU4, AU4+AU7, AU4+AU5, AU4+AU5+AU7, AU17+AU24, AU4+AU6+AU7, AU4+AU38",
    "IV": "AU10, AU9, AU4+AU9, AU4+AU40, AU4+AU5+AU40, AU4+AU7+AU9, AU4 +AU9+AU17, AU4+AU7+AU10, AU4+AU5+AU7+AU9, "
          "AU7+AU10",
    "V": "AU1, AU15, AU1+AU4, AU6+AU15, AU15+AU17",
    "VI": "AU1+AU2+AU4, AU20",
}


def test_rule_table_is_the_published_table_entry_by_entry():
    from microexp.data.objective import RULES

    def combos(cell):
        return tuple(frozenset(int(p.strip().lstrip("AU")) for p in c.split("+")) for c in cell.split(","))

    assert RULES == {cls: combos(cell) for cls, cell in TABLE_9.items()}


# Published clip counts. The MEGC 2018 summary's own count table and the Journal of Imaging paper's could not be read
# here (only the openings of their pages are stored); a later paper reports them in its text: Guo et al., "Extended
# local binary patterns for efficient and robust spontaneous facial micro-expression recognition", IEEE Access 7
# (2019), arXiv:1907.09160, §IV-A (SAMM's seven objective classes) and §IV-D(2) (the MEGC 2018 composite in classes
# I-V: 253 clips, 185 from CASME II and 68 from SAMM, 47 subjects).
PUBLISHED_SAMM = {"I": 24, "II": 13, "III": 20, "IV": 8, "V": 3, "VI": 7, "VII": 84}
PUBLISHED_COMPOSITE = {"casme2": 185, "samm": 68, "clips": 253, "subjects": 47}


def test_counts_beside_the_published_ones():
    """docs/action-units.md, 'Published counts': the default protocols (the coders' columns) reproduce every
    published SAMM count; CASME II's 185 comes from another coding of the release than the file we hold."""
    cas = as_records(casme2.read_annotation(need(CASME2)), "casme2")
    sam = as_records(samm.read_annotation(need(SAMM)), "samm")

    def kept(protocol, recs):  # (clips, subjects)
        got = classes.get(protocol).apply(recs)
        return len(got), len({r.subject for r in got.records})

    # SAMM: the default protocol reproduces the published counts class for class, and the composite's 68 clips
    assert classes.get("samm-objective-7").apply(sam).counts() == PUBLISHED_SAMM
    assert kept("samm-objective", sam) == (PUBLISHED_COMPOSITE["samm"], 21)
    # the rule differs from the published SAMM classes on exactly the 15 clips data check names
    rule = classes.get("samm-objective-rule-7").apply(sam).counts()
    assert {c: rule[c] - PUBLISHED_SAMM[c] for c in CLASSES} == {"I": -6, "II": 0, "III": -2, "IV": -2, "V": 2,
                                                                 "VI": -3, "VII": 11}
    assert [k.split("/")[-1] for k, *_ in disagreements(sam)] == [  # docs/action-units.md names their causes
        "006_5_10", "007_6_1", "007_6_5", "011_2_1", "011_3_4", "011_4_2", "012_3_1", "012_3_2", "014_3_4",
        "014_6_3", "020_4_2", "026_2_2", "026_2_3", "033_1_3", "036_7_3"]
    assert kept("samm-objective-rule", sam) == (60, 19)
    # the composite's 47 subjects: CASME II's 26 and the 21 SAMM subjects of the default protocol
    assert kept("casme2-objective", cas)[1] + 21 == PUBLISHED_COMPOSITE["subjects"]
    # CASME II: 185 published, 174 here (11 clips fewer; the file's column, 20190701 copy), 172 by the rule
    assert kept("casme2-objective", cas) == (174, 26) and kept("casme2-objective-rule", cas) == (172, 26)
    assert PUBLISHED_COMPOSITE["casme2"] - kept("casme2-objective", cas)[0] == 11
    assert PUBLISHED_COMPOSITE["casme2"] + PUBLISHED_COMPOSITE["samm"] == PUBLISHED_COMPOSITE["clips"]


def write_objective_file(path, rows):
    import openpyxl

    wb = openpyxl.Workbook()
    wb.active.title = "Sheet1"
    wb.active.append(["Subject", "Filename", "Objective Class"])
    for row in rows:
        wb.active.append(list(row))
    wb.save(path)


def test_the_releases_objective_class_file_gives_casme2_its_classes(tmp_path):
    """CASME2-ObjectiveClasses.xlsx (the release's file of the classes MEGC 2018 used) replaces the coding file's
    own column for the default protocols; the rule's protocols do not read it; a clip it leaves out is excluded by
    name, and data check says where the classes come from."""
    from microexp.data.aus import au_numbers, parse_aus_cell
    from microexp.data.check import check_dataset
    from microexp.data.registry import load_dataset
    from microexp.errors import AnnotationError
    from microexp.synth.fixtures import build_fixture, placeholder_renderer

    fx = build_fixture("casme2", tmp_path / "c2", render=placeholder_renderer, size=8)
    rows = fx.rows
    rule = Counter(objective_class(au_numbers(parse_aus_cell(r.aus).codes)) for r in rows)
    # the coding file's column (the rule's class, generated) before the file is there
    assert load_dataset("casme2", fx.root, classes="casme2-objective-7").counts() == {c: rule[c] for c in CLASSES}
    # the file lists every clip but the first, in classes 1..7 in turn (not the rule's)
    listed = [(r.subject[3:], r.clip_id, i % 7 + 1) for i, r in enumerate(rows[1:])]
    write_objective_file(fx.annotation.parent / "CASME2-ObjectiveClasses.xlsx", listed)
    got = load_dataset("casme2", fx.root, classes="casme2-objective-7")
    assert got.counts() == Counter(CLASSES[i % 7] for i in range(len(rows) - 1))
    first = f"casme2/{rows[0].subject}/{rows[0].clip_id}"
    assert [e.reason for e in got.excluded if e.clip == first] == [
        "objective class 'not coded' not used by class protocol casme2-objective-7"]
    assert load_dataset("casme2", fx.root, classes="casme2-objective-rule-7").counts() == {c: rule[c] for c in CLASSES}
    report = check_dataset("casme2", fx.root, read_images=False)
    assert (f"objective classes from CASME2-ObjectiveClasses.xlsx (in place of the coding file's own column): "
            f"{len(rows) - 1} of {len(rows)} clips listed") in report.notes
    write_objective_file(fx.annotation.parent / "CASME2-ObjectiveClasses.xlsx", [*listed, ("01", "EP02_01f", 9)])
    with pytest.raises(AnnotationError, match=r"CASME2-ObjectiveClasses.xlsx.*row 11.*objective class 1-7"):
        load_dataset("casme2", fx.root, classes="casme2-objective")
