"""The spotting methods, each turning :class:`~microexp.spot.features.VideoFeatures` into a per-frame score curve.

- ``mdmd``: training-free main directional maximal difference (after Wang et al., "Main directional maximal
  difference analysis for spotting facial movements from long-term videos", Neurocomputing 2017,
  doi:10.1016/j.neucom.2016.12.034). For the current frame t, head frame t - k and tail frame t + k: per face
  block, the main-directional flow magnitude of head->current minus that of head->tail; the score is the mean of
  the largest third of the blocks. A movement that returns (an expression) scores high at its apex; a lasting
  change (head turn, lighting) cancels.
- ``learned``: a shallow optical-flow network in the style of SOFTNet (Liong et al., "Shallow optical flow
  three-stream CNN for macro- and micro-expression spotting from long videos", ICIP 2021,
  doi:10.1109/ICIP42928.2021.9506349): the flow maps current-k -> current and current -> current+k, a small CNN
  regressing an apex-proximity score (1 at an apex, falling linearly to 0 at k frames), smoothed over k/2 frames.

They are registered in :data:`SPOT_METHODS` (``get_spot_method(name)``), as recognition models are in the model
registry: a :class:`SpotMethod` says whether its curve is fitted on training videos (``trained``), fits a model
for one expression type and window k, scores a video with it, and saves / restores that model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from microexp.registry import Registry
from microexp.spot.features import VideoFeatures
from microexp.spot.groundtruth import Interval


@dataclass(frozen=True)
class FitOptions:
    """What a trained method may use from the spotting configuration."""

    epochs: int = 12
    seed: int = 0
    long_events: str = "chained"  # macro input and target: chained | direct (contract.spotting.LONG_EVENTS)


class SpotMethod:
    """One spotting method. ``fit`` gets the training videos' features with their intervals (all types; the
    method keeps those of ``type``) and returns a model (None for a training-free method); ``curve`` scores one
    video with it: a float64 array over the video's positions, NaN where not scored."""

    name: str = ""
    description: str = ""
    trained: bool = False  # False: the curve does not depend on the training videos (only k, shape, threshold)

    def fit(self, videos: Sequence[tuple[VideoFeatures, Sequence[Interval]]], type: str, k: int,
            options: FitOptions) -> Any:
        return None

    def curve(self, model: Any, feat: VideoFeatures, k: int) -> np.ndarray:
        raise NotImplementedError

    def feature_ks(self, type: str, k: int, long_events: str) -> tuple[int, ...]:
        """The flow windows the features must hold for this type's window k."""
        return (k,)

    def state(self, model: Any) -> dict[str, Any] | None:
        """What to save of a fitted model (tensors and numbers only); None when there is nothing."""
        return None

    def from_state(self, state: dict[str, Any] | None) -> Any:
        return None


SPOT_METHODS: Registry[SpotMethod] = Registry("spotting method")


def register_spot_method(method: SpotMethod) -> SpotMethod:
    return SPOT_METHODS.add(method.name, method)


def get_spot_method(name: str) -> SpotMethod:
    return SPOT_METHODS.get(name)


def spot_method_names() -> list[str]:
    return SPOT_METHODS.names()


def mdmd_curve(feat: VideoFeatures, k: int) -> np.ndarray:
    d = feat.head[k] - feat.span[k]
    top = max(1, d.shape[1] // 3)
    s = np.sort(d, axis=1)[:, -top:].mean(1).astype(np.float64)
    s[~feat.valid[k]] = np.nan
    return s


# ------------------------------------------------------------------------------------------------------ learned
def net_inputs(feat: VideoFeatures, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(X (T, 4, s, s) float32, ok (T,)): flow maps t-k -> t and t -> t+k of every position t."""
    maps = feat.maps[k].astype(np.float32)
    n = len(maps)
    nxt = np.zeros_like(maps)
    nxt[: max(n - k, 0)] = maps[k:]
    ok = feat.valid[k].copy()
    ok_next = np.zeros(n, bool)
    ok_next[: max(n - k, 0)] = feat.valid[k][k:] if n > k else []
    return np.concatenate([maps, nxt], axis=1), ok & ok_next


CHAIN_MIN_K = 9  # windows this long or longer are chained from short steps (chained long events)


def chain_step(k: int) -> int:
    """The short flow window a long window of ``k`` frames is chained from (k itself below CHAIN_MIN_K)."""
    if k < CHAIN_MIN_K:
        return k
    from microexp.spot.detect import snap_k

    return snap_k(k / 3)


def chained_inputs(feat: VideoFeatures, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`net_inputs` for a long window, built from the flow maps of ``s = chain_step(k)`` frames:
    the sum of the n = round(k / s) maps ending at t, t - s, ... (about flow t - n s -> t) and of the n maps ending
    at t + s, ..., t + n s (about t -> t + n s). A crop-box change invalidates only the one short step across it
    (its map is left out and the sum rescaled), where a direct k-frame flow loses every position within k of it;
    a position needs at least half of the steps of each side."""
    s = chain_step(k)
    n = max(1, int(round(k / s)))
    maps = feat.maps[s].astype(np.float32)
    ok = feat.valid[s]
    m = np.where(ok[:, None, None, None], maps, 0.0).astype(np.float32)
    t_n = len(m)

    def shifted(a: np.ndarray, by: int) -> np.ndarray:  # out[t] = a[t + by], zero outside
        out = np.zeros_like(a)
        if abs(by) < t_n:
            if by >= 0:
                out[: t_n - by] = a[by:]
            else:
                out[-by:] = a[: t_n + by]
        return out

    back, fwd = np.zeros_like(m), np.zeros_like(m)
    nb, nf = np.zeros(t_n, np.float32), np.zeros(t_n, np.float32)
    okf = ok.astype(np.float32)
    for j in range(n):
        back += shifted(m, -j * s)
        nb += shifted(okf, -j * s)
        fwd += shifted(m, (j + 1) * s)
        nf += shifted(okf, (j + 1) * s)
    need = n / 2
    good = (nb >= need) & (nf >= need)
    back *= (n / np.maximum(nb, 1))[:, None, None, None]
    fwd *= (n / np.maximum(nf, 1))[:, None, None, None]
    return np.concatenate([back, fwd], axis=1), good


def centre_target(numbers: np.ndarray, intervals: Sequence[Interval], type: str, k: int) -> np.ndarray:
    """1 at the middle of each interval of ``type``, falling linearly to 0 at k frames from it. With k about half
    the interval's length, the flows t - k -> t and t -> t + k at the middle see the face go into the expression
    and come back out, whatever the hold; at the apex of a held expression (the end of its rise) the second one
    sees the hold and, depending on its length, part of the fall."""
    return _triangles(numbers, [(iv.onset + iv.offset) / 2 for iv in intervals if iv.type == type], k)


def apex_target(numbers: np.ndarray, intervals: Sequence[Interval], type: str, k: int) -> np.ndarray:
    """1 at the apex of each interval of ``type``, falling linearly to 0 at k frames from it."""
    return _triangles(numbers, [iv.peak for iv in intervals if iv.type == type], k)


def _triangles(numbers: np.ndarray, centres: Sequence[float], k: int) -> np.ndarray:
    """1 at each centre (a frame number), falling linearly to 0 at k frames from it; the largest where they meet."""
    y = np.zeros(len(numbers), np.float32)
    for c in centres:
        y = np.maximum(y, np.clip(1.0 - np.abs(numbers - c) / max(k, 1), 0.0, 1.0).astype(np.float32))
    return y


def _net(channels: int) -> Any:
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(128, 1), nn.Sigmoid())


class LearnedSpotter:
    """One small CNN per expression type; ``fit`` on training videos only."""

    def __init__(self, k: int, epochs: int = 12, seed: int = 0, batch: int = 128, lr: float = 3e-3,
                 chained: bool = False) -> None:
        self.k, self.epochs, self.seed, self.batch, self.lr = k, epochs, seed, batch, lr
        self.chained = chained  # inputs from chained short flows (chained_inputs) instead of the k-frame flows
        self.model: Any = None
        self.scale = 1.0

    def inputs(self, feat: VideoFeatures, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        k = self.k if k is None else k
        return chained_inputs(feat, k) if self.chained else net_inputs(feat, k)

    def fit(self, xs: Sequence[np.ndarray], ys: Sequence[np.ndarray]) -> LearnedSpotter:
        import torch

        x = np.concatenate(xs) if xs else np.zeros((0, 4, 1, 1), np.float32)
        y = np.concatenate(ys) if ys else np.zeros(0, np.float32)
        if len(x) == 0:
            from microexp.errors import ConfigError

            raise ConfigError("no usable training frames for the learned spotter")
        self.scale = float(x.std()) or 1.0
        # most frames are neutral: keep every frame near an apex and three times as many others, drawn at random
        rng = np.random.default_rng(self.seed)
        pos_i, neg_i = np.flatnonzero(y > 0), np.flatnonzero(y <= 0)
        if len(neg_i) > max(3 * len(pos_i), 256):
            neg_i = rng.choice(neg_i, max(3 * len(pos_i), 256), replace=False)
        keep = np.sort(np.concatenate([pos_i, neg_i]))
        x, y = x[keep], y[keep]
        torch.manual_seed(self.seed)
        g = torch.Generator().manual_seed(self.seed)
        self.model = _net(x.shape[1])
        opt = torch.optim.Adam(self.model.parameters(), lr=self.lr)
        xt = torch.from_numpy(x / self.scale)
        yt = torch.from_numpy(y)
        pos = float((y > 0).mean())
        # frames near an apex are rare: weight them up to balance the two sides
        wt = torch.where(yt > 0, torch.tensor(0.5 / max(pos, 1e-3)), torch.tensor(0.5 / max(1 - pos, 1e-3)))
        self.model.train()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # batches this small run faster on one thread than split over several
        try:
            self._epochs(torch, opt, xt, yt, wt, g)
        finally:
            torch.set_num_threads(threads)
        self.model.eval()
        return self

    def _epochs(self, torch: Any, opt: Any, xt: Any, yt: Any, wt: Any, g: Any) -> None:
        for _ in range(self.epochs):
            order = torch.randperm(len(xt), generator=g)
            for i in range(0, len(order), self.batch):
                b = order[i:i + self.batch]
                out = self.model(xt[b]).squeeze(1)
                loss = (wt[b] * (out - yt[b]) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()

    def predict(self, x: np.ndarray, ok: np.ndarray) -> np.ndarray:
        import torch

        from microexp.spot.detect import smooth

        with torch.no_grad():
            out = np.concatenate([self.model(torch.from_numpy(x[i:i + 512] / self.scale)).squeeze(1).numpy()
                                  for i in range(0, len(x), 512)]) if len(x) else np.zeros(0)
        s = smooth(np.where(ok, out, 0.0).astype(np.float64), max(1, self.k // 2))
        s[~ok] = np.nan
        return s

    def state(self) -> dict[str, Any]:
        return {"k": self.k, "scale": self.scale, "chained": int(self.chained), "state_dict": self.model.state_dict()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LearnedSpotter:
        s = cls(int(state["k"]), chained=bool(int(state.get("chained", 0))))  # saved before chaining: direct
        s.scale = float(state["scale"])
        s.model = _net(4)
        s.model.load_state_dict(state["state_dict"])
        s.model.eval()
        return s


def per_video_z(s: np.ndarray) -> np.ndarray:
    """A curve as robust z-scores of its own video (median and MAD of its scored positions; most of a long video is
    neutral, so they describe its neutral stretches)."""
    finite = s[np.isfinite(s)]
    if len(finite) < 2:
        return s
    med = float(np.median(finite))
    mad = float(np.median(np.abs(finite - med))) * 1.4826
    return (s - med) / max(mad, 1e-6)


def long_events_chained(type: str, k: int, long_events: str) -> bool:
    """Whether the learned spotter chains this window from short steps and targets the interval's middle:
    macro-expressions with ``long_events="chained"`` and a window of at least CHAIN_MIN_K frames."""
    return type == "macro" and long_events == "chained" and k >= CHAIN_MIN_K


# ---------------------------------------------------------------------------------------------------- registry
class MDMD(SpotMethod):
    name = "mdmd"
    description = "main directional maximal difference of the flow (training-free)"
    trained = False

    def curve(self, model: Any, feat: VideoFeatures, k: int) -> np.ndarray:
        return mdmd_curve(feat, k)


class Learned(SpotMethod):
    name = "learned"
    description = "shallow optical-flow CNN regressing apex proximity (SOFTNet style)"
    trained = True

    def fit(self, videos: Sequence[tuple[VideoFeatures, Sequence[Interval]]], type: str, k: int,
            options: FitOptions) -> LearnedSpotter:
        chained = long_events_chained(type, k, options.long_events)
        spotter = LearnedSpotter(k, epochs=options.epochs, seed=options.seed, chained=chained)
        target = centre_target if chained else apex_target
        xs, ys = [], []
        for feat, truth in videos:
            x, ok = spotter.inputs(feat)
            y = target(feat.numbers, truth, type, k)
            xs.append(x[ok])
            ys.append(y[ok])
        return spotter.fit(xs, ys)

    def feature_ks(self, type: str, k: int, long_events: str) -> tuple[int, ...]:
        return (k, chain_step(k)) if long_events_chained(type, k, long_events) else (k,)

    def curve(self, model: LearnedSpotter, feat: VideoFeatures, k: int) -> np.ndarray:
        if model.k != k:  # a video of another frame rate: the same network, smoothed over the rescaled window
            model = LearnedSpotter.from_state({**model.state(), "k": k})
        s = model.predict(*model.inputs(feat))
        # chained: in robust z-scores of the video, so one threshold fits networks trained on other subjects
        return per_video_z(s) if model.chained else s

    def state(self, model: LearnedSpotter) -> dict[str, Any]:
        return model.state()

    def from_state(self, state: dict[str, Any] | None) -> LearnedSpotter:
        if state is None:
            from microexp.errors import ConfigError

            raise ConfigError("the learned spotter needs its saved networks")
        return LearnedSpotter.from_state(state)


register_spot_method(MDMD())
register_spot_method(Learned())
