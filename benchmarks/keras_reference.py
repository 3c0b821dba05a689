"""Keras references of MicroExpSTCNN and MicroExpFuseNet (intermediate and late fusion), layer for layer from the
seeds' tables (Reddy et al., "Spontaneous Facial Micro-Expression Recognition using 3D Spatiotemporal
Convolutional Neural Networks", IJCNN 2019, DOI 10.1109/IJCNN.2019.8852419), for ``microexp bench --vs-keras``.

Outside the package on purpose: microexp does not depend on TensorFlow. Requirements: ``requirements.txt`` here.

Layout: the seeds ran Keras 2 with ``channels_first`` and a (1, rows, cols, frames) input. TensorFlow's CPU Conv3D
and MaxPool3D exist only for channels-last, so these models take (rows, cols, frames, 1): the same kernels
(3 rows x 3 cols x 15 frames), the same valid padding, pooling and Dense sizes, the same arithmetic and parameter
counts; only the flatten order differs, a fixed permutation of the first Dense layer's rows.

- STCNN: Conv3D 32 (3, 3, 15) ReLU -> MaxPool 3 -> Dropout 0.5 -> Flatten -> Dense 128 ReLU (N(0, 0.05))
  -> Dropout 0.5 -> Dense n (N(0, 0.05)) -> softmax. 44,241,667 parameters at 64x64x96, 3 classes.
- FuseNet streams (eyes, mouth; no weight sharing): Conv3D 32 (3, 3, 15) -> ReLU -> MaxPool 3 -> Dropout 0.5
  -> Flatten. Intermediate: concat -> Dense 1024 -> Dropout -> Dense 128 -> Dropout -> Dense n -> softmax
  (177,088,515 at 32x32x96); late: per stream Dense 1024 -> Dropout -> Dense 128 -> Dropout, concat -> Dense n
  (177,221,123). Every Dense linear, as coded; glorot-uniform kernels.
- Training: categorical cross-entropy, the Keras ``'SGD'`` string (lr 0.01, no momentum).
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no oneDNN/CUDA banners on stderr

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402

CONV = dict(filters=32, kernel_size=(3, 3, 15), padding="valid")


def _keras_shape(shape: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """microexp (C, T, H, W) -> Keras channels-last (rows, cols, frames, C)."""
    c, t, h, w = shape
    return h, w, t, c


def to_keras_layout(xs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """(N, C, T, H, W) -> (N, H, W, T, C), each stream."""
    return {k: np.ascontiguousarray(v.transpose(0, 3, 4, 2, 1)) for k, v in xs.items()}


def stcnn(n_classes: int, shape: tuple[int, int, int, int]) -> keras.Model:
    normal = keras.initializers.RandomNormal(0.0, 0.05)
    inp = keras.Input(_keras_shape(shape), name="clip")
    x = layers.Conv3D(activation="relu", **CONV)(inp)
    x = layers.MaxPooling3D(pool_size=(3, 3, 3))(x)
    x = layers.Dropout(0.5)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu", kernel_initializer=normal)(x)
    x = layers.Dropout(0.5)(x)
    x = layers.Dense(n_classes, kernel_initializer=normal)(x)
    return keras.Model(inp, layers.Activation("softmax")(x), name="stcnn")


def _stream(inp: Any) -> Any:
    x = layers.Conv3D(**CONV)(inp)
    x = layers.Activation("relu")(x)
    x = layers.MaxPooling3D(pool_size=(3, 3, 3))(x)
    x = layers.Dropout(0.5)(x)
    return layers.Flatten()(x)


def _head(x: Any) -> Any:
    x = layers.Dropout(0.5)(layers.Dense(1024)(x))
    return layers.Dropout(0.5)(layers.Dense(128)(x))


def fusenet(n_classes: int, eyes: tuple[int, int, int, int], mouth: tuple[int, int, int, int],
            fusion: str) -> keras.Model:
    e_in, m_in = keras.Input(_keras_shape(eyes), name="eyes"), keras.Input(_keras_shape(mouth), name="mouth")
    e, m = _stream(e_in), _stream(m_in)
    if fusion == "intermediate":
        x = _head(layers.Concatenate(axis=1)([e, m]))
    else:
        x = layers.Concatenate(axis=1)([_head(e), _head(m)])
    out = layers.Activation("softmax")(layers.Dense(n_classes)(x))
    return keras.Model([e_in, m_in], out, name=f"fusenet_{fusion}")


def build(name: str, n_classes: int, shapes: dict[str, tuple[int, int, int, int]]) -> keras.Model:
    """The reference of microexp model ``name`` for microexp input ``shapes`` ((C, T, H, W) per stream)."""
    if name == "stcnn":
        return stcnn(n_classes, shapes["clip"])
    if name in ("fusenet-intermediate", "fusenet-late"):
        return fusenet(n_classes, shapes["eyes"], shapes["mouth"], name.split("-")[1])
    raise ValueError(f"no Keras reference for {name!r}")


# Keras's default: "auto" compiles without XLA on a CPU-only machine. Measured here (2 cores, load ~15, batch 2):
# at 64x64x48 XLA was no faster for training (10-12 s against 8-10 s a step) and 2x slower for inference; only at
# the tiny --quick size did it train faster (0.45 against 6-7 s a step).
JIT: bool | str = "auto"


def compile_sgd(model: keras.Model, jit: bool | str = JIT) -> None:
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01), loss="categorical_crossentropy",
                  jit_compile=jit)


def _inputs(model: keras.Model, xs: dict[str, np.ndarray]) -> Any:
    """The model's inputs as it expects them: one tensor, or a dict by input name."""
    named = {t.name.split(":")[0]: tf.constant(xs[t.name.split(":")[0]]) for t in model.inputs}
    return next(iter(named.values())) if len(named) == 1 else named


def train_step(model: keras.Model, xs: dict[str, np.ndarray], y: np.ndarray, n_classes: int) -> Any:
    """One SGD step on the batch, as ``model.fit`` runs it (compiled train function)."""
    x, target = _inputs(model, xs), tf.constant(np.eye(n_classes, dtype=np.float32)[y])
    return lambda: model.train_on_batch(x, target)


def infer(model: keras.Model, jit: bool | str = JIT) -> Any:
    """Inference (dropout off) as a compiled function of a dict of streams; returns a callable. ``jit="auto"``:
    XLA only where Keras would use it (not on a CPU-only machine)."""
    def forward(x: Any) -> Any:
        return model(x, training=False)

    if jit == "auto":
        jit = bool([d for d in tf.config.list_physical_devices() if d.device_type != "CPU"])
    fn = tf.function(forward, jit_compile=jit, autograph=False, reduce_retracing=True)

    def run(xs: dict[str, np.ndarray]) -> Any:
        return fn(_inputs(model, xs)).numpy()
    return run


def set_threads(n: int) -> None:
    """TensorFlow on ``n`` threads, like torch (only before TF's first op; later calls are ignored)."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(min(n, 2))
    except RuntimeError:
        pass


def versions() -> dict[str, str]:
    return {"tensorflow": tf.__version__, "keras": keras.__version__, "jit_compile": str(JIT),
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default")}
