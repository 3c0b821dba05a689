"""A recipe's header (the ``recipe:`` mapping of a recipe file, :mod:`microexp.recipes`), checked when read.

Every choice's source reads ``SOURCE [WHERE]: text`` (:func:`source_of`); published figures and the seed's class
counts have the keys :mod:`microexp.recipes` documents."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import ConfigDict, Field, model_validator

from microexp.contract.values import ConfigModel
from microexp.errors import ConfigError

SOURCES = ("paper", "code", "ours", "ambiguous")
REQUIRED = ("name", "version", "seed", "table", "published", "choices")
PUBLISHED_KEYS = {"metric", "value", "leaky"}  # required; the optional ones:
PUBLISHED_OPTIONAL = {"where", "std", "epochs", "dataset", "scope"}
_SOURCE = re.compile(r"(paper|code|ours|ambiguous)(?: ([^:]+?))?: (\S.*)", re.DOTALL)


@dataclass(frozen=True)
class Source:
    """Where a recipe value comes from: ``kind`` (paper | code | ours | ambiguous), ``where`` (section, table or
    file; "" when not given) and the ``text`` after the colon."""

    kind: str
    where: str
    text: str


def source_of(choice: str) -> Source:
    """Parse one choice (``"paper §IV-B: batch 8"``); a choice breaking the rules is one ConfigError line."""
    m = _SOURCE.fullmatch(choice.strip()) if isinstance(choice, str) else None
    if not m:
        raise ConfigError(f"a choice must read 'SOURCE [WHERE]: text' with SOURCE one of {', '.join(SOURCES)}; "
                          f"got {choice!r}")
    kind, where, text = m.group(1), (m.group(2) or "").strip(), m.group(3).strip()
    if kind == "paper" and not where:
        raise ConfigError(f"a 'paper' choice names its section or table ('paper §IV-B: ...'); got {choice!r}")
    if kind == "ambiguous" and not ("(a)" in text and "(b)" in text):
        raise ConfigError(f"an 'ambiguous' choice lists its readings '(a) ...; (b) ...'; got {choice!r}")
    return Source(kind, where, text)


def _check_published(p: Any) -> None:
    if not isinstance(p, dict) or not PUBLISHED_KEYS <= set(p) or set(p) - PUBLISHED_KEYS - PUBLISHED_OPTIONAL:
        raise ConfigError(f"a published entry needs {sorted(PUBLISHED_KEYS)} and may have "
                          f"{sorted(PUBLISHED_OPTIONAL)}; got {p}")
    if ("std" in p) != ("epochs" in p):
        raise ConfigError(f"a published mean ± std needs both std and epochs; got {p}")


def _check_counts(counts: Any) -> None:
    if (not isinstance(counts, dict) or not isinstance(counts.get("classes"), dict) or "where" not in counts
            or set(counts) - {"where", "classes", "note"}
            or not all(isinstance(v, int) for v in counts["classes"].values())):
        raise ConfigError(f"counts needs where and classes {{class: clips}} (and may have a note); got {counts}")


class RecipeHeader(ConfigModel):
    """``name``, ``version`` (bumped whenever a value changes), ``seed`` (the paper), ``table``, ``published``
    figures, ``choices`` (``key: "SOURCE [WHERE]: text"``), the seed's class ``counts`` (optional) and ``profiles``
    (``{why, set}``: dotted overrides of the paper profile). Other header keys are kept out, as they always were."""

    model_config = ConfigDict(extra="ignore")

    name: str
    version: int
    seed: str
    table: str
    published: list[Any]
    choices: dict[str, Any]
    counts: dict[str, Any] | None = None
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _required(cls, head: Any) -> Any:
        if isinstance(head, dict):
            missing = [k for k in REQUIRED if k not in head]
            if missing:
                raise ConfigError(f"header lacks {missing}")
            if head.get("profiles") is None:
                head = {**head, "profiles": {}}
        return head

    @model_validator(mode="after")
    def _check(self) -> RecipeHeader:
        for key, why in self.choices.items():
            try:
                source_of(why)
            except ConfigError as exc:
                raise ConfigError(f"choice {key}: {exc}") from None
        for p in self.published:
            _check_published(p)
        if self.counts is not None:
            _check_counts(self.counts)
        return self
