"""``microexp spot VIDEO --run RUN [--recognise RUN2] [--json|--csv]``: spot micro- and macro-expressions in a long
video with a spotting run (made by ``microexp evaluate --task spot``); ``microexp evaluate --task spot`` dispatches
to :func:`evaluate_from_args` here."""

from __future__ import annotations

import argparse
from pathlib import Path

from microexp.contract.faces import FACE_HELP, FACE_MODES
from microexp.errors import ConfigError


def run(args: argparse.Namespace) -> int:
    from microexp.spot.api import Spotter

    spotter = Spotter.load(args.run)
    result = spotter.spot(args.video, fps=args.fps, recognise=args.recognise, subject=args.subject or "",
                          face=args.face, fps_name="--fps")
    if args.json:
        print(result.to_json())
    elif args.csv:
        print(result.to_csv(), end="")
    else:
        print(result.table())
    return 0


def evaluate_from_args(args: argparse.Namespace) -> int:
    """``microexp evaluate --task spot``: the spotting protocol (microexp.spot.evaluate) from evaluate's flags."""
    import time

    from microexp.contract.values import coerce_value
    from microexp.spot.evaluate import SpotConfig, evaluate_spotting

    if not args.dataset or not args.root:
        raise ConfigError("--task spot needs --dataset (samm_lv | casme_sq | casme3) and --root")
    for flag in ("model", "classes", "resume", "seeds", "test_dataset", "train_datasets", "frames", "size"):
        if getattr(args, flag, None):
            raise ConfigError(f"--{flag.replace('_', '-')} does not apply to --task spot")
    policy = getattr(args, "epoch_policy", None)
    extra: dict[str, object] = {}
    for item in getattr(args, "overrides", []) or []:  # --set fps=30 | face=none | recognise=RUN2 | ...
        key, _, value = item.partition("=")
        if key not in SpotConfig.SETTABLE or not value:
            raise ConfigError(f"--set {item!r}: with --task spot, KEY is one of {', '.join(SpotConfig.SETTABLE)}")
        try:  # typed by the configuration's own field
            extra[key] = coerce_value(value, SpotConfig.model_fields[key].annotation, key)
        except ConfigError as exc:
            raise ConfigError(f"--set {item!r}: {exc}") from None
    if extra.get("threshold") == "test-peek":
        raise ConfigError("--set threshold=test-peek: use --epoch-policy test-peek (the leaky switch, named)")
    if getattr(args, "recognise", None):
        if "recognise" in extra and extra["recognise"] != str(args.recognise):
            raise ConfigError("--recognise and --set recognise=... name different runs; give one")
        extra["recognise"] = str(args.recognise)
    config = SpotConfig(**{"dataset": args.dataset, "root": str(args.root), "annotation": args.annotation,
                           "method": args.method or "mdmd", "protocol": args.protocol or "loso",
                           "folds": args.folds or 5, "control": args.control or "none",
                           "threshold": "test-peek" if policy == "test-peek" else "train",
                           "epochs": args.epochs or 12, **extra})
    if config.recognise and not Path(config.recognise).is_dir():
        raise ConfigError(f"--recognise {config.recognise}: no such run directory")
    out = args.out or Path("runs") / f"{config.dataset}-spot-{config.method}-{config.protocol}-" \
                                     f"{time.strftime('%Y%m%d-%H%M%S')}"
    run_ = evaluate_spotting(config, out=out, progress=None if args.no_progress else
                             (lambda v: print(f"features: {v}", flush=True)))
    m = run_.metrics
    print(f"spotting {config.dataset} {config.method} {config.protocol}"
          + (" [LEAKY: threshold tuned on the test subject]" if m["leaky"] else ""))
    for t in ("micro", "macro", "overall"):
        c = m["overall"][t]
        line = f"  {t:<8} F1 {c['f1']:.4f} (P {c['precision']:.4f} R {c['recall']:.4f}; TP {c['tp']} FP {c['fp']} " \
               f"FN {c['fn']}); chance {m['chance'][t]:.4f}"
        s = m["shuffled_predictions"][t]
        line += f"; shuffled predictions {s['f1']:.4f} (p {s['p_value']:.3f})"
        if "control" in m:
            line += f"; shuffled training {m['control']['overall'][t]['f1']:.4f}"
        print(line)
    if "strs" in m:
        print("  STRS " + ", ".join(f"{t} {m['strs'][t]['strs']:.4f}" for t in ("micro", "macro", "overall")
                                    if t in m["strs"]) + f" (recognition run {m['recognition_run']})")
    if m["excluded"]:
        print(f"  {len(m['excluded'])} interval(s) excluded (metrics.json lists each with its reason)")
    print(f"run written to {run_.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spot", help="spot micro-/macro-expressions in a long video with a spotting run",
                       description="Find where in a long video micro- and macro-expressions happen (streamed, "
                                   "memory bounded by the window), optionally classify each spotted interval "
                                   "with a recognition run.")
    p.add_argument("video", type=Path, metavar="VIDEO", help="video file or folder of numbered frames")
    p.add_argument("--run", type=Path, required=True, help="spotting run directory (microexp evaluate --task spot)")
    p.add_argument("--recognise", type=Path, metavar="RUN2", help="recognition run to classify each interval")
    p.add_argument("--fps", type=float, help="frame rate, > 0 (default: the video's, else the run's)")
    p.add_argument("--subject", help="subject name for the CSV")
    p.add_argument("--face", choices=FACE_MODES, help=FACE_HELP)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="microexp's JSON")
    g.add_argument("--csv", action="store_true", help="the spot-then-recognise CSV (subject,video,onset,offset,emotion)")
    p.set_defaults(func=run)
