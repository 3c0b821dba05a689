"""Saliency maps for trained clip models: vanilla gradients (Reddy et al. 2019, Fig. 4) and Grad-CAM.

* :func:`vanilla_saliency`: the gradient of the predicted class's pre-softmax score with respect to the input,
  positive part, max over channels: one 2D map per frame along T (Simonyan et al.; the paper's "positive response
  towards the class scores"). :func:`binarise` thresholds each frame for display, as the paper shows them.
* :func:`grad_cam`: Grad-CAM on a 3D convolution (by default the last ``nn.Conv3d`` of the model, found by
  :func:`last_conv3d`), upsampled trilinearly to the input's (T, H, W).
* :func:`explain_clip`: loads a run's checkpoint for the fold in which the clip was a *test* clip, preprocesses the
  clip with the checkpoint's own preprocessing, and writes a PNG frame grid and an animated GIF overlay.
* :func:`explain_window`: one window of new frames (e.g. of a video ``predict`` classified) for a class, with
  every checkpoint of a run averaged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from microexp.data.records import ClipRecord
from microexp.errors import ConfigError, DataError

Inputs = dict[str, torch.Tensor]


def _score(model: nn.Module, inputs: Inputs, target: int | None) -> tuple[torch.Tensor, int]:
    logits = model(**inputs)
    cls = int(logits[0].argmax()) if target is None else int(target)
    return logits[0, cls], cls


def vanilla_saliency(model: nn.Module, inputs: Inputs, target: int | None = None) -> tuple[dict[str, np.ndarray], int]:
    """Per-frame saliency (T, H, W) of each stream for one clip (batch of 1) and the class explained.

    ``target`` None explains the predicted class. The model is put in eval mode (no dropout).
    """
    model.eval()
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in inputs.items()}
    model.zero_grad(set_to_none=True)
    score, cls = _score(model, leaves, target)
    score.backward()
    maps = {}
    for name, x in leaves.items():
        g = x.grad if x.grad is not None else torch.zeros_like(x)
        maps[name] = g[0].clamp_min(0).amax(dim=0).cpu().numpy()  # positive part, max over channels -> (T, H, W)
    return maps, cls


def binarise(maps: np.ndarray, quantile: float = 0.9) -> np.ndarray:
    """Binary maps for display: per frame, pixels at or above that frame's ``quantile`` of positive saliency."""
    out = np.zeros(maps.shape, dtype=bool)
    for t, frame in enumerate(maps):
        positive = frame[frame > 0]
        if positive.size:
            out[t] = frame >= np.quantile(positive, quantile)
    return out


def last_conv3d(model: nn.Module) -> nn.Conv3d:
    """The last ``nn.Conv3d`` in the model's module order: the usual Grad-CAM target of a 3D CNN."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv3d)]
    if not convs:
        raise ConfigError(f"{type(model).__name__} has no nn.Conv3d layer for Grad-CAM")
    return convs[-1]


def grad_cam(model: nn.Module, inputs: Inputs, target: int | None = None, layer: nn.Module | None = None,
             size: tuple[int, int, int] | None = None) -> tuple[np.ndarray, int]:
    """Grad-CAM map (T, H, W) in [0, 1] for one clip, upsampled to ``size`` (default: the first stream's T, H, W)."""
    model.eval()
    layer = layer or last_conv3d(model)
    store: dict[str, torch.Tensor] = {}

    def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
        out.retain_grad()
        store["act"] = out

    handle = layer.register_forward_hook(hook)
    try:
        model.zero_grad(set_to_none=True)
        score, cls = _score(model, {k: v.detach() for k, v in inputs.items()}, target)
        score.backward()
    finally:
        handle.remove()
    act = store["act"]
    weights = act.grad.mean(dim=(2, 3, 4), keepdim=True)  # type: ignore[union-attr]
    cam = torch.relu((weights * act).sum(dim=1, keepdim=True)).detach()
    size = size or tuple(next(iter(inputs.values())).shape[2:])  # type: ignore[assignment]
    cam = nn.functional.interpolate(cam, size=size, mode="trilinear", align_corners=False)[0, 0]
    peak = float(cam.max())
    return (cam / peak if peak > 0 else cam).cpu().numpy(), cls


# ---------------------------------------------------------------------------------------------------------------
# explaining a clip of a run


@dataclass
class Explanation:
    clip: str
    seed: int
    fold: str
    true: str
    predicted: str
    explained: str
    files: list[Path] = field(default_factory=list)


def find_test_fold(predictions: pd.DataFrame, clip: str, fold: str | None = None,
                   seed: int | None = None) -> pd.Series:
    """The predictions.csv row of ``clip`` (clip_id, subject/clip_id or dataset/subject/clip_id) as a test clip."""
    keys = predictions["dataset"].astype(str) + "/" + predictions["subject"].astype(str) + "/" + \
        predictions["clip_id"].astype(str)
    hit = predictions[(keys == clip) | keys.str.endswith("/" + clip)]
    if hit.empty:
        raise ConfigError(f"clip {clip!r} is not among the run's test predictions "
                          f"(e.g. {', '.join(keys.head(3).tolist())})")
    if hit.assign(k=keys).k.nunique() > 1:
        raise ConfigError(f"clip {clip!r} is ambiguous: {sorted(keys[hit.index].unique())[:5]}; give subject/clip")
    if fold is not None:
        hit = hit[hit["fold"].astype(str) == str(fold)]
        if hit.empty:
            raise ConfigError(f"clip {clip!r} was not a test clip of fold {fold!r}: explanations use held-out data")
    if seed is not None:
        hit = hit[hit["seed"] == seed]
        if hit.empty:
            raise ConfigError(f"clip {clip!r} has no prediction for seed {seed}")
    return hit.sort_values("seed").iloc[0]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _gray(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def write_figures(frames: np.ndarray, saliency: np.ndarray, cam: np.ndarray | None, out: Path, title: str,
                  n_frames: int = 8, quantile: float = 0.9, frame_label: str = "frame") -> list[Path]:
    """A PNG frame grid (frames / saliency / binarised saliency / Grad-CAM) and an animated GIF overlay."""
    import imageio.v2 as imageio
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.parent.mkdir(parents=True, exist_ok=True)
    t_total = frames.shape[0]
    pick = np.unique(np.round(np.linspace(0, t_total - 1, min(n_frames, t_total))).astype(int))
    binary = binarise(saliency, quantile)
    rows = [(frame_label, frames, "gray"), ("saliency", saliency, "hot"), ("binarised", binary, "gray")]
    if cam is not None:
        rows.append(("Grad-CAM", cam, "jet"))
    fig, axes = plt.subplots(len(rows), len(pick), figsize=(max(1.6 * len(pick), 7.0), 1.7 * len(rows)), squeeze=False)
    for r, (label, data, cmap) in enumerate(rows):
        for c, t in enumerate(pick):
            ax = axes[r][c]
            if label == "Grad-CAM":
                ax.imshow(frames[t], cmap="gray")
                ax.imshow(data[t], cmap=cmap, alpha=0.45, vmin=0, vmax=1)
            else:
                ax.imshow(data[t], cmap=cmap)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"t={t}", fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    png = out.with_suffix(".png")
    fig.savefig(png, dpi=90)
    plt.close(fig)
    heat = cam if cam is not None else np.stack([_gray(s) for s in saliency])
    cmap = matplotlib.colormaps["jet"]
    gif_frames = []
    for t in range(t_total):
        base = np.repeat(_gray(frames[t])[..., None], 3, axis=2)
        overlay = 0.6 * base + 0.4 * cmap(heat[t])[..., :3]
        gif_frames.append((overlay * 255).clip(0, 255).astype(np.uint8))
    gif = out.with_suffix(".gif")
    imageio.mimsave(gif, gif_frames, duration=0.1, loop=0)
    return [png, gif]


def load_model(checkpoint: Path, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a run's model from ``checkpoints/seed{S}-{fold}.safetensors`` (or an older run's ``.pt``)."""
    from microexp.models import registry
    from microexp.preprocess.config import PreprocessConfig
    from microexp.runs import load_checkpoint

    ckpt = load_checkpoint(checkpoint, map_location=device)  # weights_only: a run from elsewhere runs no code
    pconf = PreprocessConfig.from_dict(ckpt["preprocess"])
    model = registry.get(ckpt["model"]).build(len(ckpt["classes"]), pconf, **ckpt["model_params"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt


def clip_inputs(record: ClipRecord, ckpt: dict[str, Any]) -> Inputs:
    """The clip preprocessed exactly as in training: the checkpoint's pipeline and its fitted normaliser."""
    from microexp.preprocess.config import PreprocessConfig
    from microexp.preprocess.normalise import GlobalNormaliser
    from microexp.preprocess.pipeline import preprocess_clip

    arrays = preprocess_clip(record, PreprocessConfig.from_dict(ckpt["preprocess"]))
    out = {name: torch.from_numpy(arr)[None] for name, arr in arrays.items()}
    return GlobalNormaliser.from_dict(ckpt["normaliser"]).transform(out) if ckpt.get("normaliser") else out


def gradcam_applies(model: nn.Module, inputs: Inputs) -> bool:
    """Grad-CAM's last Conv3d can only be placed on the input of a single-stream model that has one."""
    return len(inputs) == 1 and any(isinstance(m, nn.Conv3d) for m in model.modules())


def display_frames(x: torch.Tensor) -> np.ndarray:
    """What a figure shows of a stream (1, C, T, H, W): raw streams the frame, flow streams the motion magnitude."""
    return x[0, 0].numpy() if x.shape[1] == 1 else x[0, :2].norm(dim=0).numpy()


def frame_label(x: torch.Tensor) -> str:
    return "frame" if x.shape[1] == 1 else "|flow|"


def explain_window(checkpoints: Sequence[Path], record: ClipRecord, target: int, out: Path, title: str,
                   preprocess: dict[str, Any] | None = None,
                   models: dict[Path, tuple[nn.Module, dict[str, Any]]] | None = None) -> list[Path]:
    """Explain one window of frames (``record``, e.g. a window of a video ``predict`` classified) for class index
    ``target`` with every checkpoint of a run: vanilla saliency averaged over the checkpoints (as the predictor
    averages their probabilities), Grad-CAM where it applies, on the first stream. Writes ``out``.png and .gif
    (see :func:`write_figures`) and returns them. ``preprocess``: the preprocessing the predictor used, where it
    differs from the checkpoints' own (a face mode chosen at load time); ``models``: a cache of loaded models
    shared between calls."""
    models = {} if models is None else models
    maps: dict[str, np.ndarray] = {}
    cams: list[np.ndarray] = []
    inputs: Inputs = {}
    for path in checkpoints:
        if path not in models:
            models[path] = load_model(path)
        model, ckpt = models[path]
        if not any(p.requires_grad for p in model.parameters()):
            raise ConfigError(f"model {ckpt['model']} has no trainable parameters: gradient saliency does not apply")
        inputs = clip_inputs(record, {**ckpt, "preprocess": preprocess} if preprocess is not None else ckpt)
        m, _ = vanilla_saliency(model, inputs, target)
        for k, v in m.items():
            maps[k] = maps.get(k, 0) + v / len(checkpoints)
        if gradcam_applies(model, inputs):
            cams.append(grad_cam(model, inputs, target)[0])
    if not inputs:
        raise ConfigError("no checkpoint to explain with")
    cam = np.mean(cams, axis=0) if cams else None
    stream, x = next(iter(inputs.items()))  # the first stream: the figure shows what the model looked at there
    return write_figures(display_frames(x), maps[stream], cam, out,
                         title + (f" | stream {stream}" if len(inputs) > 1 else ""), frame_label=frame_label(x))


def _find_record(run_dir: Path, key: str) -> ClipRecord:
    from microexp.config import RunConfig
    from microexp.data.registry import load_dataset
    from microexp.runs import CONFIG

    config = RunConfig.from_yaml(run_dir / CONFIG)
    if not config.root:
        raise ConfigError(f"{run_dir}/config.yaml has no dataset root; pass the clip record through the API")
    clips = load_dataset(config.dataset, Path(config.root), config.annotation, config.classes)
    for r in clips.records:
        if r.key == key:
            return r
    raise DataError(f"clip {key} is no longer in dataset {config.dataset} at {config.root}")


def explain_clip(run_dir: Path, clip: str, fold: str | None = None, seed: int | None = None,
                 out_dir: Path | None = None, record: ClipRecord | None = None, gradcam: bool = True,
                 n_frames: int = 8) -> Explanation:
    """Explain one held-out clip of a run: writes ``<out_dir>/<clip key>.png`` and ``.gif`` (default RUN_DIR/explain).

    The checkpoint used is the one of the fold (and lowest seed, unless given) in which the clip was tested.
    ``record`` skips reloading the dataset from the run's ``config.yaml`` (e.g. for clip sets built in code).
    """
    from microexp.fileio import check_writable_dir
    from microexp.runs import METRICS, PREDICTIONS, checkpoint_path, read_metrics, read_table

    run_dir = Path(run_dir)
    if n_frames < 1:
        raise ConfigError(f"n_frames={n_frames}: show at least one frame")
    if not (run_dir / PREDICTIONS).is_file():
        raise DataError(f"{run_dir}: not a finished run directory (no predictions.csv)")
    if (run_dir / METRICS).is_file() and read_metrics(run_dir).get("task") == "au":
        raise ConfigError(f"{run_dir} is an AU-detection run: saliency explains a recognition run's class "
                          "(an AU run's per-AU scores: microexp report)")
    check_writable_dir(out_dir or run_dir / "explain")  # before any work: a read-only folder is one line
    row = find_test_fold(read_table(run_dir, PREDICTIONS), clip, fold, seed)
    key = f"{row['dataset']}/{row['subject']}/{row['clip_id']}"
    model, ckpt = load_model(checkpoint_path(run_dir, int(row["seed"]), str(row["fold"])))
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"model {ckpt['model']} has no trainable parameters: gradient saliency does not apply")
    record = record or _find_record(run_dir, key)
    inputs = clip_inputs(record, ckpt)
    maps, cls = vanilla_saliency(model, inputs)
    cam = grad_cam(model, inputs, cls)[0] if gradcam and gradcam_applies(model, inputs) else None
    classes = ckpt["classes"]
    files: list[Path] = []
    for stream, x in inputs.items():
        frames = display_frames(x)
        title = (f"{key} | true {row['true']} | predicted {classes[cls]} | seed {int(row['seed'])} fold "
                 f"{row['fold']} (held out) | stream {stream}")
        name = _safe(key) if len(inputs) == 1 else f"{_safe(key)}-{_safe(stream)}"
        files += write_figures(frames, maps[stream], cam, (out_dir or run_dir / "explain") / name, title,
                               n_frames=n_frames, frame_label=frame_label(x))
    return Explanation(key, int(row["seed"]), str(row["fold"]), str(row["true"]), str(row["predicted"]), classes[cls],
                       files)
