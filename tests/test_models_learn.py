"""Learnability smoke tests, one per model family, on small synthetic tensor tasks (not faces): each model must
score well above chance on held-out clips, and the same model trained on class-independent labels must not.
Tiny inputs, few epochs, one thread: the architectures are the seed ones, only the input size (and for the widest
models a width hparam) is scaled down."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _models_helpers import blob_clips, flow_fields, pulse_clips, saliency_of, shuffled, train_and_score
from microexp.models import registry

N_TRAIN, N_TEST = 72, 48  # 3 classes: 24 / 16 per class
CHANCE = 1 / 3
REGIONS = ("roi1", "roi2", "roi3", "roi4", "roi5", "roi6")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _clip_task(key: str, shape: tuple[int, int, int]):
    def make(n: int, seed: int):
        x, y = blob_clips(n, 3, shape, seed=seed)
        return {key: x}, y
    return make


def _fusenet_task(n: int, seed: int):
    # signal in the mouth clip only; the eye clip is noise, so the fused head must pick the informative stream
    x, y = blob_clips(n, 3, (17, 12, 12), seed=seed)
    eyes = np.random.default_rng(seed + 100).normal(0, 0.3, x.shape).astype(np.float32)
    return {"eyes": eyes, "mouth": x}, y


def _twostream_task(n: int, seed: int):
    x, y = blob_clips(n, 3, (8, 8, 8), seed=seed)
    return {"clip": x, "saliency": saliency_of(x)}, y


def _regional_task(n: int, seed: int):
    # class = temporal amplitude profile in roi6 (mouth); the other regions are noise
    x, y = pulse_clips(n, (6, 12, 12), seed=seed)
    rng = np.random.default_rng(seed + 7)
    streams = {r: rng.normal(0, 0.3, x.shape).astype(np.float32) for r in REGIONS[:-1]}
    streams["roi6"] = x
    return streams, y


def _flow_task(strain: bool):
    def make(n: int, seed: int):
        x, y = flow_fields(n, 3, 28, seed, strain)
        return {"flow": x}, y
    return make


CASES = {
    # name: (input shapes, task, hparams, training kwargs)
    "fusenet-intermediate": ({"eyes": (1, 17, 12, 12), "mouth": (1, 17, 12, 12)}, _fusenet_task, {},
                             {"epochs": 10}),
    "fusenet-late": ({"eyes": (1, 17, 12, 12), "mouth": (1, 17, 12, 12)}, _fusenet_task, {}, {"epochs": 10}),
    "joshi-3dcnn": ({"clip": (1, 9, 16, 16)}, _clip_task("clip", (9, 16, 16)), {}, {"epochs": 10}),
    "joshi-cnn-lstm": ({"clip": (1, 9, 16, 16)}, _clip_task("clip", (9, 16, 16)), {}, {"epochs": 10}),
    "joshi-convlstm": ({"clip": (1, 5, 10, 10)}, _clip_task("clip", (5, 10, 10)), {}, {"epochs": 12}),
    "joshi-2dcnn-vote": ({"clip": (1, 5, 22, 22)}, _clip_task("clip", (5, 22, 22)), {}, {"epochs": 8}),
    "twostream": ({"clip": (1, 8, 8, 8), "saliency": (1, 8, 8, 8)}, _twostream_task, {"widths": (8, 16, 32)},
                  {"epochs": 15}),
    "regional-lstm": ({r: (1, 6, 12, 12) for r in REGIONS}, _regional_task, {"hidden": 512},
                      {"epochs": 10, "lr": 2e-3}),
    "ststnet": ({"flow": (3, 1, 28, 28)}, _flow_task(True), {}, {"epochs": 30, "lr": 1e-2}),
    "offapexnet": ({"flow": (2, 1, 28, 28)}, _flow_task(False), {}, {"epochs": 6}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_learns_above_chance_and_shuffled_control_does_not(name: str) -> None:
    shapes, task, hparams, kwargs = CASES[name]
    train, y_train = task(N_TRAIN, 1)
    test, y_test = task(N_TEST, 2)
    spec = registry.get(name)
    scores = []
    for labels in (y_train, shuffled(y_train)):
        torch.manual_seed(0)
        model = spec.builder(3, shapes, **hparams)
        scores.append(train_and_score(model, train, labels, test, y_test, **kwargs))
    real, control = scores
    assert real >= 0.85, f"{name}: held-out accuracy {real:.3f} on a separable task"
    assert control <= CHANCE + 0.17, f"{name}: class-independent labels scored {control:.3f}"
