"""A recipe's header (the ``recipe:`` mapping of a recipe file, :mod:`microexp.recipes`), checked when read."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, model_validator

from microexp.contract.values import ConfigModel
from microexp.errors import ConfigError

SOURCES = ("paper", "code", "ours")
REQUIRED = ("name", "version", "seed", "table", "published", "choices")


class RecipeHeader(ConfigModel):
    """``name``, ``version`` (bumped whenever a value changes), ``seed`` (the paper), ``table``, ``published``
    figures (``{metric, value, leaky}``), ``choices`` (``key: "paper|code|ours: reason"``) and ``profiles``
    (``{why, set}``: dotted overrides of the paper profile). Other header keys are kept out, as they always were."""

    model_config = ConfigDict(extra="ignore")

    name: str
    version: int
    seed: str
    table: str
    published: list[dict[str, Any]]
    choices: dict[str, Any]
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
            if not isinstance(why, str) or why.split(":", 1)[0].strip() not in SOURCES:
                raise ConfigError(f"choice {key} must read 'paper|code|ours: reason', got {why!r}")
        for p in self.published:
            if set(p) != {"metric", "value", "leaky"}:
                raise ConfigError(f"a published entry needs exactly metric, value, leaky; got {p}")
        return self
