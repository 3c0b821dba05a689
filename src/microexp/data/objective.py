"""Objective classes: micro-expression classes defined by action units, not by estimated emotion.

Davison, Merghani and Yap, "Objective classes for micro-facial expression recognition", Journal of Imaging 4(10):119,
2018 (doi:10.3390/jimaging4100119) group the AU combinations that FACS links to an emotion into classes I-VI and
put every other movement in class VII ("others"). MEGC 2018 (Yap, See, Hong and Wang, "Facial micro-expressions
grand challenge 2018 summary", FG 2018, doi:10.1109/FG.2018.00106) scored recognition on classes I-V of CASME II
and SAMM.

:func:`objective_class` applies the paper's table to a clip's *certain* AU codes (side and intensity ignored): the
class whose listed combination equals the clip's set of AU numbers, else VII. The coding files of CASME II and SAMM
carry the coders' own ``Objective Classes`` column (kept in ``meta["objective_class"]``); it agrees with the rule on
most clips, not all (:func:`disagreements`; ``data check`` names each one). MEGC 2018 took the coders' column: the
published SAMM counts are that column class for class, which no mechanical reading of the table gives. So the
default protocols ``<dataset>-objective`` (I-V) and ``-objective-7`` (I-VII) use the annotation's column, and
``<dataset>-objective-rule`` / ``-objective-rule-7`` derive each clip's class from its AUs by the rule. The published
counts beside ours, with the cause of each difference: docs/action-units.md ("Published counts").
"""

from __future__ import annotations

from collections.abc import Iterable

from microexp.data.aus import au_numbers
from microexp.data.classes import ClassProtocol
from microexp.data.records import ClipRecord

CLASSES = ("I", "II", "III", "IV", "V", "VI", "VII")

# The table of Davison et al. 2018 (also Table 9 of Merghani, Davison and Yap's review, arXiv:1805.02397), entry by
# entry in its order (tests/test_objective.py compares the printed table): class -> the AU combinations it is made
# of. Its "A23" in class III is AU23.
RULES: dict[str, tuple[frozenset[int], ...]] = {
    "I": tuple(map(frozenset, ({6}, {12}, {6, 12}, {6, 7, 12}, {7, 12}))),
    "II": tuple(map(frozenset, ({1, 2}, {5}, {25}, {1, 2, 25}, {25, 26}, {5, 24}))),
    "III": tuple(map(frozenset, ({23}, {4}, {4, 7}, {4, 5}, {4, 5, 7}, {17, 24}, {4, 6, 7}, {4, 38}))),
    "IV": tuple(map(frozenset, ({10}, {9}, {4, 9}, {4, 40}, {4, 5, 40}, {4, 7, 9}, {4, 9, 17}, {4, 7, 10},
                                {4, 5, 7, 9}, {7, 10}))),
    "V": tuple(map(frozenset, ({1}, {15}, {1, 4}, {6, 15}, {15, 17}))),
    "VI": tuple(map(frozenset, ({1, 2, 4}, {20}))),
}
_BY_SET = {combo: cls for cls, combos in RULES.items() for combo in combos}
_ROMAN = {str(i): c for i, c in enumerate(CLASSES, 1)}


def objective_class(numbers: Iterable[int]) -> str:
    """Objective class (``"I"``..``"VII"``) of a clip's set of AU numbers."""
    return _BY_SET.get(frozenset(numbers), "VII")


def record_class(record: ClipRecord) -> str:
    """Objective class of a record by the rule, from its certain AU codes."""
    return objective_class(au_numbers(record.au_codes))


def column_class(record: ClipRecord) -> str | None:
    """The annotation's own objective class (``meta["objective_class"]``: ``3`` or ``III``) as a numeral, or None."""
    raw = str(record.meta.get("objective_class", "")).strip().upper()
    if raw.endswith(".0"):
        raw = raw[:-2]
    return _ROMAN.get(raw, raw if raw in CLASSES else None)


def disagreements(records: Iterable[ClipRecord]) -> list[tuple[str, str, str, str]]:
    """(clip key, the file's class, the rule's class, the AU cell) of every clip whose annotated objective class
    differs from the rule."""
    out = []
    for r in records:
        column = column_class(r)
        if column is not None and column != record_class(r):
            out.append((r.key, column, record_class(r), r.aus))
    return out


#: the class a clip gets from a protocol on the coders' column when its annotation has none (excluded, with reason)
NOT_CODED = "not coded"


def coded_class(record: ClipRecord) -> str:
    """The annotation's own objective class, or :data:`NOT_CODED`."""
    return column_class(record) or NOT_CODED


def objective_protocols(dataset: str, title: str) -> tuple[ClassProtocol, ...]:
    """``<dataset>-objective`` (classes I-V, MEGC 2018) and ``-objective-7`` (I-VII) from the annotation's own
    objective-class column; ``-objective-rule`` and ``-objective-rule-7`` from the clip's AU codes by the rule."""
    five = {c: (c if c in CLASSES[:5] else None) for c in CLASSES}
    seven = {c: c for c in CLASSES}
    coded = "from the coding file's own objective-class column (as MEGC 2018 took them)"
    rule = "from the clip's AU codes by the rule of Davison et al. 2018"
    return (
        ClassProtocol(f"{dataset}-objective", CLASSES[:5], {**five, NOT_CODED: None},
                      f"{title} objective classes I-V (MEGC 2018) {coded}; VI and VII dropped",
                      field="objective class", derive=coded_class),
        ClassProtocol(f"{dataset}-objective-7", CLASSES, {**seven, NOT_CODED: None},
                      f"{title} objective classes I-VII {coded}", field="objective class", derive=coded_class),
        ClassProtocol(f"{dataset}-objective-rule", CLASSES[:5], five,
                      f"{title} objective classes I-V {rule}; VI and VII dropped", field="objective class",
                      derive=record_class),
        ClassProtocol(f"{dataset}-objective-rule-7", CLASSES, seven, f"{title} objective classes I-VII {rule}",
                      field="objective class", derive=record_class),
    )
