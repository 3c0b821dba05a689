"""The dataset and class-protocol registries, and the contract every registered dataset meets (parametrized over
the registry, so a new dataset cannot skip it)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from microexp.data import classes
from microexp.data.check import check_dataset
from microexp.data.registry import (
    DATASETS,
    DatasetSpec,
    dataset_names,
    get_dataset,
    load_dataset,
    register_dataset,
    resolve_protocol,
)
from microexp.errors import ConfigError, MicroexpError
from microexp.synth.fixtures import BUILDERS, build_fixture, placeholder_renderer

SRC = Path(__file__).resolve().parents[1] / "src" / "microexp"


def test_duplicate_names_raise() -> None:
    spec = get_dataset("casme2")
    with pytest.raises(ConfigError, match="dataset 'casme2' is registered twice"):
        register_dataset(DatasetSpec("casme2", spec.loader, None))
    with pytest.raises(ConfigError, match="class protocol 'samm-5' is registered twice"):
        classes.PROTOCOLS.add("samm-5", classes.get("casme2-5"))
    with pytest.raises(ConfigError, match=r"unknown dataset 'nosuch' \(known: casme, casme2, "):
        get_dataset("nosuch")
    with pytest.raises(ConfigError, match="unknown class protocol 'nosuch'"):
        load_dataset("casme2", Path("."), classes="nosuch")


def test_builtin_table_names_what_its_modules_register() -> None:
    """``data.builtin`` names each module's datasets without importing it (for ``--help``): it must stay true."""
    from microexp.data import builtin

    assert list(builtin.NAMES) == dataset_names()
    for module, names in builtin.DATASETS.items():
        assert {get_dataset(n).loader.__module__ for n in names} == {module}, module


def test_data_does_not_import_synth() -> None:
    """``synth`` is downstream of ``data`` (its fixture writers use the loaders), never the reverse."""
    imports = re.compile(r"^\s*(from|import)\s+microexp\.synth", re.MULTILINE)
    offenders = [p.name for p in (SRC / "data").glob("*.py") if imports.search(p.read_text())]
    assert offenders == []
    code = ("import sys; from microexp.data import registry, check; "
            "[registry.get_dataset(n) for n in registry.dataset_names()]; "
            "print(sorted(m for m in sys.modules if m.startswith('microexp.synth')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name", dataset_names())
def test_spec_contract(name: str) -> None:
    spec = get_dataset(name)
    assert spec.name == name and spec.description and callable(spec.loader)
    assert spec.scan is not None or spec.check is not None, "data check needs a scan or a custom check"
    assert resolve_protocol(spec, None) == (spec.default_classes or "all")
    for protocol in spec.protocols:  # registered with the dataset, as the very object of the spec
        assert classes.get(protocol.name) is protocol
    if spec.subject_pattern:
        re.compile(spec.subject_pattern)
    if spec.labels is not None:  # the release's own labels are known to its default protocol (none dropped unseen)
        default = classes.get(spec.default_classes) if spec.default_classes else None
        if default is not None and default.field == "emotion":
            for label in spec.labels:
                default.map(label)  # KeyError: a raw label the protocol does not know
    others = [p for p in classes.names() if p not in spec.accepted_protocols()
              and any(p in [q.name for q in get_dataset(o).protocols] for o in dataset_names() if o != name)]
    for other in others[:3]:  # another dataset's protocol is refused by name
        with pytest.raises(ConfigError, match=f"belongs to dataset .*, not {name}"):
            resolve_protocol(spec, other)


@pytest.mark.parametrize("name", dataset_names())
def test_missing_or_empty_root_is_a_reported_problem_not_a_traceback(name: str, tmp_path: Path) -> None:
    report = check_dataset(name, tmp_path / "nope")
    assert not report.ok and report.problems[0].kind in ("missing root", "layout")
    (tmp_path / "empty").mkdir()
    report = check_dataset(name, tmp_path / "empty")
    assert not report.ok and report.problems, report.text()
    with pytest.raises(MicroexpError):
        clips = load_dataset(name, tmp_path / "empty")
        if len(clips) == 0:  # a loader may find nothing without failing; evaluate refuses an empty set
            raise MicroexpError("no clips")


@pytest.mark.parametrize("name", [n for n in dataset_names() if n in BUILDERS])
def test_fixture_of_every_layout_loads_and_checks_clean(name: str, tmp_path: Path) -> None:
    fx = build_fixture(name, tmp_path / name, render=placeholder_renderer, size=16)
    report = check_dataset(name, fx.root)
    assert report.ok, report.text()
    clips = load_dataset(name, fx.root, classes="all")
    assert len(clips) == len(fx.rows) == len(report.records)
    assert len(load_dataset(name, fx.root)) > 0  # the default protocol leaves no class empty on the fixture


def test_every_registered_layout_has_a_fixture_or_is_a_derived_dataset() -> None:
    """A fixture writer for each release layout; the others reuse one (SMIC cameras, long-video annotations of a
    release with a fixture, the composite, the plain layouts written by ``synth`` itself)."""
    derived = {"smic_vis", "smic_nir", "samm_lv", "casme3_mm", "megc2019", "megc2018", "plain", "synthetic"}
    assert set(dataset_names()) - derived == set(BUILDERS.names())
    assert set(DATASETS.names()) == set(dataset_names())
