"""The frames-vote trainer (microexp.train.vote): per-frame predictions -> vote -> clip prediction by hand, frame-level
training rows, and learnability above chance with a shuffled-label control at chance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from _models_helpers import assert_learned_or_chance, trainer_probs
from microexp.config import TrainConfig
from microexp.errors import ConfigError
from microexp.models import registry
from microexp.train import vote
from microexp.train.trainers import TRAINERS

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_vote_by_hand_with_the_tie_rule_and_the_five_of_nine_rule():
    frames = np.array([[0, 1, 1, 2, 1, 0, 1, 2, 1],    # 5 x class 1, 2 x 0, 2 x 2
                       [2, 2, 0, 0, 2, 1, 0, 2, 0],    # 4 x 2, 4 x 0, 1 x 1: tie -> lowest index, 0
                       [2, 2, 2, 2, 2, 2, 2, 2, 2]])
    shares = vote.vote_shares(frames, 3)
    assert np.allclose(shares, np.array([[2, 5, 2], [4, 1, 4], [0, 0, 9]]) / 9)
    assert shares.argmax(1).tolist() == [1, 0, 2]
    assert vote.vote_counts(frames, 3).tolist() == [[2, 5, 2], [4, 1, 4], [0, 0, 9]]
    # the seed's accuracy rule: correct when >= 5 of 9 frames are correct (clip 1's modal 0 has only 4)
    assert vote.clip_correct(frames, np.array([1, 0, 2])).tolist() == [True, False, True]
    assert vote.clip_correct(frames, np.array([1, 0, 2]), min_votes=4).tolist() == [True, True, True]


def test_frame_classes_binary_rule_p0_above_half():
    probs = np.array([[0.51, 0.49], [0.5, 0.5], [0.2, 0.8]])
    assert vote.frame_classes(probs).tolist() == [0, 1, 1]  # exactly 0.5 is not > 0.5: class 1
    assert vote.frame_classes(np.array([[0.3, 0.3, 0.4], [0.4, 0.4, 0.2]])).tolist() == [2, 0]


class _ValueModel(nn.Module):
    """Frame class = the frame's mean value (0, 1 or 2), confident logits."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def frame_logits(self, clip: torch.Tensor) -> torch.Tensor:
        cls = clip.mean(dim=(1, 3, 4)).round().long()  # (N, T)
        return nn.functional.one_hot(cls, 3).float() * 10 + self.w


def test_predict_proba_votes_the_frames_of_each_clip():
    frames = np.array([[0, 1, 1, 2, 1, 0, 1, 2, 1], [2, 2, 0, 0, 2, 1, 0, 2, 0], [2] * 9], dtype=np.float32)
    clips = torch.from_numpy(np.broadcast_to(frames[:, None, :, None, None], (3, 1, 9, 2, 2)).copy())
    trainer = TRAINERS.get("frames-vote")
    probs = trainer.predict_proba(_ValueModel(), {"clip": clips}, np.array([2, 0, 1]), 4, torch.device("cpu"))
    assert np.allclose(probs, np.array([[0, 0, 9], [2, 5, 2], [4, 1, 4]]) / 9)
    assert trainer.predict_proba(_ValueModel(), {"clip": clips}, np.array([], int), 4, None).shape[0] == 0


def test_frames_are_the_training_samples(monkeypatch):
    seen = {}

    def spy(model, inputs, y, fit_idx, cfg, seed, n_classes, val_idx=None, test_idx=None, on_epoch=None):
        seen.update(inputs=inputs, y=y, fit=fit_idx, val=val_idx, test=test_idx)
        return vote.loop.FitResult()

    monkeypatch.setattr(vote.loop, "fit", spy)
    x = torch.arange(5 * 9, dtype=torch.float32).view(5, 1, 9, 1, 1).expand(5, 1, 9, 2, 2).contiguous()
    y = torch.tensor([0, 1, 0, 1, 1])
    TRAINERS.get("frames-vote").fit(_ValueModel(), {"clip": x}, y, np.array([4, 0]), TrainConfig(), 0, 2,
                                    val_idx=np.array([2]))
    frames = seen["inputs"]["clip"]
    assert frames.shape == (3 * 9, 1, 1, 2, 2)  # clips 0, 2, 4 only (the fold's rows), one frame each
    fit_values = frames[torch.as_tensor(seen["fit"])].mean(dim=(1, 2, 3, 4)).tolist()
    assert fit_values == [36.0 + t for t in range(9)] + [float(t) for t in range(9)]  # clip 4 then clip 0
    assert seen["y"][torch.as_tensor(seen["fit"])].tolist() == [1] * 9 + [0] * 9
    assert frames[torch.as_tensor(seen["val"])].mean(dim=(1, 2, 3, 4)).tolist() == [18.0 + t for t in range(9)]
    assert seen["test"] is None and set(seen["fit"]).isdisjoint(seen["val"])


def test_a_model_without_frame_outputs_is_refused():
    with pytest.raises(ConfigError, match="frames-vote needs a model with per-frame outputs"):
        TRAINERS.get("frames-vote").fit(nn.Linear(2, 2), {"clip": torch.zeros(2, 1, 9, 2, 2)}, torch.zeros(2),
                                        np.array([0, 1]), TrainConfig(), 0, 2)


def _blobs(n: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """Binary clips of 9 16x16 frames: 6 frames show a blob top-left (class 0) or bottom-right (class 1), 3 frames
    are noise only, so a clip needs its frames' vote."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.normal(0, 1, (n, 1, 9, 16, 16)).astype(np.float32)
    for i, c in enumerate(y):
        for t in rng.choice(9, 6, replace=False):
            r = slice(2, 7) if c == 0 else slice(9, 14)
            x[i, 0, t, r, r] += 2.5
    return torch.from_numpy(x), y


@pytest.mark.parametrize("shuffled", [False, True])
def test_frames_vote_learns_above_chance_and_a_shuffled_control_stays_at_chance(shuffled):
    x, y = _blobs(96, seed=0)
    train, test = np.arange(56), np.arange(56, 96)
    torch.manual_seed(0)
    model = registry.get("joshi-2dcnn-vote").builder(2, {"clip": (1, 9, 16, 16)})
    cfg = TrainConfig(epochs=6, batch_size=36, optimizer="adam", lr=1e-3, device="cpu")
    probs = trainer_probs("frames-vote", model, {"clip": x}, y, train, test, cfg, 1 if shuffled else None)
    assert probs.shape == (40, 2) and np.allclose(probs.sum(1), 1) and set(np.unique(probs * 9).round(6)) <= set(
        range(10))
    assert_learned_or_chance(probs, y[test], shuffled)


def test_frames_vote_refuses_augmenting_normalised_values():
    from microexp.preprocess.config import PreprocessConfig

    cfg = TrainConfig(epochs=1, device="cpu")
    cfg.augment = "joshi2d"  # a train.augment value (the field is the trainer's)
    with pytest.raises(ConfigError, match="adds 0-255 pixel noise"):
        TRAINERS.get("frames-vote").fit(_ValueModel(), {"clip": torch.zeros(2, 1, 9, 2, 2)}, torch.zeros(2),
                                        np.array([0, 1]), cfg, 0, 3,
                                        preprocess=PreprocessConfig(normalise="minus1to1"))


def test_predict_scores_a_frames_vote_checkpoint_by_its_vote_shares():
    """predict / export / serve score a frames-vote model as evaluation does: vote shares, not the forward."""
    import torch

    from microexp.predict.ensemble import member_class
    from microexp.train.vote import FramesVoteTrainer

    torch.manual_seed(0)

    class TwoFrame(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(4, 3))

        def frame_logits(self, clip: torch.Tensor) -> torch.Tensor:  # (N, 1, T, 2, 2) -> (N, T, 3)
            return clip.flatten(3).squeeze(1) @ self.w

        def forward(self, clip: torch.Tensor) -> torch.Tensor:
            return torch.log_softmax(self.frame_logits(clip), -1).mean(1)

    model = TwoFrame()
    x = torch.randn(5, 1, 9, 2, 2)
    voted = member_class()(model, ["clip"], None, vote=True)(x).detach().numpy()
    expected = FramesVoteTrainer().predict_proba(model, {"clip": x}, np.arange(5), 4, torch.device("cpu"))
    np.testing.assert_allclose(voted, expected, atol=1e-6)
    assert set(np.round(voted.ravel() * 9).tolist()) <= set(range(10))  # shares in ninths: a vote, not a mean
