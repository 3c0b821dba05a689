"""Trainers: the registry, ``train.trainer`` / ``ModelSpec.trainer`` dispatch in run_fold, and bad names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_config
from microexp.config import RunConfig
from microexp.errors import ConfigError
from microexp.models import registry as model_registry
from microexp.train.evaluate import check_model, evaluate
from microexp.train.trainers import TRAINERS, ClipTrainer, get_trainer, trainer_name


def test_clip_is_registered_and_auto_follows_the_model_spec() -> None:
    assert "clip" in TRAINERS and isinstance(TRAINERS.get("clip"), ClipTrainer)
    spec = model_registry.get("stcnn")
    assert spec.trainer == "clip"
    assert trainer_name(RunConfig().train, spec) == "clip"
    assert trainer_name(RunConfig.from_dict({"train": {"trainer": "two-stage"}}).train, spec) == "two-stage"


def test_unknown_trainer_is_one_config_error_before_any_work() -> None:
    with pytest.raises(ConfigError, match=r"train\.trainer: unknown trainer 'nope' \(known: .*clip"):
        check_model(RunConfig.from_dict({"train": {"trainer": "nope"}}))
    with pytest.raises(ConfigError, match=r"train\.trainer='Bad Name!'"):
        RunConfig.from_dict({"train": {"trainer": "Bad Name!"}})


def test_run_fold_dispatches_to_the_configured_trainer(blob_tree: Path) -> None:
    calls: list[str] = []

    class Spy(ClipTrainer):
        name = "spy-test"

        def fit(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
            calls.append("fit")
            assert kwargs["spec"].name == "stcnn" and kwargs["preprocess"].frames == 10
            return super().fit(*args, **kwargs)

        def predict_proba(self, model, inputs, idx, batch_size, device):  # noqa: ANN001, ANN201
            calls.append("predict")
            return np.tile(np.array([[0.0, 1.0, 0.0]], np.float32), (len(idx), 1))

    if "spy-test" not in TRAINERS:
        TRAINERS.add("spy-test", Spy())
    config = tiny_config(blob_tree, **{"train.epochs": 1, "train.trainer": "spy-test"})
    assert isinstance(get_trainer(config.train, model_registry.get("stcnn")), Spy)
    result = evaluate(config, progress=False, log=lambda _m: None)
    assert calls == ["fit", "predict"] * 3
    # the spy's constant prediction (the second class, in sorted class order) is what got scored
    assert result.predictions["predicted"].nunique() == 1 and len(result.predictions) == 72
