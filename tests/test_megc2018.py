"""The MEGC 2018 composite (CASME II + SAMM in objective classes I-V, the coders' columns or the AU rule): loading from a folder holding both
releases, composite LOSO and hold-out-database evaluation on fixture trees, and the real coding files' counts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from _real import CASME2, SAMM, need
from microexp.config import RunConfig
from microexp.data.objective import coded_class, record_class
from microexp.data.registry import load_dataset
from microexp.errors import DataError
from microexp.synth.fixtures import build_fixture, placeholder_renderer
from microexp.train.evaluate import evaluate


@pytest.fixture(scope="module")
def composite_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("megc2018")
    build_fixture("casme2", root / "CASME2", render=placeholder_renderer, size=8)
    build_fixture("samm", root / "SAMM", render=placeholder_renderer, size=8)
    return root


def test_composite_loads_both_releases_in_objective_classes(composite_tree: Path) -> None:
    clips = load_dataset("megc2018", composite_tree)
    assert clips.classes == ("I", "II", "III", "IV", "V")
    assert {r.dataset for r in clips} == {"casme2", "samm"}
    assert all(r.subject.startswith(f"{r.dataset}_") for r in clips)
    # a generated coding file's objective-class column is the AU rule's class
    assert all(r.label == coded_class(r) == record_class(r) and r.meta["source_emotion"] for r in clips)
    assert all("not used by class protocol megc2018-objective" in e.reason for e in clips.excluded
               if "objective class" in e.reason)
    with pytest.raises(DataError, match="could not find the samm release"):
        load_dataset("megc2018", composite_tree / "CASME2")


@pytest.mark.parametrize(("protocol", "extra", "folds"), [
    ("megc2019", {}, None),  # composite evaluation: LOSO over the subjects of both datasets
    ("lodo", {"train_datasets": ["casme2"], "test_dataset": "samm"}, 1),  # hold-out database
    ("lodo", {"train_datasets": ["samm"], "test_dataset": "casme2"}, 1),  # the generated SAMM sample has all of I-V
])
def test_composite_and_holdout_database_evaluation(composite_tree: Path, protocol: str, extra: dict,
                                                   folds: int | None) -> None:
    """The objective class is a function of the AUs: the emotion-from-AU baseline recovers it on held-out clips
    whose AU combination it has seen."""
    config = RunConfig(dataset="megc2018", root=str(composite_tree), model="sklearn-aus", protocol=protocol,
                       model_params={"classifier": "tree"}, **extra)
    m = evaluate(config, progress=False, log=lambda _m: None).metrics
    if folds:
        assert m["n_folds"] == folds and list(m["per_dataset"]) == [extra["test_dataset"]]
    else:
        assert set(m["per_dataset"]) == {"casme2", "samm"}
    assert m["uar"] > m["chance"]["uar"]


@pytest.mark.slow
def test_real_coding_files_give_the_composite(tmp_path: Path) -> None:
    build_fixture("casme2", tmp_path / "CASME2", annotation=need(CASME2), render=placeholder_renderer, size=8)
    build_fixture("samm", tmp_path / "SAMM", annotation=need(SAMM), render=placeholder_renderer, size=8)
    # the coders' columns (tests/test_objective.py): CASME II I-V 30/18/93/15/18 (174), SAMM 24/13/20/8/3 (68, the
    # published SAMM count), 47 subjects as published (the published composite has 185 CASME II clips: another coding)
    clips = load_dataset("megc2018", tmp_path)
    assert Counter((r.dataset, r.label) for r in clips) == {
        ("casme2", "I"): 30, ("casme2", "II"): 18, ("casme2", "III"): 93, ("casme2", "IV"): 15, ("casme2", "V"): 18,
        ("samm", "I"): 24, ("samm", "II"): 13, ("samm", "III"): 20, ("samm", "IV"): 8, ("samm", "V"): 3}
    assert len(clips) == 242 and len({r.subject for r in clips}) == 47  # subjects with a clip of class I-V
    # by the AU rule: CASME II 30/18/93/13/18 (172), SAMM 18/13/18/6/5 (60)
    rule = load_dataset("megc2018", tmp_path, classes="megc2018-objective-rule")
    assert Counter((r.dataset, r.label) for r in rule) == {
        ("casme2", "I"): 30, ("casme2", "II"): 18, ("casme2", "III"): 93, ("casme2", "IV"): 13, ("casme2", "V"): 18,
        ("samm", "I"): 18, ("samm", "II"): 13, ("samm", "III"): 18, ("samm", "IV"): 6, ("samm", "V"): 5}
    assert len(rule) == 232 and len({r.subject for r in rule}) == 45


def test_data_check_of_the_composite_checks_both_releases(composite_tree: Path) -> None:
    from microexp.data.check import check_dataset

    report = check_dataset("megc2018", composite_tree, read_images=False)
    assert report.ok, report.text()
    assert {r.dataset for r in report.records} == {"casme2", "samm"}
