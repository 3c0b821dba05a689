"""``microexp models``: the table lists every model with its input, parameter count and source."""

from __future__ import annotations

import json

from _models_helpers import PARAMETERS
from microexp.cli import main
from microexp.cli.models import model_table


def test_models_table_lists_names_inputs_counts_and_sources(capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert out.splitlines()[0].split()[:2] == ["name", "input"]
    assert f"{PARAMETERS['fusenet-intermediate']:,}" in lines["fusenet-intermediate"] and "eyes:1x96x32x32" in lines["fusenet-intermediate"]
    assert f"{PARAMETERS['fusenet-late']:,}" in lines["fusenet-late"]
    assert f"{PARAMETERS['stcnn']:,}" in lines["stcnn"] and "Reddy" in lines["stcnn"]
    assert "clip:1x9x128x128" in lines["joshi-convlstm"] and f"{PARAMETERS['joshi-convlstm']:,}" in lines["joshi-convlstm"]  # 7 classes
    assert "flow:3x1x28x28" in lines["ststnet"] and f"{PARAMETERS['ststnet']:,}" in lines["ststnet"]
    assert f"{PARAMETERS['twostream']:,}" in lines["twostream"]
    assert "4425 features" in lines["lbptop-svm"]
    assert "ShreyanshJoshi" in lines["joshi-3dcnn"]


def test_models_json_and_class_override(capsys) -> None:
    assert main(["models", "--json", "--classes", "2"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["joshi-3dcnn"]["parameters"] == 18_718_506 and rows["joshi-3dcnn"]["classes"] == 2
    assert rows["lbptop-svm"]["parameters"] is None and rows["lbptop-svm"]["kind"] == "sklearn"
    assert {r["name"] for r in model_table()} == set(rows)


def test_models_rejects_fewer_than_two_classes_in_one_line(capsys) -> None:
    assert main(["models", "--classes", "1"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["microexp models: error: --classes=1 must be >= 2"]
