"""The contract between the layers (microexp.contract): the one override helper and diff, the configuration models'
one-line errors (spotting run, recipe header, serve options), and values the hand-written coercion let through."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from microexp.cli import main
from microexp.config import RunConfig, TrainConfig
from microexp.contract.overrides import apply_overrides, diff, flatten, set_dotted
from microexp.contract.recipe import RecipeHeader
from microexp.contract.serve import ServeOptions
from microexp.errors import ConfigError


def test_overrides_and_diff() -> None:
    base = {"a": 1, "train": {"lr": 0.1}, "extra": None}
    out = apply_overrides(base, ["train.lr=1e-3", "extra.k=[1, 2]", "old=3"], renamed={"old": "new"})
    assert out == {"a": 1, "train": {"lr": 0.001}, "extra": {"k": [1, 2]}, "new": 3}
    assert base == {"a": 1, "train": {"lr": 0.1}, "extra": None}  # the input is left alone
    with pytest.raises(ConfigError, match=r"^override 'a.b=1': a is not a section$"):
        apply_overrides(base, ["a.b=1"])
    with pytest.raises(ConfigError, match=r"^override 'a' is not KEY=VALUE$"):
        apply_overrides(base, ["a"])
    assert diff(base, out) == [("extra", None, {"k": [1, 2]}), ("new", None, 3), ("train.lr", 0.1, 0.001)]
    assert diff(base, out, ignore=("extra", "train")) == [("new", None, 3)]
    assert diff({"workers": 2}, {"preprocess_workers": 2}, renamed={"workers": "preprocess_workers"}) == []
    # an empty section against a filled one: the keys that differ, not the section as a whole too
    assert diff({"preprocess": {}}, {"preprocess": {"frames": 8}}) == [("preprocess.frames", None, 8)]
    d: dict = {}
    set_dotted(d, "x.y.z", 1)
    assert d == {"x": {"y": {"z": 1}}} and flatten(d) == {"x.y.z": 1}


@pytest.mark.parametrize(("override", "message"), [
    ("save_checkpoints=[1]", "save_checkpoints=[1] is not one of all, predict, none"),  # a union, unchecked before
    ("train.epochs=true", "train.epochs=True is not an integer"),
    ("train.lr=false", "train.lr=False is not a number"),
    ("seeds=[true]", "seeds[0]=True is not an integer"),
    ("cache=1", "cache=1 is not true or false"),
    ("cache=t", "cache='t' is not true or false"),
    ("train.nosuch=1", "unknown option(s) ['train.nosuch']"),
    ("reproduce=nosuch", "reproduce: unknown switch 'nosuch'"),  # a comma list for a list of names
])
def test_run_configuration_values(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        RunConfig().with_overrides([override])
    assert message in str(err.value)


def test_run_configuration_is_checked_on_assignment_and_pickles() -> None:
    c = RunConfig().with_overrides(["train.epochs=3", "save_checkpoints=false"])
    assert c.save_checkpoints == "none" and c.train.epochs == 3
    with pytest.raises(ConfigError, match=r"^train.epochs=0 and train.batch_size=8 must be >= 1$"):
        c.train.epochs = 0
    assert c.train.epochs == 3  # a refused value leaves the configuration as it was
    with pytest.raises(ConfigError, match=r"^folds='x' is not an integer$"):
        c.folds = "x"  # type: ignore[assignment]
    assert pickle.loads(pickle.dumps(c)) == c  # dask ships it to its workers
    assert c.train.replace(augment="joshi2d").augment == "joshi2d"
    with pytest.raises(ConfigError, match="train.augment='no' is not one of"):
        c.train.replace(augment="no")
    assert TrainConfig(lr="2e-2").lr == 0.02  # type: ignore[arg-type]


def test_recipe_header_errors() -> None:
    good = {"name": "r", "version": "2", "seed": "a paper", "table": 3, "published": [], "choices": {}}
    head = RecipeHeader(**good)
    assert (head.version, head.table, head.profiles) == (2, "3", {})
    for change, message in (({"version": "x"}, "version='x' is not an integer"),
                            ({"choices": {"k": "mine: why"}}, "choice k: a choice must read 'SOURCE \\[WHERE\\]: text'"),
                            ({"published": [{"metric": "uf1"}]}, "a published entry needs \\['leaky', 'metric', 'value'\\]")):
        with pytest.raises(ConfigError, match=message):
            RecipeHeader(**{**good, **change})
    with pytest.raises(ConfigError, match=r"header lacks \['table'\]"):
        RecipeHeader(**{k: v for k, v in good.items() if k != "table"})


def test_serve_options_errors(tmp_path: Path) -> None:
    assert ServeOptions(runs=tmp_path, port="0").port == 0
    for options, message in (({"port": 70000}, "--port 70000: give 0-65535 (0 picks a free port)"),
                             ({"max_upload_mb": 0}, "--max-upload-mb 0: must be positive"),
                             ({"workers": 0}, "--workers 0: must be at least 1"),
                             ({"runs": tmp_path / "none"}, "no such folder")):
        with pytest.raises(ConfigError) as err:
            ServeOptions(**{"runs": tmp_path, **options})
        assert message in str(err.value)


def test_spot_set_is_typed_by_the_configuration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["evaluate", "--task", "spot", "--dataset", "samm_lv", "--root", str(tmp_path / "none")]
    for option, message in (("fps=abc", "--set 'fps=abc': fps='abc' is not a number"),
                            ("crop=1.5", "--set 'crop=1.5': crop='1.5' is not an integer"),
                            ("nosuch=1", "--set 'nosuch=1': with --task spot, KEY is one of fps, crop, grid"),
                            ("crop=8", "crop 8 / grid 6: need crop >= 16"),
                            ("fps=-5", "fps -5.0: must be positive"),
                            ("threshold=test-peek", "use --epoch-policy test-peek")):
        assert main([*base, "--set", option]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
