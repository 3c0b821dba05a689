"""The two-stage trainer (microexp.train.twostage) on the regional CNN + LSTM: what each stage trains (parameter
counts), stage-1 weights bitwise frozen in stage 2, the stage settings, and learnability above chance with a
shuffled-label control at chance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _models_helpers import PARAMETERS, assert_learned_or_chance, trainer_probs
from microexp.config import TrainConfig
from microexp.errors import ConfigError
from microexp.models import registry
from microexp.models.regional import REGIONS
from microexp.train import twostage
from microexp.train.trainers import TRAINERS

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _small(n_classes: int = 2, t: int = 4, size: int = 12):
    torch.manual_seed(0)
    return registry.get("regional-lstm").builder(n_classes, {r: (1, t, size, size) for r in REGIONS}, hidden=64,
                                                 features=16, lstm_units=8)


def test_parameter_counts_of_each_stage():
    model = registry.get("regional-lstm").builder(3, {r: (1, 3, 13, 17) for r in REGIONS})
    # per region: base 104 + 296, inception branches 10,816, Dense 2048 149,504, Dense 256 524,544
    cnn = 104 + 296 + 10_816 + 149_504 + 524_544
    stage1 = twostage.RegionClassifier("roi1", model.cnn["roi1"], model.feature_size, 3)
    assert _trainable(stage1) == cnn + 256 * 3 + 3  # the temporary classifier is stage 1's only addition
    # stage 2: six LSTM 64 on 256 (82,176 each), Dense 384->256, Dense 256->3; no CNN weight
    stage2 = twostage.TemporalStage(model)
    assert _trainable(stage2) == 6 * 82_176 + 98_560 + 771
    assert not any(n.startswith("cnn") for n, _ in stage2.named_parameters())
    assert 6 * cnn + _trainable(stage2) == _trainable(model) == PARAMETERS["regional-lstm"]


def _regions(n: int, seed: int, t: int = 4, size: int = 12) -> tuple[dict[str, torch.Tensor], np.ndarray]:
    """Six noisy regions; in the eye (roi1) and mouth (roi6) regions a blob sits top-left (class 0) or bottom-right
    (class 1) in every frame."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = {r: rng.normal(0, 1, (n, 1, t, size, size)).astype(np.float32) for r in REGIONS}
    for i, c in enumerate(y):
        where = slice(1, 5) if c == 0 else slice(7, 11)
        for r in ("roi1", "roi6"):
            x[r][i, 0, :, where, where] += 2.0
    return {r: torch.from_numpy(v) for r, v in x.items()}, y


def test_stage1_weights_are_bitwise_frozen_in_stage2():
    model = _small()
    x, y = _regions(24, seed=0)
    fit_idx = np.arange(16)
    cfg = TrainConfig(epochs=3, batch_size=8, optimizer="adam", lr=1e-3, device="cpu", stage1_epochs=2,
                      stage1_batch_size=16)
    init = {k: v.clone() for k, v in model.cnn.state_dict().items()}
    twostage.fit_stage1(model, x, torch.from_numpy(y), fit_idx, cfg, seed=0, n_classes=2)
    after1 = {k: v.clone() for k, v in model.cnn.state_dict().items()}
    assert any(not torch.equal(init[k], after1[k]) for k in init)  # stage 1 trained the CNNs
    assert not any(p.requires_grad for p in model.cnn.parameters())
    lstm_before = {k: v.clone() for k, v in model.lstm.state_dict().items()}
    result = twostage.fit_stage2(model, x, torch.from_numpy(y), fit_idx, cfg, seed=0, n_classes=2,
                                 test_idx=np.arange(16, 24))
    assert len(result.history) == 3 and result.chosen_epoch == 3
    assert all(torch.equal(after1[k], v) for k, v in model.cnn.state_dict().items())  # bitwise frozen
    assert any(not torch.equal(lstm_before[k], v) for k, v in model.lstm.state_dict().items())


def test_each_stage_gets_its_epochs_batch_and_rows(monkeypatch):
    calls = []
    real_fit = twostage.loop.fit

    def spy(model, inputs, y, fit_idx, cfg, seed, n_classes, val_idx=None, test_idx=None, on_epoch=None):
        calls.append({"kind": type(model).__name__, "n": len(next(iter(inputs.values()))), "fit": len(fit_idx),
                      "val": None if val_idx is None else len(val_idx), "epochs": cfg.epochs,
                      "batch": cfg.batch_size, "policy": cfg.epoch_policy})
        return real_fit(model, inputs, y, fit_idx, cfg, seed, n_classes, val_idx=val_idx, test_idx=test_idx,
                        on_epoch=on_epoch)

    monkeypatch.setattr(twostage.loop, "fit", spy)
    x, y = _regions(20, seed=1)
    cfg = TrainConfig(epochs=2, batch_size=5, optimizer="adam", lr=1e-3, device="cpu", epoch_policy="validation",
                      stage1_epochs=1, stage1_batch_size=12)
    TRAINERS.get("two-stage").fit(_small(), x, torch.from_numpy(y), np.arange(10), cfg, 0, 2,
                                  val_idx=np.arange(10, 14), test_idx=np.arange(14, 20))
    stage1 = [c for c in calls if c["kind"] == "RegionClassifier"]
    assert len(stage1) == 6
    # stage 1: frames (4 per clip) of the training and validation clips only; fixed policy, its own epochs/batch
    assert all(c == {"kind": "RegionClassifier", "n": 14 * 4, "fit": 10 * 4, "val": 4 * 4, "epochs": 1,
                     "batch": 12, "policy": "fixed"} for c in stage1)
    assert calls[-1] == {"kind": "TemporalStage", "n": 20, "fit": 10, "val": 4, "epochs": 2, "batch": 5,
                         "policy": "validation"}


@pytest.mark.parametrize("shuffled", [False, True])
def test_two_stage_learns_above_chance_and_a_shuffled_control_stays_at_chance(shuffled):
    x, y = _regions(80, seed=2)
    train, test = np.arange(48), np.arange(48, 80)
    cfg = TrainConfig(epochs=15, batch_size=16, optimizer="adam", lr=3e-3, device="cpu", stage1_epochs=4,
                      stage1_batch_size=32)
    probs = trainer_probs("two-stage", _small(), x, y, train, test, cfg, 3 if shuffled else None)
    assert probs.shape == (32, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert_learned_or_chance(probs, y[test], shuffled)


def test_models_without_regional_stages_and_bad_settings_are_refused():
    clip_model = registry.get("joshi-3dcnn").builder(2, {"clip": (1, 2, 16, 16)})
    with pytest.raises(ConfigError, match="two-stage needs a model with per-region CNNs"):
        TRAINERS.get("two-stage").fit(clip_model, {"clip": torch.zeros(2, 1, 2, 16, 16)}, torch.zeros(2),
                                      np.array([0, 1]), TrainConfig(), 0, 2)
    x, y = _regions(4, seed=0)
    del x["roi3"]
    with pytest.raises(ConfigError, match=r"regions \['roi3'\] are not among the streams"):
        twostage.fit_stage1(_small(), x, torch.from_numpy(y), np.arange(4), TrainConfig(), 0, 2)
    with pytest.raises(ConfigError, match=r"train.stage1_epochs=0 must be >= 1"):
        TrainConfig(stage1_epochs=0)
    assert twostage.stage1_settings(TrainConfig(epochs=60, batch_size=244)) == (60, 244)
    assert twostage.stage1_settings(TrainConfig(epochs=60, batch_size=244, stage1_epochs=100,
                                                stage1_batch_size=64)) == (100, 64)


def test_padding_frames_become_leading_zero_features():
    from microexp.models.regional import padding_mask, pre_pad

    feats = torch.tensor([[1.0, 2, 3, 4], [1, 2, 3, 4]]).unsqueeze(-1)
    mask = torch.tensor([[False, False, True, True], [True, False, True, False]])
    assert pre_pad(feats, mask)[..., 0].tolist() == [[0, 0, 1, 2], [0, 0, 2, 4]]
    assert pre_pad(feats, torch.zeros(2, 4, dtype=torch.bool)).equal(feats)  # no padding: unchanged
    x, _ = _regions(2, seed=0)
    for r in REGIONS:
        x[r][0, :, 3] = 0  # clip 0, last frame: padding in every region
    x["roi2"][1, :, 2] = 0  # clip 1, frame 2: zero in one region only, a real frame
    assert padding_mask(x).tolist() == [[False, False, False, True], [False] * 4]
    model = _small().eval()
    with torch.no_grad():
        real = {r: model.frame_features(r, x[r][:1, :, :3]) for r in REGIONS}
        want = model.classify({r: torch.cat([torch.zeros(1, 1, 16), v], dim=1) for r, v in real.items()})
        assert torch.allclose(model(**{r: v[:1] for r, v in x.items()}), want, atol=1e-6)


def test_stage1_leaves_padding_frames_out(monkeypatch):
    seen = []
    real_fit = twostage.loop.fit

    def spy(model, inputs, y, fit_idx, cfg, seed, n_classes, val_idx=None, test_idx=None, on_epoch=None):
        seen.append(len(fit_idx))
        return real_fit(model, inputs, y, fit_idx, cfg, seed, n_classes, val_idx=val_idx, test_idx=test_idx)

    monkeypatch.setattr(twostage.loop, "fit", spy)
    x, y = _regions(6, seed=0)
    for r in REGIONS:
        x[r][:3, :, 2:] = 0  # clips 0-2: two real frames, two padding
    twostage.fit_stage1(_small(), x, torch.from_numpy(y), np.arange(6), TrainConfig(epochs=1, device="cpu"), 0, 2)
    assert seen == [3 * 2 + 3 * 4] * 6
