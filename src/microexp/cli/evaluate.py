"""``microexp evaluate``: train and score a model under a protocol, write a run directory."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from microexp.cli import add_dataset_option
from microexp.cli._executor import add_executor_options, executor_from_args
from microexp.config import EPOCH_POLICIES, PROTOCOL_HELP, PROTOCOLS, RunConfig
from microexp.errors import ConfigError


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Options shared by commands that run an evaluation."""
    p.add_argument("--model", help="model name (see `microexp models`; default stcnn)")
    p.add_argument("--protocol", choices=PROTOCOLS,
                   help="default loso; " + "; ".join(f"{k}: {v}" for k, v in PROTOCOL_HELP.items()))
    p.add_argument("--test-dataset", help="lodo: the target dataset (default: every dataset in turn)")
    p.add_argument("--train-datasets", help="lodo: comma-separated source datasets (default: all but the target), "
                   "e.g. --protocol lodo --train-datasets samm --test-dataset casme2")
    p.add_argument("--folds", type=int, help="number of folds for kfold (default 5)")
    p.add_argument("--epochs", type=int, help="training epochs (default 100)")
    p.add_argument("--batch-size", type=int, help="batch size (default 8)")
    p.add_argument("--optimizer", choices=["sgd", "adam"], help="sgd (default: the reference's lr 0.01, no momentum) | adam")
    p.add_argument("--lr", type=float, help="learning rate (default 0.01)")
    p.add_argument("--epoch-policy", choices=list(EPOCH_POLICIES),
                   help="fixed (default) | validation (subjects from the training fold) | test-peek (leaky)")
    p.add_argument("--seeds", type=int, help="repeat the protocol with seeds 0..N-1 (mean ± std)")
    p.add_argument("--control", choices=["none", "shuffle"],
                   help="shuffle: also train with labels permuted within subjects (must score at chance)")
    p.add_argument("--device", help="auto (default) | cpu | cuda | cuda:N")
    p.add_argument("--no-cache", action="store_true", help="do not read or fill the preprocessing cache")
    p.add_argument("--preprocess-workers", type=int, metavar="N",
                   help="processes for preprocessing (default: all cores when faces are detected, else 1)")
    p.add_argument("--frames", type=int, help="frames per clip after temporal normalisation (model default otherwise)")
    p.add_argument("--size", type=int, help="square crop size in pixels for every input stream (model default otherwise)")
    p.add_argument("--config", type=Path, help="run configuration YAML (e.g. a run's config.yaml)")
    p.add_argument("--recipe", metavar="NAME[:PROFILE]",
                   help="start from a seed recipe (see `microexp recipes`; profile paper (default) or code); options "
                        "and --set still override, and each change is recorded in config.yaml recipe.deviations")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any configuration key, e.g. --set preprocess.frames=32 --set train.momentum=0.9")
    p.add_argument("--out", type=Path, help="run directory (default runs/<dataset>-<model>-<protocol>-<time>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace, base: RunConfig | None = None) -> RunConfig:
    """The typed run configuration from ``--config``/``base``, the options and ``--set``; everything is checked
    here (types, ranges, the preprocessing, the device), before any data is read."""
    from microexp.train.evaluate import resolve_preprocess

    recipe = getattr(args, "recipe", None)
    if recipe and (getattr(args, "config", None) or base is not None):
        raise ConfigError(f"--recipe {recipe} starts from the recipe's configuration; give --recipe or "
                          f"{'--config' if getattr(args, 'config', None) else '--resume'}, not both")
    if recipe:
        from microexp import recipes

        base, _ = recipes.load(recipe)
    config = RunConfig.from_yaml(args.config) if getattr(args, "config", None) else (base or RunConfig())
    sets = []
    for flag, key in (("dataset", "dataset"), ("root", "root"), ("annotation", "annotation"), ("classes", "classes"),
                      ("model", "model"), ("protocol", "protocol"), ("folds", "folds"), ("control", "control"),
                      ("epochs", "train.epochs"), ("batch_size", "train.batch_size"),
                      ("optimizer", "train.optimizer"), ("lr", "train.lr"), ("epoch_policy", "train.epoch_policy"),
                      ("device", "train.device")):
        value = getattr(args, flag, None)
        if value is not None:  # as JSON (which is YAML): a path or a name is never re-read as YAML syntax
            sets.append(f"{key}={json.dumps(value, default=str)}")
    if getattr(args, "test_dataset", None):
        sets.append(f"test_dataset={json.dumps(args.test_dataset)}")
    if getattr(args, "train_datasets", None):
        sets.append(f"train_datasets={json.dumps([d.strip() for d in args.train_datasets.split(',') if d.strip()])}")
    if getattr(args, "seeds", None) is not None:
        if args.seeds < 1:
            raise ConfigError(f"--seeds={args.seeds} must be at least 1 (it runs seeds 0..N-1)")
        sets.append(f"seeds={list(range(args.seeds))}")
    if getattr(args, "no_cache", False):
        sets.append("cache=false")
    if getattr(args, "preprocess_workers", None) is not None:
        sets.append(f"preprocess_workers={args.preprocess_workers}")
    if getattr(args, "frames", None) is not None:
        sets.append(f"preprocess.frames={args.frames}")
    config = config.with_overrides(sets + list(args.overrides))
    if getattr(args, "size", None) is not None:
        if args.size < 1:
            raise ConfigError(f"--size={args.size} must be at least 1")
        streams = resolve_preprocess(config).to_dict()["streams"]
        config.preprocess["streams"] = [{**s, "size": [args.size, args.size]} for s in streams]
    resolve_preprocess(config)  # the model exists and its preprocessing with the overrides is valid
    config.train.check_device()
    if recipe:
        config.recipe = recipe_record(base, config)
    return config


def recipe_record(recipe_config: RunConfig, config: RunConfig) -> dict:
    """``config.yaml``'s ``recipe``: the recipe's name, version and profile, and every value the run changed."""
    from microexp import recipes
    from microexp.train.evaluate import resolve_preprocess

    def resolved(c: RunConfig) -> dict:
        return {**c.to_dict(), "preprocess": resolve_preprocess(c).to_dict()}

    assert recipe_config.recipe is not None
    return {**recipe_config.recipe, "deviations": recipes.deviations(resolved(recipe_config), resolved(config))}


def default_run_dir(config: RunConfig) -> Path:
    what = (f"{config.recipe['name']}-{config.recipe['profile']}" if config.recipe
            else f"{config.dataset}-{config.model}-{config.protocol}")
    return Path("runs") / f"{what}-{time.strftime('%Y%m%d-%H%M%S')}"


def run(args: argparse.Namespace) -> int:
    if args.task == "spot":  # spotting in long videos: microexp.spot
        from microexp.cli.spot import evaluate_from_args

        return evaluate_from_args(args)
    for flag in ("method", "recognise"):  # spotting options: refused rather than silently ignored
        if getattr(args, flag, None):
            raise ConfigError(f"--{flag} applies to --task spot only")
    if args.task == "au":
        return _run_au(args)
    if getattr(args, "au_min_positive", None) is not None or getattr(args, "au_no_pos_weight", False):
        raise ConfigError("--au-min-positive and --au-no-pos-weight apply to --task au only")
    from microexp import runs
    from microexp.report.text import results_table
    from microexp.train.evaluate import evaluate

    if args.resume is not None:
        # the run's own configuration; any flags given must leave it unchanged (checked by evaluate)
        if args.out is not None and args.out != args.resume:
            raise ConfigError(f"--resume {args.resume} and --out {args.out} name different run directories")
        saved = args.resume / runs.CONFIG
        if not saved.is_file():
            raise ConfigError(f"{args.resume}: nothing to resume (no config.yaml)")
        config = config_from_args(args, base=RunConfig.from_yaml(saved))
        with executor_from_args(args) as executor:
            result = evaluate(config, out=args.resume, progress=not args.no_progress, resume=True,
                              executor=executor)
        print(results_table(result.metrics))
        return 0
    config = config_from_args(args)
    out = args.out or default_run_dir(config)
    with executor_from_args(args) as executor:
        result = evaluate(config, out=out, progress=not args.no_progress, executor=executor)
    print(results_table(result.metrics))
    if config.recipe:
        from microexp.report.recipe import write_recipe_card

        path, text = write_recipe_card(out)
        print(f"\n{text}\nrecipe card written to {path}")
    return 0


def _run_au(args: argparse.Namespace) -> int:
    """``--task au``: multi-label AU detection (microexp.train.au)."""
    from microexp.train.au import AUTask, au_table, evaluate_au

    if args.resume is not None:
        raise ConfigError("--resume applies to recognition runs; rerun --task au into a new --out")
    config = config_from_args(args)
    task = AUTask(min_positive=5 if args.au_min_positive is None else args.au_min_positive,
                  pos_weight=not args.au_no_pos_weight)
    out = args.out or Path("runs") / f"{config.dataset.replace(',', '+')}-{config.model}-au-{config.protocol}-" \
                                     f"{time.strftime('%Y%m%d-%H%M%S')}"
    result = evaluate_au(config, task, out=out, progress=not args.no_progress)
    print(au_table(result.metrics))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="train and score a model under a protocol",
                       description="Train and score a model on a dataset under a leak-free protocol.")
    add_dataset_option(p)
    p.add_argument("--root", help="dataset root folder")
    p.add_argument("--annotation", help="annotation file (default: the one in the dataset's standard place)")
    p.add_argument("--classes", help="class protocol (default: the dataset's default)")
    p.add_argument("--task", choices=["recognise", "spot", "au"], default="recognise",
                   help="recognise (default) | spot: find expression intervals in long videos (samm_lv, casme_sq, "
                        "casme3) | au: multi-label action-unit detection (--dataset a,b --root A,B for --protocol "
                        "lodo over several datasets)")
    p.add_argument("--au-min-positive", type=int, metavar="N",
                   help="--task au: detect the AUs with at least N positive clips in each training fold (default 5)")
    p.add_argument("--au-no-pos-weight", action="store_true",
                   help="--task au: no positive-class weights in the binary cross-entropy")
    p.add_argument("--method", help="--task spot: a spotting method, mdmd (default, training-free) | learned")
    p.add_argument("--recognise", type=Path, metavar="RUN",
                   help="--task spot: classify every spotted interval with this recognition run and score STRS")
    add_run_options(p)
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue a killed run in RUN_DIR: finished folds (RUN_DIR/folds/*.json) are kept, the rest "
                        "run; refused if the configuration differs. An --out that already holds a run is refused "
                        "without --resume.")
    add_executor_options(p)
    p.set_defaults(func=run)
