"""``microexp preprocess``: preprocess a dataset tree into the on-disk cache (the same pipeline ``evaluate`` and
``predict`` use), in parallel, resumable; prints what was computed, reused and excluded."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from microexp.cli import add_dataset_option
from microexp.errors import ConfigError

if TYPE_CHECKING:
    from microexp.preprocess.config import PreprocessConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("preprocess", help="preprocess a dataset into the cache (faces, crops, flow)",
                              description=__doc__)
    add_dataset_option(p, required=True)
    p.add_argument("--root", required=True, type=Path, help="dataset folder")
    p.add_argument("--annotation", type=Path, help="annotation file (default: the dataset's own)")
    p.add_argument("--classes", help="class protocol (default: the dataset's default)")
    p.add_argument("--config", type=Path, help="preprocessing YAML (a mapping, or one under a `preprocess:` key)")
    p.add_argument("--model", help="use this model's default preprocessing (overridden by --config keys)")
    p.add_argument("--cache", type=Path, help="cache folder (default: $MICROEXP_CACHE or ~/.cache/microexp/preprocess)")
    p.add_argument("--frames", type=int, help="frames per clip after temporal normalisation")
    p.add_argument("--size", type=int, help="square crop size in pixels for every stream")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a preprocessing key, e.g. --set face=dlib --set window=[2,12] (a `preprocess.` "
                        "prefix, as in `evaluate --set`, is accepted)")
    p.add_argument("--workers", "--preprocess-workers", dest="workers", type=int,
                   help="processes (default: all cores); `evaluate --preprocess-workers` is the same setting")
    p.add_argument("--out", type=Path, help="also save the arrays to this .npz (streams, index, clip keys)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def resolve_config(model: str | None, config: Path | None, frames: int | None = None, size: int | None = None,
                   overrides: list[str] | tuple[str, ...] = ()) -> PreprocessConfig:
    """The model's default preprocessing (or the defaults), the YAML file's keys, then ``--set KEY=VALUE``,
    ``--frames`` and ``--size`` on top; checked as a whole."""
    import yaml

    from microexp.contract.values import load_yaml
    from microexp.preprocess.config import PreprocessConfig

    base = PreprocessConfig()
    if model:
        from microexp.models.registry import get

        base = get(model).preprocess
    result = base if config is None else PreprocessConfig.from_yaml(config, base=base if model else None)
    d = result.to_dict()
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip().removeprefix("preprocess.")
        if not sep or not key:
            raise ConfigError(f"--set {item!r} is not KEY=VALUE")
        if "." in key:
            raise ConfigError(f"--set {item!r}: give a whole preprocessing key (e.g. streams=[...]), not {key!r}")
        try:
            d[key] = load_yaml(raw)
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML") from None
    if frames is not None:
        d["frames"] = frames
    if size is not None:
        if size < 1:
            raise ConfigError(f"--size={size} must be at least 1")
        d["streams"] = [{**s, "size": [size, size]} for s in d["streams"]]
    return PreprocessConfig.from_dict(d)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from microexp.data.registry import load_dataset
    from microexp.preprocess.cache import ClipCache, default_cache_dir
    from microexp.preprocess.pipeline import preprocess_set

    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers={args.workers} must be at least 1")
    config = resolve_config(args.model, args.config, args.frames, args.size, args.overrides)
    clips = load_dataset(args.dataset, args.root, args.annotation, args.classes)
    cache = ClipCache(args.cache or default_cache_dir())
    counts = {"cached": 0, "computed": 0, "excluded": 0}

    def note(_: int, what: str) -> None:
        counts[what] += 1

    t0 = time.perf_counter()
    prepared = preprocess_set(clips, config, progress=not args.no_progress, cache=cache, workers=args.workers,
                              on_result=note)
    seconds = time.perf_counter() - t0
    print(clips.summary())
    print(f"preprocessed {len(clips)} clips in {seconds:.1f} s: {counts['computed']} computed, "
          f"{counts['cached']} from cache, {len(prepared.excluded)} excluded; cache {cache.root}"
          + (f" ({cache.rebuilt} corrupt entries rebuilt)" if cache.rebuilt else ""))
    for name, arr in prepared.streams.items():
        print(f"  stream {name}: {tuple(arr.shape)} float32")
    for ex in prepared.excluded:
        print(f"  excluded {ex.clip}: {ex.reason}")
    if args.out:
        keys = np.array([clips.records[i].key for i in prepared.index])
        np.savez(args.out, index=prepared.index, keys=keys, **{f"stream_{k}": v for k, v in prepared.streams.items()})
        print(f"wrote {args.out}")
    return 0
