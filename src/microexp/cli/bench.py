"""``microexp bench``: training/inference throughput, preprocessing and spotting speed, memory and matmul peak."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from microexp.errors import ConfigError


def run(args: argparse.Namespace) -> int:
    from microexp.bench import run_bench, summary

    if args.repeats < 1:
        raise ConfigError(f"--repeats={args.repeats} must be >= 1")
    if args.retune:
        from microexp.fast import tune

        tune.retune()
    if args.vs_keras or args.goals:
        return _vs_keras(args)
    if args.app:
        from microexp.bench.app import app_vs_cli
        from microexp.bench.app import summary as app_summary

        result = app_vs_cli(seconds=4.0 if args.quick else 40.0, repeats=args.repeats,
                            log=(lambda m: None) if args.no_progress else (lambda m: print(m, flush=True)))
        return _emit(result, app_summary(result), args.json)
    if args.precision != "fp32":
        raise ConfigError("--precision applies to --vs-keras only (the bench itself times bf16 against fp32)")
    models = None
    if args.models is not None:
        from microexp.models import get

        models = [m.strip() for m in args.models.split(",") if m.strip()]
        if not models:
            raise ConfigError(f"--models={args.models!r} names no model (give comma-separated registered names)")
        for name in models:
            get(name)  # an unknown name: ConfigError listing the known ones, before anything is timed
    result = run_bench(repeats=args.repeats, warmup=args.warmup, quick=args.quick, threads=args.threads,
                       log=(lambda m: None) if args.no_progress else (lambda m: print(m, flush=True)),
                       models=models)
    return _emit(result, summary(result), args.json)


def _vs_keras(args: argparse.Namespace) -> int:
    from microexp.bench.keras import GOALS_MODELS, MODELS, run_vs_keras, summary

    models = tuple(m.strip() for m in args.models.split(",") if m.strip()) if args.models else \
        (GOALS_MODELS if args.goals else MODELS)
    if args.goals and args.precision != "fp32":
        raise ConfigError("--goals times fp32, bf16 and the plain layers itself; leave --precision out")
    result = run_vs_keras(models=models, quick=args.quick, repeats=args.repeats, warmup=args.warmup,
                          threads=args.threads, precision=args.precision,
                          log=(lambda m: None) if args.no_progress else (lambda m: print(m, flush=True)),
                          extra=("bf16", "plain") if args.goals else ())
    return _emit(result, summary(result), args.json)


def _emit(result: dict, text: str, json_path: str | None) -> int:
    print(text)
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2))
        print(f"written to {json_path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure training/inference speed, preprocessing speed and memory",
                       description="Time MicroExpSTCNN training steps and inference (naive and fast CPU path), "
                                   "every registered model (training, batch-8 and batch-1 inference, peak memory, "
                                   "fraction of its roofline), "
                                   "preprocessing, spotting on a long video, peak memory and the machine's fp32 matmul "
                                   "rate, in one run. "
                                   "Figures are medians of --repeats runs after --warmup runs.")
    p.add_argument("--json", type=Path, help="also write every figure and the machine's facts to this file")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per figure (default 5; the median is kept)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs first (default 2)")
    p.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    p.add_argument("--models", help="comma-separated registered models to time (default: every one; with "
                                    "--vs-keras: of stcnn, fusenet-intermediate, fusenet-late)")
    p.add_argument("--retune", action="store_true",
                   help="time the fast path's candidate implementations again instead of reusing the choices "
                        "cached for this machine (see MICROEXP_TUNE in docs/bench.md)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for tests (figures are not meaningful)")
    p.add_argument("--no-progress", action="store_true", help="no progress lines")
    p.add_argument("--vs-keras", action="store_true",
                   help="instead: STCNN and FuseNet in microexp and in Keras (benchmarks/keras_reference.py; needs "
                        "pip install -r benchmarks/requirements.txt), alternating, with each speed ratio")
    p.add_argument("--goals", action="store_true",
                   help="instead: issue #28's done-when figures in one alternated run: STCNN and "
                        "FuseNet-intermediate in microexp fp32, microexp bf16, the plain layers and Keras fp32 "
                        "(TensorFlow needed), each ratio with its spread and its goal")
    p.add_argument("--app", action="store_true",
                   help="instead: the web app's job time (microexp serve, a recognition and a spotting run) against "
                        "microexp predict + microexp spot on the same 40-s 640x480 video (--repeats rounds)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="microexp's precision in --vs-keras (default fp32; Keras runs fp32)")
    p.set_defaults(func=run)
