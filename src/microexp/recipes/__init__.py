"""Seed recipes: one named, versioned YAML file per published experiment (``microexp recipes``).

A recipe file is a run's ``config.yaml`` (the *paper* profile: the published setup, leak-free) plus a header under
``recipe:``::

    recipe:
      name: reddy2019-stcnn-casme2sq      # the file's stem
      version: 1                          # bumped whenever a value changes
      seed: <paper title, venue, DOI>     # the experiment it reproduces
      table: <table / figure of the paper>
      published:                          # every figure the seed gives for this experiment
      - {metric: accuracy, value: 0.878, leaky: "why" | null, where: "Table V"}
      - {metric: accuracy, value: 0.822, std: 0.0502, epochs: [91, 100], leaky: ..., where: "Table VIII"}
      - {metric: uf1, value: 0.8886, dataset: smic, leaky: null, where: "..."}
      - {metric: accuracy, value: 0.66, scope: "best of the four models, model not named", leaky: ..., where: ...}
      choices: {train.batch_size: "paper §IV-B: batch 8 (the code: 16)", ...}   # SOURCE [WHERE]: text
      counts: {where: "Table IV", classes: {happy: 94, ...}, note: "..."}   # optional: the seed's clips per class
      profiles:                           # other profiles, as dotted overrides of the paper profile
        code: {why: "...", set: {train.batch_size: 16, ...}}

**Published figures** (:data:`PUBLISHED_KEYS`): ``metric``, ``value`` and ``leaky`` (null, or why the seed's
evaluation leaked) always; optional ``where`` (the seed's table/slide), ``std`` with ``epochs: [first, last]`` (a
mean ± std over those epochs: compared with our ``epoch_range``), ``dataset`` (one source dataset of a composite:
compared with our ``per_dataset`` score) and ``scope`` (what the figure is of when it is not this recipe's model
alone, e.g. the best of several models).

**Sources** (:func:`source_of`): every choice reads ``SOURCE [WHERE]: text`` with SOURCE one of
:data:`SOURCES`: ``paper WHERE: ...`` (WHERE, the section/table/slide, is required), ``code [FILE]: ...`` (the
file where the seed names it), ``ours: reason`` or ``ambiguous: (a) one reading; (b) another ...`` (at least two
readings, and which one the recipe takes). WHERE holds no colon.

Leaky reproduction switches (``train.epoch_policy`` test-peek / whole-set, ``reproduce``) appear only in a profile
named ``code``; :func:`load` refuses a recipe that breaks this. ``microexp evaluate --recipe NAME[:PROFILE]`` runs a
recipe; every ``--set`` or option that changes one of its values is recorded in ``config.yaml`` under
``recipe.deviations`` (:func:`deviations`).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from microexp.contract.overrides import diff, flatten, set_dotted  # noqa: F401 - flatten re-exported
from microexp.contract.recipe import (  # noqa: F401 - SOURCES, PUBLISHED_*, Source, source_of re-exported
    PUBLISHED_KEYS,
    PUBLISHED_OPTIONAL,
    SOURCES,
    RecipeHeader,
    Source,
    source_of,
)
from microexp.errors import ConfigError

PAPER = "paper"
CODE = "code"
# keys that say where the data is, not how the experiment runs: never a deviation
NOT_RECIPE_KEYS = ("root", "annotation", "recipe", "cache", "preprocess_workers", "train.device")


@dataclass(frozen=True)
class Recipe:
    """A recipe's header; :meth:`config_dict` gives the run configuration of a profile."""

    name: str
    version: int
    seed: str
    table: str
    published: tuple[dict[str, Any], ...]
    choices: dict[str, str]
    profiles: dict[str, dict[str, Any]]  # profile -> {why, set}; the paper profile has no overrides
    base: dict[str, Any]  # the paper profile's run configuration
    counts: dict[str, Any] | None = None  # the seed's clips per class: {where, classes: {class: n}, note}

    @property
    def profile_names(self) -> list[str]:
        return [PAPER, *sorted(p for p in self.profiles if p != PAPER)]

    def config_dict(self, profile: str = PAPER) -> dict[str, Any]:
        """The run configuration of ``profile`` as a plain dict (not yet validated by :class:`RunConfig`)."""
        if profile not in self.profile_names:
            raise ConfigError(f"recipe {self.name} has no profile {profile!r} (profiles: {', '.join(self.profile_names)})")
        d = copy.deepcopy(self.base)
        for key, value in (self.profiles.get(profile) or {}).get("set", {}).items():
            set_dotted(d, key, copy.deepcopy(value))
        d["recipe"] = {"name": self.name, "version": self.version, "profile": profile, "deviations": []}
        return d

    def header(self, profile: str = PAPER) -> dict[str, Any]:
        """What ``microexp recipes NAME --json`` prints: the header with the chosen profile's note."""
        return {"name": self.name, "version": self.version, "profile": profile, "profiles": self.profile_names,
                "seed": self.seed, "table": self.table, "published": [dict(p) for p in self.published],
                "choices": dict(self.choices),
                "sources": {k: {"source": (src := source_of(v)).kind, "where": src.where}
                            for k, v in self.choices.items()},
                "counts": self.counts,
                "why": (self.profiles.get(profile) or {}).get("why", "the published setup, leak-free")}


def _files() -> dict[str, Any]:
    return {f.name[:-5]: f for f in resources.files(__package__).iterdir() if f.name.endswith(".yaml")}


@functools.cache
def names() -> list[str]:
    """Every shipped recipe, sorted."""
    return sorted(_files())


def parse_ref(ref: str) -> tuple[str, str]:
    """``"NAME[:PROFILE]"`` -> (name, profile); the profile defaults to ``paper``."""
    name, _, profile = ref.partition(":")
    return name.strip(), (profile.strip() or PAPER)


@functools.cache
def get(name: str) -> Recipe:
    """The recipe ``name``; an unknown name is one line listing the known ones."""
    files = _files()
    if name not in files:
        raise ConfigError(f"unknown recipe {name!r} (known: {', '.join(sorted(files))})")
    try:
        data = yaml.safe_load(files[name].read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe {name}: not valid YAML ({exc})") from None
    return _parse(name, data)


def _parse(name: str, data: Any) -> Recipe:
    if not isinstance(data, dict) or not isinstance(data.get("recipe"), dict):
        raise ConfigError(f"recipe {name}: the file needs a 'recipe:' header mapping")
    data = dict(data)
    try:
        head = RecipeHeader(**data.pop("recipe"))
    except ConfigError as exc:
        raise ConfigError(f"recipe {name}: {exc}") from None
    if head.name != name:
        raise ConfigError(f"recipe {name}: header name {head.name!r} differs from the file name")
    recipe = Recipe(name, head.version, head.seed, head.table, tuple(head.published), dict(head.choices),
                    head.profiles, data, head.counts)
    for profile in recipe.profile_names:
        leaks = leaky_switches(recipe.config_dict(profile))
        if leaks and profile != CODE:
            raise ConfigError(f"recipe {name}: leaky switch(es) {leaks} outside the code profile ({profile})")
    return recipe


def leaky_switches(d: dict[str, Any]) -> list[str]:
    """The leaky switches a configuration dict sets (the one list: :func:`microexp.runs.leaks`)."""
    from microexp.runs import leaks

    return [x["switch"] for x in leaks(d)]


def load(name: str, profile: str = PAPER) -> tuple[Any, dict[str, Any]]:
    """(RunConfig, header) of a recipe's profile; ``name`` may be ``NAME:PROFILE``."""
    from microexp.config import RunConfig

    if ":" in name:
        name, profile = parse_ref(name)
    recipe = get(name)
    d = recipe.config_dict(profile)
    try:
        config = RunConfig.from_dict(d)
    except ConfigError as exc:
        raise ConfigError(f"recipe {name}:{profile}: {exc}") from None
    return config, recipe.header(profile)


def deviations(recipe: dict[str, Any], run: dict[str, Any]) -> list[dict[str, Any]]:
    """Every key whose value in ``run`` differs from the recipe's (``[{key, recipe, run}]``), ignoring where the
    data lives (root, annotation) and how the machine runs it (device, cache, workers)."""
    return [{"key": k, "recipe": a, "run": b} for k, a, b in diff(recipe, run, ignore=NOT_RECIPE_KEYS)]
