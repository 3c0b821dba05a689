"""Leak-free spotting evaluation: per fold (LOSO by default) every choice — k, interval shape, threshold, the
network's weights — is fitted on the training subjects' videos only, then applied to the test subject's videos.
Predictions of all folds are pooled and scored against every ground-truth interval (:mod:`microexp.spot.metrics`).

``control="shuffle"`` runs the same pipeline a second time with the training intervals moved at random within
their videos; it must score near its chance level (the F1 of its own predictions moved at random).
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

from microexp import runs as rundir
from microexp.errors import ConfigError
from microexp.spot.data import SpotData, load_spot_data
from microexp.spot.detect import (
    Curve,
    TypeParams,
    chance_f1,
    fit_shape,
    fit_threshold,
    shuffle_intervals,
    spots_of,
)
from microexp.spot.features import FeatureConfig, VideoFeatures, extract_features
from microexp.spot.groundtruth import TYPES, Interval
from microexp.spot.methods import METHODS, LearnedSpotter, apex_target, mdmd_curve, net_inputs
from microexp.spot.metrics import Spot, score
from microexp.spot.outputs import megc_log, spots_json, str_csv

THRESHOLDS = {"train": "fitted on the training subjects of each fold",
              "test-peek": "LEAKY: threshold tuned on the test subject (reproduces published numbers only)"}


# features of a video folder, kept in-process: a control run or a second method reuses them
_CACHE: dict[tuple[Any, ...], VideoFeatures] = {}


@dataclass
class SpotConfig:
    dataset: str = "samm_lv"
    root: str = ""
    annotation: str | None = None
    method: str = "mdmd"
    protocol: str = "loso"
    folds: int = 5
    control: str = "none"  # none | shuffle
    threshold: str = "train"  # train | test-peek (leaky)
    epochs: int = 12
    seed: int = 0
    crop: int = 64
    grid: int = 6
    face: str = "dlib"
    fps: float | None = None  # None: the release's frame rate (SAMM-LV 200, CAS(ME)^2 and CAS(ME)^3 30)
    recognise: str | None = None  # a recognition run: classify every spotted interval, score STRS
    types: tuple[str, ...] = TYPES

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"spotting method {self.method!r}: expected one of {', '.join(METHODS)}")
        if self.protocol not in ("loso", "kfold"):
            raise ConfigError(f"spotting protocol {self.protocol!r}: expected loso or kfold")
        if self.control not in ("none", "shuffle"):
            raise ConfigError(f"control {self.control!r}: expected none or shuffle")
        if self.threshold not in THRESHOLDS:
            raise ConfigError(f"threshold {self.threshold!r}: expected {' or '.join(THRESHOLDS)}")
        for t in self.types:
            if t not in TYPES:
                raise ConfigError(f"expression type {t!r}: expected micro and/or macro")
        FeatureConfig(crop=self.crop, grid=self.grid, face=self.face).validate()

    def feature_config(self) -> FeatureConfig:
        return FeatureConfig(crop=self.crop, grid=self.grid, face=self.face)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["types"] = list(self.types)
        return d


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
    if config.fps is not None:
        if not config.fps > 0:
            raise ConfigError(f"fps {config.fps}: must be positive")
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
                if config.method == "mdmd":
                    def curve_of(key: tuple[str, str], k: int = p.k) -> Curve:
                        return _curve(data, key, feats[key], mdmd_curve(feats[key], k))
                else:
                    spotter = LearnedSpotter(p.k, epochs=config.epochs, seed=config.seed)
                    xs, ys = [], []
                    for key in train_keys:
                        x, ok = net_inputs(feats[key], p.k)
                        vid = [i for i in truth if i.key == key]
                        y = apex_target(feats[key].numbers, vid, t, p.k)
                        xs.append(x[ok])
                        ys.append(y[ok])
                    spotter.fit(xs, ys)

                    def curve_of(key: tuple[str, str], sp: LearnedSpotter = spotter, k: int = p.k) -> Curve:
                        x, ok = net_inputs(feats[key], k)
                        return _curve(data, key, feats[key], sp.predict(x, ok))
                train_curves = [curve_of(k) for k in train_keys]
                test_curves = [curve_of(k) for k in test_keys]
                if config.threshold == "test-peek":  # LEAKY on purpose: only to reproduce published numbers
                    th = fit_threshold(test_curves, [i for i in gt_used if i.subject in test_subjects], p)
                else:
                    th = fit_threshold(train_curves, truth, p)
                fitted = TypeParams(t, p.k, p.before, p.after, th)
                info["types"][t] = fitted.to_dict()
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
    metrics: dict[str, Any] = {"task": "spot", "method": config.method, "protocol": config.protocol,
                               "threshold_policy": config.threshold, "leaky": config.threshold == "test-peek",
                               **result.to_dict(),
                               "chance": {t: chance_f1(gt_used, preds, data.gt.spans, rng, type=t)
                                          for t in (*config.types, None)}}
    metrics["chance"] = {("overall" if k is None else k): v for k, v in metrics["chance"].items()}
    control_preds: list[Spot] = []
    if "control" in results:
        control_preds = results["control"][0]
        c = score(gt_used, control_preds)
        metrics["control"] = {**c.to_dict(), "chance": {
            ("overall" if t is None else t): chance_f1(gt_used, control_preds, data.gt.spans, rng, type=t)
            for t in (*config.types, None)}}
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
    write_atomic(out / f"megc_{data.dataset}.log", megc_log(result, data.dataset))
    if run.config.recognise:
        write_atomic(out / "str.csv", str_csv(run.predictions))
    write_atomic(out / "predictions.json", spots_json(run.predictions, folds=run.folds,
                                                      control=[asdict(p) for p in run.control_predictions]))
    arrays: dict[str, np.ndarray] = {}
    for (video, t, what), values in curves.items():
        arrays[f"{video}|{t}|{what}"] = np.asarray(values, np.float32)
    for key, f in feats.items():
        arrays[f"{key[1]}|numbers"] = f.numbers
    np.savez_compressed(out / "curves.npz", **arrays)
    gt_rows = [asdict(i) | {"meta": dict(i.meta)} for i in data.gt.intervals]
    write_atomic(out / "ground_truth.json", json.dumps({"intervals": gt_rows, "spans": {
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
            sp = LearnedSpotter(p.k, epochs=config.epochs, seed=config.seed)
            xs, ys = [], []
            for key, f in feats.items():
                x, ok = net_inputs(f, p.k)
                xs.append(x[ok])
                ys.append(apex_target(f.numbers, [i for i in gt if i.key == key], t, p.k)[ok])
            sp.fit(xs, ys)
            states[t] = sp.state()
            curves = [_curve(data, key, f, sp.predict(*net_inputs(f, p.k))) for key, f in feats.items()]
        else:
            curves = [_curve(data, key, f, mdmd_curve(f, p.k)) for key, f in feats.items()]
        th = fit_threshold(curves, gt, p)
        params[t] = TypeParams(t, p.k, p.before, p.after, th).to_dict()
    body = {"method": config.method, "dataset": data.dataset, "fps": data.fps, "types": params,
            "features": asdict(config.feature_config())}
    rundir.write_json(out / rundir.SPOTTER, body, indent=1)
    if states:
        rundir.save_checkpoint(out / rundir.SPOTTER_NETS, states)
