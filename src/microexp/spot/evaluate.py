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
:func:`microexp.spot.api.spot`).
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
from microexp.contract.spotting import THRESHOLDS, SpotRunConfig  # noqa: F401 - THRESHOLDS re-exported
from microexp.errors import ConfigError
from microexp.spot.data import SpotData, load_spot_data
from microexp.spot.detect import (
    Curve,
    TypeParams,
    chance_f1,
    fit_shape,
    fit_threshold,
    shuffle_intervals,
    shuffled_prediction_f1,
    spots_of,
)
from microexp.spot.features import FeatureConfig, VideoFeatures, extract_features
from microexp.spot.groundtruth import Interval
from microexp.spot.methods import METHODS, LearnedSpotter, apex_target, mdmd_curve, net_inputs
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
        if self.method not in METHODS:
            raise ConfigError(f"spotting method {self.method!r}: expected one of {', '.join(METHODS)}")
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


def _curve(data: SpotData, key: tuple[str, str], feat: VideoFeatures, values: np.ndarray) -> Curve:
    return Curve(data.dataset, data.videos[key][0], key[1], feat.numbers, values)


def _fold_params(train_gt: list[Interval], types: tuple[str, ...], fps: float) -> dict[str, TypeParams]:
    return {t: fit_shape(train_gt, t, fps) for t in types}


def _fit_spotter(data: SpotData, feats: dict[tuple[str, str], VideoFeatures], keys: list[tuple[str, str]],
                 truth: list[Interval], type: str, k: int, config: SpotConfig) -> LearnedSpotter:
    spotter = LearnedSpotter(k, epochs=config.epochs, seed=config.seed)
    xs, ys = [], []
    for key in keys:
        x, ok = net_inputs(feats[key], k)
        y = apex_target(feats[key].numbers, [i for i in truth if i.key == key], type, k)
        xs.append(x[ok])
        ys.append(y[ok])
    return spotter.fit(xs, ys)


def _learned_curve(data: SpotData, key: tuple[str, str], feat: VideoFeatures, spotter: LearnedSpotter) -> Curve:
    return _curve(data, key, feat, spotter.predict(*net_inputs(feat, spotter.k)))


def inner_halves(subjects: set[str], seed: int) -> list[list[str]] | None:
    """Two seeded halves of the training subjects (None when there are fewer than two)."""
    ordered = sorted(subjects)
    if len(ordered) < 2:
        return None
    perm = np.random.default_rng(seed).permutation(len(ordered))
    shuffled = [ordered[i] for i in perm]
    return [sorted(shuffled[0::2]), sorted(shuffled[1::2])]


def _out_of_fold_curves(data: SpotData, feats: dict[tuple[str, str], VideoFeatures], keys: list[tuple[str, str]],
                        truth: list[Interval], type: str, k: int, config: SpotConfig
                        ) -> tuple[list[Curve], list[list[str]] | None]:
    """The learned spotter's curves of the training videos, each from a network that did not train on its
    subject (inner 2-fold split of the training subjects); in-sample curves when there is one subject only."""
    halves = inner_halves({data.videos[key][0] for key in keys}, config.seed)
    if halves is None:
        sp = _fit_spotter(data, feats, keys, truth, type, k, config)
        return [_learned_curve(data, key, feats[key], sp) for key in keys], None
    curves = []
    for held in halves:
        fit_keys = [key for key in keys if data.videos[key][0] not in held]
        sp = _fit_spotter(data, feats, fit_keys, truth, type, k, config)
        curves += [_learned_curve(data, key, feats[key], sp) for key in keys if data.videos[key][0] in held]
    return curves, halves


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
    from microexp.spot.api import recognise_spots

    if isinstance(recogniser, str | Path):
        from microexp.predict import load as load_predictor

        recogniser = load_predictor(recogniser)
    out = []
    for key in sorted({p.key for p in preds}):
        mine = [p for p in preds if p.key == key]
        out += recognise_spots(data.videos[key][1], mine, recogniser, data.fps)
    return out


def evaluate_spotting(config: SpotConfig, out: str | Path | None = None,
                      progress: Callable[[str], None] | None = None, recogniser: Any = None) -> SpotRun:
    """Run the protocol, score, and write the run directory when ``out`` is given. With ``config.recognise``
    (a recognition run directory; ``recogniser``: an already loaded predictor) every spotted interval is classified
    and STRS is scored; the recognition run must not have seen the test subjects (train it on another data set)."""
    from microexp.train.protocols import make_folds

    config.validate()
    data = load_spot_data(config.dataset, config.root, config.annotation)
    if config.fps is not None:  # checked (positive) when the configuration was built
        data.fps = float(config.fps)
    keys = sorted(data.videos)
    groups = np.array([data.videos[k][0] for k in keys], dtype=object)
    folds = make_folds(config.protocol, np.zeros(len(keys), np.int64), groups, seed=config.seed,
                       n_splits=config.folds)
    gt_all = data.gt.intervals
    # every fold's k is fitted on its training subjects; the flow is computed once for the union of them
    fold_params = []
    for f in folds:
        train_subjects = set(groups[f.train].tolist())
        fold_params.append(_fold_params([i for i in gt_all if i.subject in train_subjects], config.types, data.fps))
    ks = {p.k for fp in fold_params for p in fp.values()}
    feats, failed = _features(data, ks, config, progress)
    from microexp.data.records import Exclusion

    excluded = list(data.gt.excluded)
    for video, reason in failed:
        excluded += [Exclusion(f"{i.dataset}/{i.subject}/{i.id}", f"video {video} not scored: {reason}")
                     for i in gt_all if i.video == video]
    bad_videos = {v for v, _ in failed}
    gt_used = [i for i in gt_all if i.video not in bad_videos]
    rng = np.random.default_rng(config.seed)
    runs = [("main", gt_used)]
    if config.control == "shuffle":
        runs.append(("control", shuffle_intervals(gt_used, data.gt.spans, rng)))
    results: dict[str, tuple[list[Spot], list[dict[str, Any]], dict[tuple[str, str, str], np.ndarray]]] = {}
    for name, train_truth in runs:
        preds: list[Spot] = []
        fold_info = []
        curves_out: dict[tuple[str, str, str], np.ndarray] = {}
        for f, params in zip(folds, fold_params, strict=True):
            train_keys = [keys[i] for i in f.train if keys[i] in feats]
            test_keys = [keys[i] for i in f.test if keys[i] in feats]
            train_subjects = set(groups[f.train].tolist())
            test_subjects = set(groups[f.test].tolist())
            truth = [i for i in train_truth if i.subject in train_subjects]
            info: dict[str, Any] = {"fold": f.name, "test_subjects": sorted(test_subjects), "types": {}}
            for t in config.types:
                p = params[t]
                halves = None
                if config.method == "mdmd":
                    def curve_of(key: tuple[str, str], k: int = p.k) -> Curve:
                        return _curve(data, key, feats[key], mdmd_curve(feats[key], k))
                    test_curves = [curve_of(k) for k in test_keys]
                    if config.threshold != "test-peek":
                        train_curves = [curve_of(k) for k in train_keys]
                else:
                    spotter = _fit_spotter(data, feats, train_keys, truth, t, p.k, config)
                    test_curves = [_learned_curve(data, k, feats[k], spotter) for k in test_keys]
                    if config.threshold == "in-sample":
                        train_curves = [_learned_curve(data, k, feats[k], spotter) for k in train_keys]
                    elif config.threshold != "test-peek":
                        train_curves, halves = _out_of_fold_curves(data, feats, train_keys, truth, t, p.k, config)
                if config.threshold == "test-peek":  # LEAKY on purpose: only to reproduce published numbers
                    th = fit_threshold(test_curves, [i for i in gt_used if i.subject in test_subjects], p)
                else:
                    th = fit_threshold(train_curves, truth, p)
                fitted = TypeParams(t, p.k, p.before, p.after, th)
                info["types"][t] = fitted.to_dict() | ({"threshold_fitted_on": halves} if halves else {})
                for c in test_curves:
                    preds.extend(spots_of(c, fitted))
                    curves_out[(c.video, t, "score")] = c.score
                    curves_out[(c.video, t, "threshold")] = np.array([th])
            fold_info.append(info)
        results[name] = (preds, fold_info, curves_out)
    preds, fold_info, curves = results["main"]
    if config.recognise:
        preds = _recognise(data, preds, config.recognise if recogniser is None else recogniser)
    result = score(gt_used, preds)
    shuffled = prediction_control(gt_used, preds, data.gt.spans, result, config.types, rng)
    metrics: dict[str, Any] = {"task": "spot", "method": config.method, "protocol": config.protocol,
                               "threshold_policy": config.threshold, "leaky": config.threshold == "test-peek",
                               **result.to_dict(), "chance": {t: v["f1"] for t, v in shuffled.items()},
                               "shuffled_predictions": shuffled}
    control_preds: list[Spot] = []
    if "control" in results:
        control_preds = results["control"][0]
        c = score(gt_used, control_preds)
        metrics["control"] = {**c.to_dict(), "kind": "shuffled training intervals", "chance": {
            ("overall" if t is None else t): chance_f1(gt_used, control_preds, data.gt.spans, rng, type=t)
            for t in (*config.types, None)}}
        if config.method == "mdmd":
            metrics["control"]["note"] = ("MDMD is training-free (only k, the interval shape and the threshold are "
                                          "fitted): this control cannot reach chance; see shuffled_predictions")
    if config.recognise:
        from microexp.spot.metrics import strs

        metrics["strs"] = {t: strs(gt_used, preds, result, type=None if t == "overall" else t).to_dict()
                           for t in (*config.types, "overall")}
        metrics["recognition_run"] = config.recognise
    metrics["excluded"] = [asdict(e) for e in excluded]
    metrics["notes"] = list(data.gt.notes)
    metrics["gaps"] = {k[1]: [list(g) for g in f.gaps] for k, f in feats.items() if f.gaps}
    metrics["n_videos"] = len(feats)
    metrics["n_subjects"] = len(set(groups.tolist()))
    run = SpotRun(config, metrics, preds, control_preds, fold_info)
    if out is not None:
        run.out = write_run(run, Path(out), data, result, curves, feats)
        _save_final_models(run.out, data, feats, gt_used, config)
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
                                                      control=[asdict(p) for p in run.control_predictions]))
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


def _save_final_models(out: Path, data: SpotData, feats: dict[tuple[str, str], VideoFeatures],
                       gt: list[Interval], config: SpotConfig) -> None:
    """The spotter fitted on every subject (k, interval shape, threshold and, when learned, the network), for
    spotting new videos: ``spotter.json`` (+ ``spotter.safetensors`` with the networks)."""

    params, states = {}, {}
    computed = set(next(iter(feats.values())).ks) if feats else set()
    for t in config.types:
        p = fit_shape(gt, t, data.fps)
        if p.k not in computed:
            # the all-subject k differs from every fold's: use the nearest computed one rather than recompute
            p = TypeParams(t, min(computed, key=lambda k: abs(k - p.k)), p.before, p.after)
        if config.method == "learned":
            keys = sorted(feats)
            sp = _fit_spotter(data, feats, keys, gt, t, p.k, config)
            states[t] = sp.state()
            curves = [_learned_curve(data, key, feats[key], sp) for key in keys] if config.threshold == "in-sample" \
                else _out_of_fold_curves(data, feats, keys, gt, t, p.k, config)[0]
        else:
            curves = [_curve(data, key, f, mdmd_curve(f, p.k)) for key, f in feats.items()]
        th = fit_threshold(curves, gt, p)
        params[t] = TypeParams(t, p.k, p.before, p.after, th).to_dict()
    body = {"method": config.method, "dataset": data.dataset, "fps": data.fps, "types": params,
            "features": asdict(config.feature_config())}
    rundir.write_json(out / rundir.SPOTTER, body, indent=1)
    if states:
        rundir.save_checkpoint(out / rundir.SPOTTER_NETS, states)
