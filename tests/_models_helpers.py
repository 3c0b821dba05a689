"""For the model tests: the table of documented parameter counts, small inputs, synthetic tensor tasks, and a
scorer that trains through the project's own loop."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from microexp.config import TrainConfig
from microexp.train.loop import fit, predict_proba

# The one table of parameter counts: trainable parameters of every registered model for its default input and its
# published classes (``ModelSpec.classes``); None for models that are not torch modules. Derived layer by layer
# in tests/test_models_shapes.py; other configurations (binary heads, 18-frame inputs) are asserted there.
PARAMETERS: dict[str, int | None] = {
    "stcnn": 44_241_667,  # 64x64x96, 3 classes (docs/models.md §1.5)
    "fusenet-intermediate": 177_088_515,  # 32x32x96 eyes + mouth, 3 classes
    "fusenet-late": 177_221_123,
    "joshi-3dcnn": 16_608_135,  # 9 x 128x128, 7 classes (multiclass head)
    "joshi-cnn-lstm": 7_396_807,
    "joshi-convlstm": 73_195_271,
    "joshi-2dcnn-vote": 19_677_127,
    "twostream": 54_152_758,  # 32x32x152 clip + saliency, 6 classes
    "regional-lstm": 4_703_971,  # six regions x 64 frames, 3 classes
    "ststnet": 1_683,  # one 28x28 u, v, strain field, 3 classes
    "offapexnet": 2_664_475,  # one 28x28 u, v field, 3 classes
    "htnet": 139_582_982,  # four 14x14 areas of a 28x28 u, v, strain field, 3 classes (tests/test_htnet.py)
    "mmnet": 9_970_947,  # onset + apex 224x224 RGB, 5 classes, the authors' unused layers included (test_mmnet.py)
    "lbptop-svm": None,  # LBP-TOP features + LinearSVC (kind="sklearn")
    "sklearn-aus": None,  # emotion from the annotated AUs (kind="sklearn", reads the AU multi-hot)
}

# The smallest inputs (and hparams) each model builds and runs on, for the real-valued contract checks.
SMALL_INPUTS: dict[str, tuple[dict[str, tuple[int, int, int, int]], dict]] = {
    "stcnn": ({"clip": (1, 18, 12, 12)}, {"filters": 4, "dense": 8}),
    "fusenet-intermediate": ({"eyes": (1, 17, 8, 8), "mouth": (1, 17, 8, 8)}, {}),
    "fusenet-late": ({"eyes": (1, 17, 8, 8), "mouth": (1, 17, 8, 8)}, {}),
    "joshi-3dcnn": ({"clip": (1, 9, 16, 16)}, {}),
    "joshi-cnn-lstm": ({"clip": (1, 9, 16, 16)}, {}),
    "joshi-convlstm": ({"clip": (1, 5, 10, 10)}, {}),
    "joshi-2dcnn-vote": ({"clip": (1, 5, 22, 22)}, {}),
    "twostream": ({"clip": (1, 8, 8, 8), "saliency": (1, 8, 8, 8)}, {"widths": (4, 8, 8)}),
    "regional-lstm": ({f"roi{i}": (1, 3, 13, 17) for i in range(1, 7)}, {}),
    "ststnet": ({"flow": (3, 1, 28, 28)}, {}),
    "offapexnet": ({"flow": (2, 1, 28, 28)}, {}),
    "htnet": ({"flow": (3, 1, 28, 28)}, {"dim": 8, "heads": 2, "block_repeats": (1, 1, 1)}),
    "mmnet": ({"clip": (3, 2, 32, 32)}, {}),
    "lbptop-svm": ({"clip": (1, 8, 16, 16)}, {"grid": (2, 2)}),
    "sklearn-aus": ({"aus": (1, 1, 1, 100)}, {"classifier": "tree"}),
}


def blob_clips(n: int, n_classes: int, shape: tuple[int, int, int], seed: int, noise: float = 0.3,
               radius: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1, T, H, W) float32 clips and labels: class c shows a Gaussian blob that starts near a class-specific
    position and moves in a class-specific direction, on Gaussian noise. Position jitters by +-1 pixel."""
    rng = np.random.default_rng(seed)
    t, h, w = shape
    y = np.arange(n) % n_classes
    rng.shuffle(y)
    angles = 2 * np.pi * np.arange(n_classes) / n_classes
    yy, xx = np.mgrid[0:h, 0:w]
    clips = rng.normal(0.0, noise, size=(n, 1, t, h, w)).astype(np.float32)
    for i, c in enumerate(y):
        # class-specific start around the centre, moving outwards along the class angle
        cy0 = h / 2 + 0.2 * h * np.sin(angles[c]) + rng.uniform(-1, 1)
        cx0 = w / 2 + 0.2 * w * np.cos(angles[c]) + rng.uniform(-1, 1)
        step = 0.25 * min(h, w) / max(t - 1, 1)
        for k in range(t):
            cy = cy0 + k * step * np.sin(angles[c])
            cx = cx0 + k * step * np.cos(angles[c])
            clips[i, 0, k] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
    return clips, y


def pulse_clips(n: int, shape: tuple[int, int, int], seed: int, noise: float = 0.3, radius: float = 2.0
                ) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1, T, H, W) clips and 3-class labels where only the temporal order tells the classes apart: a blob at a
    random place whose amplitude rises (class 0), falls (class 1) or peaks mid-clip (class 2). Every frame looks
    alike up to amplitude, so position-invariant per-frame features + a recurrent stage are needed."""
    rng = np.random.default_rng(seed)
    t, h, w = shape
    y = np.arange(n) % 3
    rng.shuffle(y)
    ramp = np.linspace(0.0, 1.0, t)
    profiles = (ramp, ramp[::-1], 1.0 - np.abs(2 * ramp - 1))
    yy, xx = np.mgrid[0:h, 0:w]
    clips = rng.normal(0.0, noise, size=(n, 1, t, h, w)).astype(np.float32)
    for i, c in enumerate(y):
        cy, cx = rng.uniform(0.25 * h, 0.75 * h), rng.uniform(0.25 * w, 0.75 * w)
        blob = 2.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
        clips[i, 0] += profiles[c][:, None, None] * blob
    return clips, y


def saliency_of(clips: np.ndarray) -> np.ndarray:
    """Positive deviation of each frame from the clip's per-pixel temporal median (the two-stream seed's saliency)."""
    return np.maximum(clips - np.median(clips, axis=2, keepdims=True), 0).astype(np.float32)


def flow_fields(n: int, n_classes: int, size: int, seed: int, strain: bool, noise: float = 0.3
                ) -> tuple[np.ndarray, np.ndarray]:
    """(N, C, 1, size, size) onset->apex flow: class c moves a localized patch (random place) along the class
    angle, on noisy background flow. C = 2 (u, v) or 3 (u, v, strain magnitude from the flow gradients)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    rng.shuffle(y)
    angles = 2 * np.pi * np.arange(n_classes) / n_classes
    yy, xx = np.mgrid[0:size, 0:size]
    out = np.zeros((n, 3 if strain else 2, 1, size, size), np.float32)
    for i, c in enumerate(y):
        cy, cx = rng.uniform(0.3 * size, 0.7 * size, 2)
        patch = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (0.12 * size) ** 2))
        u = np.cos(angles[c]) * patch + rng.normal(0, noise, patch.shape)
        v = np.sin(angles[c]) * patch + rng.normal(0, noise, patch.shape)
        out[i, 0, 0], out[i, 1, 0] = u, v
        if strain:
            uy, ux = np.gradient(u)
            vy, vx = np.gradient(v)
            out[i, 2, 0] = np.sqrt(ux**2 + vy**2 + 0.5 * (uy + vx) ** 2)
    return out, y


def train_and_score(model: nn.Module, train: dict[str, np.ndarray], y_train: np.ndarray,
                    test: dict[str, np.ndarray], y_test: np.ndarray, epochs: int = 20, lr: float = 1e-3,
                    batch: int = 16, seed: int = 0, optimizer: str = "adam") -> float:
    """Train ``model`` with the project's trainer (:func:`microexp.train.loop.fit`, fixed epochs, cross-entropy)
    on the training rows and return its accuracy on the test rows (:func:`microexp.train.loop.predict_proba`)."""
    n_train, y_test = len(y_train), np.asarray(y_test)
    inputs = {k: torch.from_numpy(np.concatenate([train[k], test[k]])) for k in train}
    y = torch.from_numpy(np.concatenate([y_train, y_test]).astype(np.int64))
    cfg = TrainConfig(epochs=epochs, batch_size=batch, optimizer=optimizer, lr=lr, device="cpu")
    fit(model, inputs, y, np.arange(n_train), cfg, seed, n_classes=int(y.max()) + 1)
    probs = predict_proba(model, inputs, np.arange(n_train, n_train + len(y_test)))
    return float((probs.argmax(1) == y_test).mean())


def trainer_probs(trainer: str, model: nn.Module, inputs: dict[str, torch.Tensor], y: np.ndarray,
                  train: np.ndarray, test: np.ndarray, cfg: TrainConfig, shuffle_seed: int | None = None) -> np.ndarray:
    """Fit ``model`` with the registered trainer on the ``train`` rows (their labels permuted with
    ``shuffle_seed``, for the control) and return its class probabilities on the ``test`` rows."""
    from microexp.train.trainers import TRAINERS

    labels = np.asarray(y).copy()
    if shuffle_seed is not None:
        labels[train] = np.random.default_rng(shuffle_seed).permutation(labels[train])
    fitter = TRAINERS.get(trainer)
    fitter.fit(model, inputs, torch.from_numpy(labels), train, cfg, seed=0, n_classes=int(labels.max()) + 1)
    return fitter.predict_proba(model, inputs, test, 64, torch.device("cpu"))


def assert_learned_or_chance(probs: np.ndarray, y_test: np.ndarray, control: bool) -> None:
    """Two balanced classes: the real labels learnt (accuracy >= 0.9), the shuffled control near chance."""
    accuracy = float((probs.argmax(1) == np.asarray(y_test)).mean())
    if control:
        assert 0.25 <= accuracy <= 0.75, accuracy
    else:
        assert accuracy >= 0.9, accuracy


def shuffled(y: np.ndarray, seed: int = 123) -> np.ndarray:
    """Control labels independent of the true class: within every true class the labels are spread exactly
    evenly over all classes, in random order (a plain permutation leaves chance agreement that a separable task
    turns into a class-to-label mapping, so its control would swing between 0 and 2/3). Needs every class count to
    be a multiple of the number of classes."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    k = int(y.max()) + 1
    out = np.empty_like(y)
    for c in range(k):
        idx = np.flatnonzero(y == c)
        if len(idx) % k:
            raise ValueError(f"class {c} has {len(idx)} samples, not a multiple of {k}")
        out[idx] = rng.permutation(np.tile(np.arange(k), len(idx) // k))
    return out
