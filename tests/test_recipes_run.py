"""Every recipe runs end to end (``microexp evaluate --recipe``) on a fixture tree in its dataset's real layout, with
the smallest overrides (one epoch, tiny frames and sizes); the overrides come back as the run's recorded deviations
and the run writes its recipe card. The CLI path itself (``recipes``, ``--recipe``, deviations, card, report) is also
checked with a recipe that needs nothing beyond today's configuration keys."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from microexp import recipes
from microexp.cli import main
from microexp.config import RunConfig
from microexp.data._common import Row
from microexp.report.recipe import published_label, published_value
from microexp.synth import fixtures
from microexp.synth.fixtures import build_fixture, placeholder_renderer, synth_renderer

FACE = 112  # dlib finds the synthetic faces at this size (FuseNet eyes/mouth, the regional CNN's boxes)


def _rows(layout: str, emotions: list[str], subjects: list[str], per_class: int) -> list[Row]:
    rows, k = [], 0
    for e in emotions:
        for i in range(per_class):
            s = subjects[k % len(subjects)]
            onset = 101 + 20 * k
            if layout == "samm":
                rows.append(Row(s, f"{s}_{k + 1}_{i + 1}", e, onset, onset + 4, onset + 9, aus="12",
                                meta={"inducement": 1}))
            elif layout == "casme":
                rows.append(Row(s, f"EP{k + 1:02d}_{i + 1}", e, onset, onset + 4, onset + 9, aus="12"))
            else:  # casme2
                rows.append(Row(s, f"EP{k + 1:02d}_{i + 1:02d}", e, onset, onset + 4, onset + 9, aus="12"))
            k += 1
    return rows


ANNOTATION = {"samm": "SAMM_Micro_FACS_Codes_v2.xlsx", "casme": "casme.xlsx", "casme2": "CASME2-coding-20190701.xlsx"}


def _tree(base: Path, layout: str, rows: list[Row] | None, render, size: int) -> Path:
    annotation = None
    if rows is not None:  # the release's own file name: the loader finds it in the tree
        (base / f"annotation-{layout}").mkdir()
        annotation = base / f"annotation-{layout}" / ANNOTATION[layout]
        fixtures.write_annotation(layout, annotation, rows)
    fx = build_fixture(layout, base / layout, annotation, render=render, size=size)
    return fx.root


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("recipe-trees")
    samm7 = ["Happiness", "Surprise", "Anger", "Fear", "Disgust", "Contempt", "Sadness"]
    faces = synth_renderer(4)
    out = {
        "casme_sq": _tree(base, "casme_sq", None, faces, FACE),  # the generated CAS(ME)^2 sample: 2/3/2 clips
        "smic": _tree(base, "smic", None, faces, FACE),  # 12 SMIC-HS clips, 4 per class
        "samm": _tree(base, "samm", _rows("samm", samm7, ["006", "007", "011"], 3), faces, FACE),
        "casme": _tree(base, "casme", _rows("casme", ["disgust", "fear", "happiness", "repression", "sadness",
                                                      "surprise"], ["01", "02", "03"], 2), placeholder_renderer, 32),
        "casme2": _tree(base, "casme2", _rows("casme2", ["happiness", "disgust", "repression", "surprise", "sadness", "fear",
                                                        "others"],
                                              ["01", "02", "03"], 2), faces, FACE),
    }
    (base / "samm5").mkdir()  # SAMM's five classes of samm-5 (the tree above has no 'Other' clip)
    out["mmnet-samm-5"] = _tree(base / "samm5", "samm", _rows("samm", ["Anger", "Contempt", "Happiness", "Surprise",
                                                                       "Other"], ["006", "007", "011"], 2),
                                placeholder_renderer, 16)
    out["casme3"] = build_fixture("casme3", base / "casme3", render=placeholder_renderer, size=16).root  # its sample
    megc = base / "megc2019"  # the three releases under one root; no GT file: the composite is derived
    megc.mkdir()
    for name, layout in (("CASME2", "casme2"), ("SMIC", "smic"), ("SAMM", "samm")):
        (megc / name).symlink_to(out[layout].parent if layout == "smic" else out[layout], target_is_directory=True)
    out["megc2019"] = megc
    # MEGC 2018: CASME II + SAMM, every objective class I-V in each (AUs 12, 1+2, 4, 10, 15) so that each
    # hold-out direction trains on all five
    megc2018 = base / "megc2018"
    megc2018.mkdir()
    for layout, subjects in (("casme2", ["01", "02", "03"]), ("samm", ["006", "007", "011"])):
        rows = [replace(r, aus=("12", "1+2", "4", "10", "15")[k % 5]) for k, r in enumerate(_rows(layout, ["Other" if layout == "samm" else "others"], subjects, 10))]
        _tree(megc2018, layout, rows, placeholder_renderer, 8)
    out["megc2018"] = megc2018
    return out


TINY = ["train.epochs=1", "min_frames=null", "train.scheduler_monitor=train_loss"]
JOSHI = ["--size", "32"]
# the smallest overrides per recipe (beyond TINY); each becomes a recorded deviation
OVERRIDES: dict[str, list[str]] = {
    # the generated 7-span CAS(ME)^2 sample keeps 1 angry span under casme_sq-reddy: the stimulus classes here (the
    # real coding file's tree runs the recipe as is: tests/test_recipes.py)
    "reddy2019-stcnn-casme2sq": ["--size", "16", "--set", "preprocess.frames=17", "--set", "test_size=0.5",
                                 "--set", "train.report_epochs=[1, 1]", "--set", "classes=casme_sq-seed"],
    "reddy2019-stcnn-smic": ["--size", "16", "--set", "train.report_epochs=[1, 1]"],
    **{f"reddy2019-fusenet-{f}-casme2sq": ["--size", "16", "--set", "preprocess.frames=17", "--set", "test_size=0.5",
                                           "--set", "train.report_epochs=[1, 1]", "--set", "classes=casme_sq-seed"]
       for f in ("intermediate", "late")},
    **{f"reddy2019-fusenet-{f}-smic": ["--size", "16", "--set", "train.report_epochs=[1, 1]"]
       for f in ("intermediate", "late")},
    **{f"joshi2021-{m}-samm-{t}": [*JOSHI, "--set", "folds=2", "--set", "repeats=1"]
       for m in ("3dcnn", "cnn-lstm") for t in ("binary", "7")},
    **{f"joshi2021-convlstm-samm-{t}": ["--size", "16", "--set", "folds=2", "--set", "repeats=1"]
       for t in ("binary", "7")},
    "joshi2021-2dcnn-vote-samm-binary": [*JOSHI, "--set", "quota={positive: 2, negative: 6}"],
    "joshi2021-2dcnn-vote-samm-7": [*JOSHI, "--set", "quota={happiness: 2, surprise: 2, anger: 2, fear: 2, "
                                                     "disgust: 2, contempt: 2, sadness: 2}"],
    **{f"joshi2021-{m}-cross-casme2": JOSHI for m in ("3dcnn", "cnn-lstm", "2dcnn-vote")},
    "joshi2021-convlstm-cross-casme2": ["--size", "16"],
    "twostream-casme-6": ["--size", "16", "--set", "preprocess.frames=12", "--set", "preprocess.pad_to=12",
                          "--set", "train.batch_size=8"],
    "twostream-casme2-6": ["--size", "16", "--set", "preprocess.frames=12", "--set", "preprocess.pad_to=12",
                          "--set", "train.batch_size=8"],
    "aouayeb2019-megc2019": ["--size", "16", "--set", "preprocess.frames=4", "--set", "train.stage1_epochs=1",
                             "--set", "model_params.hidden=64"],
    "ststnet-megc2019": ["--set", "preprocess.flow_size=32", "--set", "preprocess.flow=farneback"],
    "offapexnet-megc2019": ["--set", "preprocess.flow_size=32", "--set", "preprocess.flow=farneback"],
    "lbptop-megc2019": ["--size", "20", "--set", "preprocess.frames=8"],
    "htnet-megc2019": ["--set", "preprocess.flow_size=32", "--set", "preprocess.flow=farneback", "--set",
                       "model_params.dim=8", "--set", "model_params.block_repeats=[1, 1, 1]"],
    "mmnet-casme2-5": ["--size", "32", "--set", "train.batch_size=8", "--set", "train.scheduler_epochs=1"],
    # the tiny trees' frames are the faces (placeholder frames have none for dlib to find)
    "htnet-casme3": ["--set", "preprocess.face=none", "--set", "model_params.dim=8", "--set",
                     "model_params.block_repeats=[1, 1, 1]"],
    "mmnet-casme2-3": ["--size", "32", "--set", "train.batch_size=8", "--set", "train.scheduler_epochs=1"],
    "mmnet-samm-5": ["--size", "16", "--set", "train.scheduler_epochs=1", "--set", "preprocess.face=none"],
    # placeholder frames have no face for dlib to find
    **{f"lbptop-megc2018-{e}": ["--size", "20", "--set", "preprocess.frames=8", "--set", "preprocess.face=none"]
       for e in ("cde", "hde-casme2-samm", "hde-samm-casme2")},
}


def _sets(args: list[str]) -> list[str]:
    return [*(f"--set={s}" for s in TINY), *args]


def _deviation_keys(args: list[str]) -> set[str]:
    keys = {s.split("=", 1)[0] for s in TINY}
    it = iter(args)
    for a in it:
        value = next(it)
        keys.add("preprocess.streams" if a == "--size" else value.split("=", 1)[0])
    return keys


def test_every_recipe_has_its_overrides():
    assert set(OVERRIDES) == set(recipes.names())


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OVERRIDES))
def test_recipe_runs_end_to_end_and_writes_its_card(name, trees, tmp_path, capsys):
    recipe = recipes.get(name)
    out = tmp_path / "run"
    args = _sets(OVERRIDES[name])
    tree = trees.get(name, trees[recipe.base["dataset"]])  # a recipe's own tree where its classes need one
    rc = main(["evaluate", "--recipe", name, "--root", str(tree), "--out", str(out),
               "--no-progress", "--no-cache", "--device", "cpu", "--preprocess-workers", "1", *args])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["recipe"]["name"] == name and config["recipe"]["profile"] == "paper"
    deviations = {d["key"]: d for d in config["recipe"]["deviations"]}
    candidates = _deviation_keys(OVERRIDES[name])  # only what the overrides changed (a mapping: its keys)
    assert all(k in candidates or k.split(".")[0] in candidates for k in deviations), (deviations, candidates)
    assert all(d["recipe"] != d["run"] for d in deviations.values())
    if recipe.base["train"]["epochs"] != 1:
        assert deviations["train.epochs"] == {"key": "train.epochs", "recipe": recipe.base["train"]["epochs"], "run": 1}
    assert ("preprocess.streams" in deviations) == ("--size" in OVERRIDES[name])
    card = (out / "recipe-card.txt").read_text()
    assert card.startswith(f"recipe {name} (version {recipe.version}, profile paper)")
    assert f"  deviations from the recipe ({len(deviations)}):" in card
    for p in recipe.published:  # every figure the seed gives, with its table and leak, beside ours
        assert f"{p['metric']}: {published_label(p)} {published_value(p)}; ours " in card
        assert p["where"] in card and (not p["leaky"] or f"(leaky: {p['leaky']})" in card)
        if p.get("epochs"):  # Table VIII's mean ± std beside ours over the same epochs
            assert f"± {p['std']:.4f} (epochs {p['epochs'][0]}-{p['epochs'][1]}); ours " in card
    if recipe.counts:  # the seed's clips per class beside ours
        assert f"  clips per class: published [{recipe.counts['where']}] " in card
    assert "recipe card written to" in captured.out


# ------------------------------------------------------------------------ the CLI path with a present-day recipe

TEST_RECIPE = {
    "recipe": {"name": "test-stcnn-blobs", "version": 3, "seed": "a test seed, no DOI", "table": "Table 0",
               "published": [{"metric": "accuracy", "value": 0.5, "leaky": "chosen on the test split"},
                             {"metric": "uf1", "value": 0.4, "leaky": None}],
               "choices": {"train.epochs": "ours: short"},
               "profiles": {"code": {"why": "peeks", "set": {"train.epoch_policy": "test-peek"}}}},
    "dataset": "plain", "model": "stcnn", "protocol": "kfold", "folds": 3,
    "model_params": {"kernel": [3, 3, 3], "filters": 4, "dense": 16, "fast": False},
    "preprocess": {"frames": 10, "selection": "whole",
                   "streams": [{"name": "clip", "region": "face", "size": [16, 16], "kind": "raw"}]},
    "train": {"epochs": 3, "batch_size": 8},
}


@pytest.fixture(scope="module")
def blobs(tmp_path_factory) -> Path:
    from conftest import write_blob_tree

    return write_blob_tree(tmp_path_factory.mktemp("blobs"), subjects=4, per_class=2, frames=10, size=24)


@pytest.fixture
def test_recipe(tmp_path, monkeypatch):
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "test-stcnn-blobs.yaml").write_text(yaml.safe_dump(TEST_RECIPE, sort_keys=False))
    monkeypatch.setattr(recipes, "_files", lambda: {"test-stcnn-blobs": folder / "test-stcnn-blobs.yaml"})
    recipes.get.cache_clear()
    recipes.names.cache_clear()
    yield "test-stcnn-blobs"
    recipes.get.cache_clear()
    recipes.names.cache_clear()


def test_evaluate_recipe_records_deviations_and_writes_the_card(test_recipe, blobs, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["evaluate", "--recipe", test_recipe, "--root", str(blobs), "--out", str(out), "--no-progress",
               "--no-cache", "--epochs", "2", "--set", "folds=2", "--set", "train.batch_size=8", "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    saved = yaml.safe_load((out / "config.yaml").read_text())
    # batch_size=8 equals the recipe's value: not a deviation; root, device and cache never are
    assert saved["recipe"] == {"name": test_recipe, "version": 3, "profile": "paper", "deviations": [
        {"key": "folds", "recipe": 3, "run": 2}, {"key": "train.epochs", "recipe": 3, "run": 2}]}
    assert RunConfig.from_yaml(out / "config.yaml").recipe == saved["recipe"]  # a run's config.yaml loads back
    card = (out / "recipe-card.txt").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert card.splitlines()[:4] == [
        f"recipe {test_recipe} (version 3, profile paper)", "  seed: a test seed, no DOI; Table 0",
        "  deviations from the recipe (2):", "    folds: 3 -> 2"]
    assert (f"  accuracy: published (leaky: chosen on the test split) 0.5000; ours {metrics['accuracy']:.4f}"
            in card.splitlines())
    assert f"  uf1: published 0.4000; ours {metrics['uf1']:.4f}" in card.splitlines()
    assert "LEAKY" not in card
    assert captured.out.rstrip().endswith(f"recipe card written to {out / 'recipe-card.txt'}")

    # the HTML report carries the card: deviations table and the published figures beside ours
    assert main(["report", str(out), "--saliency", "0"]) == 0
    html = (out / "report.html").read_text()
    assert "<h2 id='recipe'>Recipe card</h2>" in html and "<table id='deviations'>" in html
    assert "published (leaky: chosen on the test split)" in html and "id='leaky'" not in html

    # a leaky run: the banner lists each leak of metrics.json
    metrics["leaks"] = [{"switch": "train.epoch_policy=test-peek", "description": "epoch chosen on the test fold"},
                        {"switch": "reproduce=smic-surprise-duplication", "description": "surprise twice"}]
    metrics["epoch_policy"]["leaky"] = True
    (out / "metrics.json").write_text(json.dumps(metrics))
    from microexp.report.html import epoch_policy_section

    html = epoch_policy_section(metrics)
    assert "id='leaky'" in html and "<li><b>reproduce=smic-surprise-duplication</b>: surprise twice</li>" in html
    from microexp.report.recipe import write_recipe_card

    _, text = write_recipe_card(out)
    assert text.splitlines()[-1] == ("  THIS RUN IS LEAKY: train.epoch_policy=test-peek (epoch chosen on the test "
                                     "fold); reproduce=smic-surprise-duplication (surprise twice)")
    capsys.readouterr()
    assert main(["compare", str(out), str(out)]) == 0
    assert "test-stcnn-blobs:paper (2 deviation(s))" in capsys.readouterr().out


def test_code_profile_and_bad_recipe_input(test_recipe, blobs, tmp_path, capsys):
    out = tmp_path / "peek"
    assert main(["evaluate", "--recipe", f"{test_recipe}:code", "--root", str(blobs), "--out", str(out),
                 "--no-progress", "--no-cache", "--epochs", "1", "--device", "cpu"]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["recipe"]["profile"] == "code" and saved["train"]["epoch_policy"] == "test-peek"
    assert "THIS RUN IS LEAKY" in (out / "recipe-card.txt").read_text()
    capsys.readouterr()
    cases = [
        (["evaluate", "--recipe", "nosuch", "--root", str(blobs)],
         f"microexp evaluate: error: unknown recipe 'nosuch' (known: {test_recipe})"),
        (["evaluate", "--recipe", f"{test_recipe}:codes", "--root", str(blobs)],
         f"microexp evaluate: error: recipe {test_recipe} has no profile 'codes' (profiles: paper, code)"),
        (["evaluate", "--recipe", test_recipe, "--config", str(out / "config.yaml"), "--root", str(blobs)],
         f"microexp evaluate: error: --recipe {test_recipe} starts from the recipe's configuration; give --recipe or "
         "--config, not both"),
        (["evaluate", "--recipe", test_recipe, "--resume", str(out)],
         f"microexp evaluate: error: --recipe {test_recipe} starts from the recipe's configuration; give --recipe or "
         "--resume, not both"),
        (["recipes", "nosuch"], f"microexp recipes: error: unknown recipe 'nosuch' (known: {test_recipe})"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.strip() == message, argv


def test_recipes_command_lists_and_shows(capsys):
    assert main(["recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == recipes.names()
    by_name = {line.split()[0]: line for line in lines}
    assert by_name["reddy2019-stcnn-casme2sq"].split(maxsplit=4)[1:] == [
        "paper/code", "stcnn", "casme_sq", "accuracy 0.878 (leaky), accuracy 0.822 ± 0.0502 (epochs 91-100) (leaky)"]
    assert by_name["aouayeb2019-megc2019"].endswith("UF1 0.9022, UAR 0.9018, accuracy 0.9095 (+ per dataset)")
    assert by_name["twostream-casme-6"].endswith("none published")
    assert main(["recipes", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == recipes.names() and rows[0]["published"][:2] == [
        {"metric": "uf1", "value": 0.9022, "leaky": None, "where": "Aouayeb et al. MLSP 2019 slides, Results"},
        {"metric": "uar", "value": 0.9018, "leaky": None, "where": "Aouayeb et al. MLSP 2019 slides, Results"}]
    assert main(["recipes", "reddy2019-fusenet-late-smic:code"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("reddy2019-fusenet-late-smic (version 2), profile code (profiles: paper, code): the "
                            "reference script")
    assert "  reproduce: code: the SMIC fusion scripts append each surprise clip twice" in shown
    assert "reproduce:\n- smic-surprise-duplication" in shown and "epoch_policy: whole-set" in shown
    assert main(["recipes", "reddy2019-fusenet-late-smic", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["config"]["train"]["epoch_policy"] == "fixed" and shown["header"]["profile"] == "paper"


def test_recipe_files_ship_as_package_data():
    text = Path(__file__).resolve().parents[1].joinpath("pyproject.toml").read_text()
    assert '"recipes/*.yaml"' in text
    assert len(recipes.names()) == len(list(Path(recipes.__file__).parent.glob("*.yaml"))) >= 23



@pytest.mark.slow
def test_mmnet_recipe_runs_on_the_megc2019_composite(trees, tmp_path, capsys):
    """MMNet's published experiments are per dataset (its recipe: CASME II, 5 classes); the same recipe runs on the
    MEGC 2019 composite when its dataset and classes are overridden, recorded as deviations, scored per source."""
    out = tmp_path / "run"
    rc = main(["evaluate", "--recipe", "mmnet-casme2-5", "--root", str(trees["megc2019"]), "--out", str(out),
               "--no-progress", "--no-cache", "--device", "cpu", "--preprocess-workers", "1",
               *_sets([*OVERRIDES["mmnet-casme2-5"], "--set", "dataset=megc2019", "--set", "classes=megc2019-3",
                       "--set", "protocol=megc2019"])])
    assert rc == 0, capsys.readouterr().err
    config = yaml.safe_load((out / "config.yaml").read_text())
    deviations = {d["key"]: d for d in config["recipe"]["deviations"]}
    assert deviations["dataset"] == {"key": "dataset", "recipe": "casme2", "run": "megc2019"}
    assert deviations["classes"]["run"] == "megc2019-3"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "mmnet" and set(metrics["per_dataset"]) == {"casme2", "samm", "smic"}
