"""FACS action-unit codes as the releases write them, parsed into one type.

Every loader keeps the annotation's AU cell verbatim in ``ClipRecord.aus`` and the parsed codes in
``ClipRecord.au_codes`` (:func:`parse_aus_cell`); the synthetic generator renders the same codes. The notation of
each release and the parser's rules are in docs/action-units.md. In short:

* codes are separated by ``+``, ``,`` (CAS(ME)^2, also the full-width comma) or ``;``;
* a code is an optional side, the AU number, an optional intensity: ``L12``, ``R14A``, ``A1B``, ``T18``, ``4(B/C)``,
  ``AU12``; sides are ``L``/``R`` (unilateral left/right), ``A`` (asymmetric, SAMM), ``T``/``B`` (top/bottom lip),
  ``U`` (unilateral, side unspecified); intensities are the FACS letters A-E, ``A/B`` when the coder gave two;
* ``X or Y`` and a ``/`` between two full codes (``23/24``) are alternatives: each is kept, marked ``"or"``;
* ``ref(X)`` (SAMM) keeps X marked ``"ref"``; a trailing ``?`` (SAMM: "unclear offset") marks ``"?"``;
  ``(k)`` (4DME static AU) marks ``"static"``;
* empty cells, ``NULL``/``null``, ``nan`` and ``/`` mean no AU.

Whatever else a cell holds (free text such as ``Chewing``) is returned in :attr:`AUParse.unparsed`, never dropped
silently: loaders keep it with the record and ``data check`` names it with file and row.

Positives for AU detection and objective classes are the *certain* codes (no ``"or"``/``"ref"`` qualifier).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

#: qualifiers whose AU is not certainly present (alternatives of an "or", SAMM's ``ref(...)``)
UNCERTAIN = frozenset({"or", "ref"})
SIDES = ("L", "R", "A", "T", "B", "U")
EMPTY = frozenset({"", "null", "none", "nan", "/", "-"})


@dataclass(frozen=True, order=True)
class AUCode:
    """One coded action unit.

    ``side``: ``""`` (both sides / not stated), ``L``, ``R``, ``A`` (asymmetric), ``T``/``B`` (top/bottom lip),
    ``U`` (unilateral), or two sides the coder hesitated between (``"L/A"``). ``intensity``: ``""`` or FACS
    letters ``A``-``E`` (``"B/C"`` when two were given). ``qualifier``: ``""``, ``"or"`` (one of alternatives),
    ``"ref"`` (SAMM ``ref(...)``), ``"?"`` (SAMM: unclear offset), ``"static"`` (4DME ``(k)``).
    """

    number: int
    side: str = ""
    intensity: str = ""
    qualifier: str = ""

    @property
    def certain(self) -> bool:
        return self.qualifier not in UNCERTAIN

    @property
    def name(self) -> str:
        """``AU12``: the AU without side or intensity (the AU-detection target)."""
        return f"AU{self.number}"

    def __str__(self) -> str:
        intensity = self.intensity if "/" not in self.intensity else f"({self.intensity})"
        side = self.side if "/" not in self.side else f"({self.side})"
        core = f"{side}{self.number}{intensity}"
        if self.qualifier == "ref":
            return f"ref({core})"
        if self.qualifier == "static":
            return f"{core}(k)"
        return core + ("?" if self.qualifier == "?" else "")


@dataclass(frozen=True)
class AUParse:
    """Codes of one cell, in the order written, and the pieces that are no AU code."""

    codes: tuple[AUCode, ...]
    unparsed: tuple[str, ...] = ()


_LETTERS = r"[A-E](?:/[A-E])?"
_ATOM = re.compile(
    rf"^(?:AU)?(?P<side>[LRATBU]|\((?:[LRATBU]/)+[LRATBU]\)|(?:[LRATBU]/)+[LRATBU](?=\d))?\s*(?:AU)?"
    rf"(?P<num>\d{{1,2}})(?P<int>{_LETTERS}|\({_LETTERS}\))?(?P<static>\(k\))?$", re.IGNORECASE)
_OR = re.compile(r"\s*\bor\b\s*|(?<=\d)or(?=\s*[\w(])|(?<=\))or(?=\()|(?<=[A-E\d])or(?=[LRATBU]?\d)", re.IGNORECASE)


def _split_top(text: str, seps: str) -> list[str] | None:
    """Split on separator characters outside parentheses; None when the parentheses do not balance."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return None
        if ch in seps and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        return None
    parts.append("".join(cur))
    return parts


def _unwrap(text: str) -> str:
    """``(X)`` -> ``X`` while the outer parentheses enclose everything."""
    text = text.strip()
    while text.startswith("(") and text.endswith(")") and _split_top(text[1:-1], "") is not None:
        text = text[1:-1].strip()
    return text


def _atom(token: str, qualifier: str) -> AUCode | None:
    m = _ATOM.match(token.replace(" ", ""))
    if not m:
        return None
    side = (m.group("side") or "").upper().strip("()")
    intensity = (m.group("int") or "").upper().strip("()")
    if m.group("static"):
        qualifier = qualifier or "static"
    if "/" in side:
        qualifier = qualifier or "or"
    return AUCode(int(m.group("num")), side, intensity, qualifier)


def _term(text: str, qualifier: str, out: list[AUCode], bad: list[str]) -> None:
    """Parse one term (no top-level ``+``) into ``out``; what cannot be read goes to ``bad``."""
    text = _unwrap(text)
    if not text:
        return
    terms = _split_top(text, "+,;")
    if terms is not None and len(terms) > 1:  # a parenthesised group: (8+25)
        _expr(text, qualifier, out, bad)
        return
    if text.endswith("?"):
        _term(text[:-1], qualifier or "?", out, bad)
        return
    alternatives = [p for p in _split_or(text) if p.strip()]
    if len(alternatives) > 1:
        for alt in alternatives:
            _expr(alt, "or", out, bad)
        return
    m = re.fullmatch(r"ref\s*\((.*)\)", text, re.IGNORECASE)
    if m:
        _expr(m.group(1), "ref", out, bad)
        return
    # side or intensity applied to a group: A(4B/C), R(12or14)B
    m = re.fullmatch(r"([LRATBU])\((.*)\)([A-E]?)", text, re.IGNORECASE)
    if m and not re.fullmatch(_LETTERS, m.group(2), re.IGNORECASE):
        inner: list[AUCode] = []
        _expr(m.group(2), qualifier, inner, bad)
        for code in inner:
            out.append(AUCode(code.number, m.group(1).upper(), code.intensity or m.group(3).upper(), code.qualifier))
        return
    code = _atom(text, qualifier)
    if code is not None:
        out.append(code)
        return
    pieces = _split_top(text, "/")
    if pieces and len(pieces) > 1 and all(re.search(r"\d", p) for p in pieces):  # 23/24: alternatives
        for p in pieces:
            _expr(p, "or", out, bad)
        return
    bad.append(text)


def _split_or(text: str) -> list[str]:
    """Top-level ``or`` alternatives (``12A or 14A``, ``10or11``, ``(1B+2A)or(4)``)."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        ch = text[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0:
            m = _OR.match(text, i)
            if m and m.end() > m.start() and (m.start() == 0 or text[m.start() - 1] != "o"):
                parts.append(text[start:m.start()])
                start = i = m.end()
                continue
        i += 1
    parts.append(text[start:])
    return parts


def _expr(text: str, qualifier: str, out: list[AUCode], bad: list[str]) -> None:
    terms = _split_top(text, "+,;")
    if terms is None:
        bad.append(text.strip())
        return
    for term in terms:
        _term(term, qualifier, out, bad)


def parse_aus_cell(cell: object) -> AUParse:
    """Parse one annotation cell (a number, a string, ``None``/NaN) into AU codes and unreadable pieces."""
    if cell is None or (isinstance(cell, float) and cell != cell):
        return AUParse(())
    if isinstance(cell, float) and cell.is_integer():
        cell = int(cell)
    text = str(cell).strip().replace("\uff0c", ",").replace("\u3001", ",")
    if text.lower() in EMPTY:
        return AUParse(())
    codes: list[AUCode] = []
    bad: list[str] = []
    _expr(text, "", codes, bad)
    return AUParse(tuple(codes), tuple(bad))


def au_numbers(codes: Iterable[AUCode], certain_only: bool = True) -> frozenset[int]:
    """AU numbers present (side and intensity ignored); by default the certain ones only."""
    return frozenset(c.number for c in codes if c.certain or not certain_only)


def format_codes(codes: Iterable[AUCode]) -> str:
    """Canonical text of codes (``4+7+L10``), for display and for writing fixture annotations."""
    return "+".join(str(c) for c in codes)


def au_name(number: int) -> str:
    return f"AU{number}"
