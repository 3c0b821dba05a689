"""Leak-free spotting evaluation: per fold (LOSO by default) every choice — k, interval shape, threshold, the
network's weights — is fitted on the training subjects' videos only, then applied to the test subject's videos.
Predictions of all folds are pooled and scored against every ground-truth interval (:mod:`microexp.spot.metrics`).

Two controls:

- the shuffled-prediction control (always): the run's own predicted intervals moved at random within their videos
  (same lengths), :data:`PREDICTION_DRAWS` times; its mean F1 is the chance level, and ``p_value`` says how often a
  shuffle scored at least the run's F1. It is meaningful for every method, the training-free MDMD included.
- ``control="shuffle"`` (the shuffled-training control) runs the same pipeline a second time with the training
  intervals moved at random within their videos. For the learned spotter it must score near its chance level (the
  network never sees a real interval). MDMD is training-free: only k, the interval shape and the threshold are
  fitted, so its shuffled-training run still finds real movements and scores well above chance; it measures how
  much those fitted choices matter, not whether the detector learned anything.

The learned spotter's threshold is fitted on out-of-fold score curves: the training subjects are split in two
halves (seeded), each half scored by a network trained on the other half; the fold's network is then trained on
all its training subjects. (Fitting it on the network's own training videos would pick a threshold for curves
sharper than a new subject's.) MDMD's curves do not depend on the training data, so its threshold is fitted on
the training videos' curves directly. ``threshold="in-sample"`` keeps the former rule for the learned spotter
(its threshold fitted on the curves of the network trained on those very videos; leak-free, but biased).
``threshold="test-peek"`` is the LEAKY recipe of published spotting code (threshold tuned on the test subject); it
exists only to reproduce such numbers and is marked in the run.

The run directory: ``config.yaml``, ``metrics.json``, ``megc_<dataset>.log`` (the MEGC spotting log),
``predictions.json`` (every predicted interval, per-fold parameters, exclusions), ``curves.npz`` (score curves
for the report's timeline) and, for the learned spotter, ``spotter.safetensors`` (models fitted on all subjects, for
:meth:`microexp.spot.api.Spotter.spot`, through ``microexp.load(RUN)``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import model_validator

from microexp import runs as rundir
from microexp.contract.spotting import BLINK_RULES, THRESHOLDS, SpotRunConfig  # noqa: F401 - re-exported
from microexp.data.splits import Fold, group_folds
from microexp.errors import ConfigError
from microexp.spot.blinks import blink_mask, blinks_of, drop_lone_blinks
from microexp.spot.data import SpotData, load_spot_data
from microexp.spot.detect import (
    Curve,
    TypeParams,
    centred,
    fit_scales,
    fit_threshold,
    margins,
    merge_scales,
    one_movement,
    scale_key,
    shuffle_intervals,
    shuffled_prediction_f1,
    spots_of,
)
from microexp.spot.features import FeatureConfig, VideoFeatures, extract_features
from microexp.spot.groundtruth import Interval
from microexp.spot.methods import FitOptions, SpotMethod, get_spot_method, spot_method_names
from microexp.spot.metrics import Spot, score
from microexp.spot.outputs import megc_log, spots_json, str_csv

PREDICTION_DRAWS = 50  # shuffles of the predictions: chance level and p-value (smallest p: 1/51)

# features of a video folder, kept in-process: a control run or a second method reuses them
_CACHE: dict[tuple[Any, ...], VideoFeatures] = {}


class SpotConfig(SpotRunConfig):
    """The spotting run's configuration (:class:`~microexp.contract.spotting.SpotRunConfig`) with the names of
    this layer checked too: the method and the feature settings."""

    @model_validator(mode="after")
    def _spot_names(self) -> SpotConfig:
        if self.method not in spot_method_names():
            raise ConfigError(f"spotting method {self.method!r}: expected one of {', '.join(spot_method_names())}")
        self.feature_config().validate()
        return self

    def validate(self) -> None:  # type: ignore[override]  # checked when built; kept for callers that re-check
        self._check()
        self._spot_names()

    def feature_config(self) -> FeatureConfig:
        return FeatureConfig(crop=self.crop, grid=self.grid, face=self.face)


@dataclass
class SpotRun:
    config: SpotConfig
    metrics: dict[str, Any]
    predictions: list[Spot]
    control_predictions: list[Spot] = field(default_factory=list)
    folds: list[dict[str, Any]] = field(default_factory=list)
    out: Path | None = None
    blinks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # video -> its blink events


def _features(data: SpotData, ks: set[int], config: SpotConfig, progress: Callable[[str], None] | None
              ) -> tuple[dict[tuple[str, str], VideoFeatures], list[tuple[str, str]]]:
    from microexp.errors import DataError

    feats, failed = {}, []
    for key, (_, folder) in sorted(data.videos.items()):
        try:
            cache_key = (str(folder), folder.stat().st_mtime_ns, tuple(sorted(ks)), data.fps, config.feature_config())
            if cache_key not in _CACHE:
                if len(_CACHE) > 256:
                    _CACHE.clear()
                _CACHE[cache_key] = extract_features(folder, tuple(sorted(ks)), data.fps, config.feature_config())
            feats[key] = _CACHE[cache_key]
        except DataError as exc:  # an undecodable video: a named exclusion, the others go on
            failed.append((key[1], str(exc)))
        if progress:
            progress(key[1])
    return feats, failed


@dataclass
class _Context:
    """What every fold of one evaluation shares: the data, the features, the method and the folds."""

    config: SpotConfig
    data: SpotData
    feats: dict[tuple[str, str], VideoFeatures]
    method: SpotMethod
    keys: list[tuple[str, str]]
    groups: np.ndarray
    folds: list[Fold]
    fold_params: list[dict[str, list[TypeParams]]]  # per fold, per type: one entry per window scale

    @property
    def blink_k(self) -> int:
        """The blink rule's window: the smallest window of the folds (a chained window's step does not count)."""
        return min(p.k for fp in self.fold_params for ps in fp.values() for p in ps)

    def subject(self, key: tuple[str, str]) -> str:
        return self.data.videos[key][0]

    def curve(self, key: tuple[str, str], model: Any, k: int) -> Curve:
        """The method's curve of one video; no peak on its blinks (spot.blinks) becomes a spot."""
        feat = self.feats[key]
        veto = blink_mask(feat, self.blink_k) if self.config.blinks != "ignore" else None
        return Curve(self.data.dataset, self.subject(key), key[1], feat.numbers, self.method.curve(model, feat, k),
                     veto)

    def fit(self, keys: list[tuple[str, str]], truth: list[Interval], type: str, k: int) -> Any:
        videos = [(self.feats[key], [i for i in truth if i.key == key]) for key in keys]
        return self.method.fit(videos, type, k, FitOptions(self.config.epochs, self.config.seed,
                                                           self.config.long_events))


def _fold_params(train_gt: list[Interval], config: SpotConfig, fps: float) -> dict[str, list[TypeParams]]:
    method = get_spot_method(config.method)
    out = {}
    for t in config.types:
        ps = fit_scales(train_gt, t, fps, config.macro_scales if t == "macro" else 1)
        # a window chained from short steps is aimed at the interval's middle: its interval is centred there
        out[t] = [centred(p) if len(method.feature_ks(t, p.k, config.long_events)) > 1 else p for p in ps]
    return out


def _feature_ks(config: SpotConfig, params: list[TypeParams]) -> set[int]:
    """The flow windows the features need for these window scales (a chained window needs its step too)."""
    method = get_spot_method(config.method)
    return {k for p in params for k in method.feature_ks(p.type, p.k, config.long_events)}


def inner_halves(subjects: set[str], seed: int) -> list[list[str]] | None:
    """Two seeded halves of the training subjects (None when there are fewer than two)."""
    ordered = sorted(subjects)
    if len(ordered) < 2:
        return None
    perm = np.random.default_rng(seed).permutation(len(ordered))
    shuffled = [ordered[i] for i in perm]
    return [sorted(shuffled[0::2]), sorted(shuffled[1::2])]


def _out_of_fold_curves(ctx: _Context, keys: list[tuple[str, str]], truth: list[Interval], type: str, k: int
                        ) -> tuple[list[Curve], list[list[str]] | None]:
    """A trained method's curves of the training videos, each from a model that did not train on its subject
    (inner 2-fold split of the training subjects); in-sample curves when there is one subject only."""
    halves = inner_halves({ctx.subject(key) for key in keys}, ctx.config.seed)
    if halves is None:
        model = ctx.fit(keys, truth, type, k)
        return [ctx.curve(key, model, k) for key in keys], None
    curves = []
    for held in halves:
        model = ctx.fit([key for key in keys if ctx.subject(key) not in held], truth, type, k)
        curves += [ctx.curve(key, model, k) for key in keys if ctx.subject(key) in held]
    return curves, halves


def _threshold_curves(ctx: _Context, model: Any, keys: list[tuple[str, str]], truth: list[Interval], type: str,
                      k: int) -> tuple[list[Curve], list[list[str]] | None]:
    """The training videos' curves the threshold is fitted on: out-of-fold for a trained method (unless the
    in-sample rule is asked for), the method's own curves for a training-free one."""
    if ctx.method.trained and ctx.config.threshold != "in-sample":
        return _out_of_fold_curves(ctx, keys, truth, type, k)
    return [ctx.curve(key, model, k) for key in keys], None


def prediction_control(gt: list[Interval], preds: list[Spot], spans: Any, result: Any, types: tuple[str, ...],
                       rng: np.random.Generator, draws: int = PREDICTION_DRAWS) -> dict[str, dict[str, Any]]:
    """The shuffled-prediction control per type (and overall): mean / std F1 of the predictions moved at random
    within their videos, and the p-value of the run's F1 against those shuffles."""
    out = {}
    for t in (*types, None):
        f1 = shuffled_prediction_f1(gt, preds, spans, rng, draws, type=t)
        method = result.get(type=t).f1
        out["overall" if t is None else t] = {
            "f1": float(f1.mean()) if len(f1) else 0.0, "std": float(f1.std()) if len(f1) else 0.0,
            "draws": int(len(f1)), "method_f1": method, "p_value": float((1 + (f1 >= method).sum()) / (len(f1) + 1))}
    return out


def _recognise(data: SpotData, preds: list[Spot], recogniser: Any) -> list[Spot]:
    """Every prediction with the class the recognition run gives its frames (one streamed pass per video)."""
    from microexp.spot.recognise import recognise_spots

    if isinstance(recogniser, str | Path):
        from microexp.predict import load as load_predictor

        recogniser = load_predictor(recogniser)
    out = []
    for key in sorted({p.key for p in preds}):
        mine = [p for p in preds if p.key == key]
        out += recognise_spots(data.videos[key][1], mine, recogniser, data.fps)
    return out


def _context(config: SpotConfig, progress: Callable[[str], None] | None
             ) -> tuple[_Context, list[Any], list[Interval]]:
    """Data, folds, per-fold shapes and the features (computed once for the union of the folds' k); the
    exclusions and the ground truth of the videos that could be scored."""
    from microexp.data.records import Exclusion

    data = load_spot_data(config.dataset, config.root, config.annotation)
    if config.fps is not None:  # checked (positive) when the configuration was built
        data.fps = float(config.fps)
    keys = sorted(data.videos)
    groups = np.array([data.videos[k][0] for k in keys], dtype=object)
    folds = group_folds(config.protocol, groups, seed=config.seed, n_splits=config.folds)
    gt_all = data.gt.intervals
    # every fold's k is fitted on its training subjects; the flow is computed once for the union of them
    fold_params = [_fold_params([i for i in gt_all if i.subject in set(groups[f.train].tolist())], config,
                                data.fps) for f in folds]
    feats, failed = _features(data, _feature_ks(config, [p for fp in fold_params for ps in fp.values() for p in ps]),
                              config, progress)
    excluded = list(data.gt.excluded)
    for video, reason in failed:
        excluded += [Exclusion(f"{i.dataset}/{i.subject}/{i.id}", f"video {video} not scored: {reason}")
                     for i in gt_all if i.video == video]
    bad_videos = {v for v, _ in failed}
    gt_used = [i for i in gt_all if i.video not in bad_videos]
    ctx = _Context(config, data, feats, get_spot_method(config.method), keys, groups, folds, fold_params)
    return ctx, excluded, gt_used


Curves = dict[tuple[str, str, str], np.ndarray]


def _run_folds(ctx: _Context, train_truth: list[Interval], gt_used: list[Interval]
               ) -> tuple[list[Spot], list[dict[str, Any]], Curves]:
    """Every fold: fit on its training subjects (with ``train_truth``), spot its test subject's videos."""
    config = ctx.config
    preds: list[Spot] = []
    fold_info = []
    curves_out: Curves = {}
    for f, params in zip(ctx.folds, ctx.fold_params, strict=True):
        train_keys = [ctx.keys[i] for i in f.train if ctx.keys[i] in ctx.feats]
        test_keys = [ctx.keys[i] for i in f.test if ctx.keys[i] in ctx.feats]
        train_subjects = set(ctx.groups[f.train].tolist())
        test_subjects = set(ctx.groups[f.test].tolist())
        truth = [i for i in train_truth if i.subject in train_subjects]
        info: dict[str, Any] = {"fold": f.name, "test_subjects": sorted(test_subjects), "types": {}}
        fold_spots: list[Spot] = []
        fold_margins: list[float] = []
        for t in config.types:
            found: list[list[Spot]] = []
            margin: list[list[float]] = []
            scale_info = []
            for si, p in enumerate(params[t]):
                model = ctx.fit(train_keys, truth, t, p.k)
                test_curves = [ctx.curve(key, model, p.k) for key in test_keys]
                halves = None
                if config.threshold == "test-peek":  # LEAKY on purpose: only to reproduce published numbers
                    th = fit_threshold(test_curves, [i for i in gt_used if i.subject in test_subjects], p)
                else:
                    train_curves, halves = _threshold_curves(ctx, model, train_keys, truth, t, p.k)
                    th = fit_threshold(train_curves, truth, p)
                fitted = TypeParams(t, p.k, p.before, p.after, th)
                scale_info.append(fitted.to_dict() | ({"threshold_fitted_on": halves} if halves else {}))
                found.append([])
                margin.append([])
                for c in test_curves:
                    spots = spots_of(c, fitted)
                    found[-1] += spots
                    margin[-1] += margins(c, spots, th)
                    if si == 0:  # the report draws the first scale's curve
                        curves_out[(c.video, t, "score")] = c.score
                        curves_out[(c.video, t, "threshold")] = np.array([th])
            merged, merged_margin = merge_scales(found, margin)
            fold_spots += merged
            fold_margins += merged_margin
            info["types"][t] = scale_info[0] | ({"scales": scale_info} if len(scale_info) > 1 else {})
        fold_spots = one_movement(fold_spots, fold_margins, config.overlap)
        if config.blinks == "spans":
            fold_spots = [s for key in test_keys for s in drop_lone_blinks(
                ctx.feats[key], [s for s in fold_spots if s.key == key], ctx.blink_k)]
        preds.extend(fold_spots)
        fold_info.append(info)
    return preds, fold_info, curves_out


def _control_metrics(ctx: _Context, gt_used: list[Interval], control_preds: list[Spot],
                     rng: np.random.Generator) -> dict[str, Any]:
    c = score(gt_used, control_preds)
    chance = prediction_control(gt_used, control_preds, ctx.data.gt.spans, c, ctx.config.types, rng)
    out = {**c.to_dict(), "kind": "shuffled training intervals", "chance": {t: v["f1"] for t, v in chance.items()}}
    if not ctx.method.trained:
        out["note"] = (f"{ctx.config.method.upper()} is training-free (only k, the interval shape and the threshold "
                       "are fitted): this control cannot reach chance; see shuffled_predictions")
    return out


def evaluate_spotting(config: SpotConfig, out: str | Path | None = None,
                      progress: Callable[[str], None] | None = None, recogniser: Any = None) -> SpotRun:
    """Run the protocol, score, and write the run directory when ``out`` is given. With ``config.recognise``
    (a recognition run directory; ``recogniser``: an already loaded predictor) every spotted interval is classified
    and STRS is scored; the recognition run must not have seen the test subjects (train it on another data set)."""
    config.validate()
    ctx, excluded, gt_used = _context(config, progress)
    data = ctx.data
    rng = np.random.default_rng(config.seed)
    preds, fold_info, curves = _run_folds(ctx, gt_used, gt_used)
    control_preds: list[Spot] = []
    if config.control == "shuffle":
        control_preds = _run_folds(ctx, shuffle_intervals(gt_used, data.gt.spans, rng), gt_used)[0]
    if config.recognise:
        preds = _recognise(data, preds, config.recognise if recogniser is None else recogniser)
    result = score(gt_used, preds)
    shuffled = prediction_control(gt_used, preds, data.gt.spans, result, config.types, rng)
    metrics: dict[str, Any] = {"task": "spot", "method": config.method, "protocol": config.protocol,
                               "threshold_policy": config.threshold, "leaky": config.threshold == "test-peek",
                               **result.to_dict(), "chance": {t: v["f1"] for t, v in shuffled.items()},
                               "shuffled_predictions": shuffled}
    if config.control == "shuffle":
        metrics["control"] = _control_metrics(ctx, gt_used, control_preds, rng)
    if config.recognise:
        from microexp.spot.metrics import strs

        metrics["strs"] = {t: strs(gt_used, preds, result, type=None if t == "overall" else t).to_dict()
                           for t in (*config.types, "overall")}
        metrics["recognition_run"] = config.recognise
    metrics["excluded"] = [asdict(e) for e in excluded]
    metrics["notes"] = list(data.gt.notes)
    metrics["gaps"] = {k[1]: [list(g) for g in f.gaps] for k, f in ctx.feats.items() if f.gaps}
    blinks = {k[1]: [b.to_dict() for b in blinks_of(f, ctx.blink_k)] for k, f in sorted(ctx.feats.items())}
    metrics["blinks"] = sum(len(v) for v in blinks.values())
    metrics["n_videos"] = len(ctx.feats)
    metrics["n_subjects"] = len(set(ctx.groups.tolist()))
    run = SpotRun(config, metrics, preds, control_preds, fold_info, blinks=blinks)
    if out is not None:
        run.out = write_run(run, Path(out), data, result, curves, ctx.feats)
        _save_final_models(run.out, ctx, gt_used)
    return run


def write_run(run: SpotRun, out: Path, data: SpotData, result: Any, curves: dict[tuple[str, str, str], np.ndarray],
              feats: dict[tuple[str, str], VideoFeatures]) -> Path:
    from microexp.fileio import write_atomic

    if (out / rundir.METRICS).exists():
        raise ConfigError(f"{out} already holds a run; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    rundir.write_config(out, {"task": "spot", **run.config.to_dict(), "fps": data.fps})
    rundir.write_metrics(out, run.metrics)
    write_atomic(out / rundir.megc_log(data.dataset), megc_log(result, data.dataset))
    if run.config.recognise:
        write_atomic(out / rundir.STR_CSV, str_csv(run.predictions))
    write_atomic(out / rundir.SPOT_PREDICTIONS, spots_json(run.predictions, folds=run.folds,
                                                      control=[asdict(p) for p in run.control_predictions],
                                                      blinks=run.blinks))
    arrays: dict[str, np.ndarray] = {}
    for (video, t, what), values in curves.items():
        arrays[f"{video}|{t}|{what}"] = np.asarray(values, np.float32)
    for key, f in feats.items():
        arrays[f"{key[1]}|numbers"] = f.numbers
    np.savez_compressed(out / rundir.CURVES, **arrays)
    gt_rows = [asdict(i) | {"meta": dict(i.meta)} for i in data.gt.intervals]
    write_atomic(out / rundir.GROUND_TRUTH, json.dumps({"intervals": gt_rows, "spans": {
        k[1]: list(v) for k, v in data.gt.spans.items()}}, indent=1))
    return out


def _save_final_models(out: Path, ctx: _Context, gt: list[Interval]) -> None:
    """The spotter fitted on every subject (k, interval shape, threshold and, for a trained method, its models),
    for spotting new videos: ``spotter.json`` (+ ``spotter.safetensors`` with the models' tensors)."""
    config, data, feats = ctx.config, ctx.data, ctx.feats
    params, scales, states = {}, {}, {}
    computed = set(next(iter(feats.values())).ks) if feats else set()
    keys = sorted(feats)
    for t in config.types:
        fitted = []
        for si, p in enumerate(_fold_params(gt, config, data.fps)[t]):
            if not _feature_ks(config, [p]) <= computed:
                # the all-subject k differs from every fold's: use the nearest computed one rather than recompute
                usable = [k for k in computed if _feature_ks(config, [TypeParams(t, k, 0, 0)]) <= computed]
                p = TypeParams(t, min(usable, key=lambda k: abs(k - p.k)), p.before, p.after)
            model = ctx.fit(keys, gt, t, p.k)
            state = ctx.method.state(model)
            if state is not None:
                states[scale_key(t, si)] = state
            curves = _threshold_curves(ctx, model, keys, gt, t, p.k)[0]
            th = fit_threshold(curves, gt, p)
            fitted.append(TypeParams(t, p.k, p.before, p.after, th).to_dict())
        params[t] = fitted[0]
        if len(fitted) > 1:
            scales[t] = fitted
    body = {"method": config.method, "dataset": data.dataset, "fps": data.fps, "types": params,
            "features": asdict(config.feature_config()), "blinks": config.blinks, "scales": scales,
            "long_events": config.long_events, "overlap": config.overlap}
    rundir.write_json(out / rundir.SPOTTER, body, indent=1)
    if states:
        rundir.save_checkpoint(out / rundir.SPOTTER_NETS, states)
