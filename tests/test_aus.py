"""The one AU parser (microexp.data.aus): every release's notation, and the per-AU counts of every real coding
file in ../shared/real-annotations reproduced through the loaders (which parse each row's AU cell into
``ClipRecord.au_codes``). Unreadable pieces are named with file and row."""

from __future__ import annotations

from collections import Counter

import pytest

from _real import CASME2, CASME3, CASME3_MM, CASME_SQ, SAMM, SAMM_LV, need
from microexp.data import casme2, casme3, casme_sq, samm, samm_lv
from microexp.data.aus import AUCode, au_numbers, format_codes, parse_aus_cell
from microexp.data.records import ClipRecord


@pytest.mark.parametrize(("cell", "codes", "unparsed"), [
    (12, [AUCode(12)], []),
    (12.0, [AUCode(12)], []),
    ("4+7+L10", [AUCode(4), AUCode(7), AUCode(10, "L")], []),
    ("AU4+AU7", [AUCode(4), AUCode(7)], []),
    ("1A+2B+L14C", [AUCode(1, "", "A"), AUCode(2, "", "B"), AUCode(14, "L", "C")], []),
    ("A1B+A2C", [AUCode(1, "A", "B"), AUCode(2, "A", "C")], []),
    ("T18+39", [AUCode(18, "T"), AUCode(39)], []),
    ("10A/B", [AUCode(10, "", "A/B")], []),
    ("4(B/C)+7B", [AUCode(4, "", "B/C"), AUCode(7, "", "B")], []),
    ("(R6 or R12)+R15", [AUCode(6, "R", "", "or"), AUCode(12, "R", "", "or"), AUCode(15, "R")], []),
    ("14or23", [AUCode(14, "", "", "or"), AUCode(23, "", "", "or")], []),
    ("4B+12(B/C)+17B+(23/24) ", [AUCode(4, "", "B"), AUCode(12, "", "B/C"), AUCode(17, "", "B"),
                                 AUCode(23, "", "", "or"), AUCode(24, "", "", "or")], []),
    ("A/L12", [AUCode(12, "A/L", "", "or")], []),
    ("A(4B/C)+5B", [AUCode(4, "A", "B/C"), AUCode(5, "", "B")], []),
    ("A4C+R(12or14)B+38", [AUCode(4, "A", "C"), AUCode(12, "R", "B", "or"), AUCode(14, "R", "B", "or"),
                           AUCode(38)], []),
    ("7B+ ref(43)", [AUCode(7, "", "B"), AUCode(43, "", "", "ref")], []),
    ("12B ?", [AUCode(12, "", "B", "?")], []),
    ("4,24,6+12+15", [AUCode(4), AUCode(24), AUCode(6), AUCode(12), AUCode(15)], []),
    ("R4\uff0c5", [AUCode(4, "R"), AUCode(5)], []),  # CAS(ME)^3 Part C's full-width comma
    ("AU4(k)+L7", [AUCode(4, "", "", "static"), AUCode(7, "L")], []),  # 4DME static AU
    ("NULL", [], []), ("null", [], []), ("", [], []), (None, [], []), (float("nan"), [], []),
    ("R14+17+soft focus", [AUCode(14, "R"), AUCode(17)], ["soft focus"]),
    ("Chewing", [], ["Chewing"]),
    ("7A/B+L10A/B)+ref(11)+12C", [], ["7A/B+L10A/B)+ref(11)+12C"]),  # unbalanced: the whole cell is named
])
def test_notation(cell, codes, unparsed):
    parsed = parse_aus_cell(cell)
    assert list(parsed.codes) == codes
    assert list(parsed.unparsed) == unparsed


def test_certain_numbers_and_canonical_text():
    parsed = parse_aus_cell("(R6 or R12)+R15+ref(7B)+12B ?")
    assert au_numbers(parsed.codes) == {15, 12}
    assert au_numbers(parsed.codes, certain_only=False) == {6, 7, 12, 15}
    assert format_codes(parse_aus_cell("A1B+L2B+ref(5)+4(B/C)").codes) == "A1B+L2B+ref(5)+4(B/C)"


def test_clip_record_parses_its_cell():
    rec = ClipRecord("x", "s1", "c1", "happiness", (), (), aus="L12+glare")
    assert rec.au_codes == (AUCode(12, "L"),) and rec.au_unparsed == ("glare",)
    assert ClipRecord("x", "s1", "c1", "happiness", (), ()).au_codes == ()


def _counts(rows, certain_only=False):
    records = [ClipRecord("x", r.subject, r.clip_id, r.emotion, (), (), aus=r.aus, source=r.source) for r in rows]
    counts = Counter(n for r in records for n in au_numbers(r.au_codes, certain_only))
    unparsed = [(r.source.rsplit(":", 1)[1], u) for r in records for u in r.au_unparsed]
    return counts, unparsed


# The expected per-AU clip counts below were computed once, independently of the parser: each file's AU column
# read raw with pandas (read_excel / read_csv, the header rows skipped by hand), every run of digits in a cell taken
# as an AU number (re.findall(r"\d+")) after deleting the pieces listed as unparsed, one count per clip and AU.
# "certain" drops the alternatives of an "or" and SAMM's ref(...) codes; each difference was checked by reading
# those cells (SAMM AU12: "(R6 or R12)+R15" twice, "L12 or L14", "R12 or R14", "A/L12"; CAS(ME)^2: "10or11" twice,
# "14or23").

def test_casme2_au_counts():
    counts, unparsed = _counts(casme2.read_annotation(need(CASME2)))
    assert counts == {1: 28, 2: 25, 4: 125, 5: 5, 6: 10, 7: 38, 9: 9, 10: 18, 12: 39, 14: 22, 15: 17, 16: 5, 17: 26,
                      18: 1, 20: 2, 24: 6, 25: 2, 26: 1, 38: 2}
    assert unparsed == []


def test_samm_au_counts():
    rows = samm.read_annotation(need(SAMM))
    counts, unparsed = _counts(rows)
    assert counts == {1: 6, 2: 18, 4: 23, 5: 10, 6: 5, 7: 46, 8: 1, 9: 5, 10: 6, 12: 30, 13: 3, 14: 13, 15: 4, 17: 7,
                      18: 4, 20: 7, 21: 1, 23: 1, 24: 10, 25: 7, 26: 6, 31: 2, 38: 2, 39: 5, 43: 8, 56: 1, 61: 1}
    certain, _ = _counts(rows, certain_only=True)
    assert {k: counts[k] - certain[k] for k in counts if counts[k] != certain[k]} == {
        5: 1, 6: 3, 7: 2, 10: 2, 12: 5, 14: 3, 17: 1, 24: 2, 43: 2}
    assert [u for _, u in unparsed] == ["soft focus"]
    assert all(line.isdigit() and int(line) >= 15 for line, _ in unparsed)  # named by the file's own row number


def test_casme3_au_counts():
    counts, unparsed = _counts(casme3.read_annotation(need(CASME3)))
    assert counts == {1: 153, 2: 128, 4: 274, 5: 44, 6: 8, 7: 27, 9: 50, 10: 10, 12: 15, 14: 193, 15: 6, 16: 13,
                      17: 20, 18: 16, 20: 3, 21: 1, 22: 3, 23: 3, 24: 59, 25: 10, 26: 3, 28: 6, 38: 30, 39: 2}
    assert unparsed == []


@pytest.mark.slow
def test_casme3_macro_micro_au_counts():
    counts, unparsed = _counts(casme3.read_macro_micro(need(CASME3_MM)))
    assert counts == {1: 558, 2: 495, 4: 1095, 5: 115, 6: 79, 7: 165, 9: 113, 10: 130, 11: 2, 12: 377, 14: 1811,
                      15: 68, 16: 64, 17: 147, 18: 64, 20: 24, 21: 3, 22: 12, 23: 59, 24: 403, 25: 40, 26: 15, 27: 1,
                      28: 183, 29: 1, 38: 222, 39: 4, 43: 6}
    assert unparsed == []


def test_casme_sq_au_counts():
    rows = casme_sq.read_annotation(need(CASME_SQ)).rows
    counts, unparsed = _counts(rows)
    assert counts == {1: 29, 2: 31, 4: 120, 5: 11, 6: 63, 7: 37, 9: 5, 10: 7, 11: 3, 12: 120, 14: 46, 15: 33, 16: 2,
                      17: 9, 18: 6, 20: 1, 21: 4, 23: 2, 24: 45, 25: 15, 26: 2, 28: 1, 30: 1, 34: 2, 38: 17, 39: 6,
                      43: 3, 45: 14, 74: 2, 80: 4}
    certain, _ = _counts(rows, certain_only=True)
    assert {k: counts[k] - certain[k] for k in counts if counts[k] != certain[k]} == {10: 2, 11: 2, 14: 1, 23: 1}
    assert unparsed == []


def test_samm_lv_au_counts():
    counts, unparsed = _counts(samm_lv.read_annotation(need(SAMM_LV)))
    assert counts == {
        1: 29, 2: 58, 3: 1, 4: 77, 5: 40, 6: 40, 7: 122, 8: 6, 9: 10, 10: 36, 11: 4, 12: 128, 13: 6, 14: 70, 15: 18,
        16: 1, 17: 32, 18: 14, 19: 5, 20: 16, 21: 1, 23: 13, 24: 62, 25: 41, 26: 36, 27: 1, 30: 5, 31: 12, 33: 1,
        37: 1, 38: 12, 39: 10, 43: 17, 50: 1, 51: 2, 52: 1, 53: 1, 54: 5, 55: 2, 56: 4, 58: 2, 61: 8, 62: 7, 63: 1,
        64: 7, 80: 3, 81: 2, 85: 2}
    assert sorted(u for _, u in unparsed) == sorted([
        "glare", "glare", "all of the above", "subject do 2x  R2(C and then B)", "80 (big swallow)", "glare",
        "9A ref (L12 or L10)", "ADR30", "7A/B+L10A/B)+ref(11)+12C", "Chewing", "ref(7)12E", "reaction", "loses AU4",
        "loses 1", "twice - L1B", "double 45", "double 45", "soft focus"])
