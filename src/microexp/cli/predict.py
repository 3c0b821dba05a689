"""``microexp predict``: classify a video or a frame folder with a trained run (or an exported ONNX model)."""

from __future__ import annotations

import argparse
from pathlib import Path

from microexp.contract.faces import FACE_MODES
from microexp.errors import ConfigError


def run(args: argparse.Namespace) -> int:
    import sys

    from microexp import precision as prec
    from microexp.fileio import check_output_file, output_errors
    from microexp.predict import check_options, load, load_onnx

    # every option checked before a model is loaded or a frame decoded
    check_options(args.window, args.stride, args.fps, args.min_prob, args.batch_size,
                  names={"window": "--window", "stride": "--stride", "fps": "--fps", "min_probability": "--min-prob",
                         "batch_size": "--batch-size"})
    if args.output is not None:
        check_output_file(args.output, "--output")
    precision_note = prec.check(args.precision, args.device, "--precision")
    if args.onnx is not None:
        if args.run is not None or args.fold is not None:
            raise ConfigError("--onnx runs the exported model alone; leave out --run and --fold")
        if args.precision != "fp32":
            raise ConfigError("--precision bf16 applies to PyTorch checkpoints (--run), not to --onnx")
        predictor = load_onnx(args.onnx, face=args.face)
    else:
        if args.run is None:
            raise ConfigError("give --run RUN_DIR (a run directory with checkpoints) or --onnx FILE")
        if args.fold is not None and args.ensemble:
            raise ConfigError("--fold and --ensemble exclude each other")
        predictor = load(args.run, fold=args.fold, device=args.device, face=args.face)
    prec.note_once(precision_note)
    # no weight-cast cache: an ensemble's members are built anew per batch, and cached casts would pile up
    with prec.autocast(args.precision, args.device, cache=False):
        result = predictor.predict(args.input, window=args.window, stride=args.stride, fps=args.fps,
                                   min_probability=args.min_prob, batch_size=args.batch_size,
                                   progress=not args.no_progress)
    text = result.to_json() if args.json else result.to_csv() if args.csv else result.table()
    if result.notes and (args.json or args.csv or args.output is not None):
        for note in result.notes:  # the table shows them; with JSON/CSV or a file they also go to stderr
            print(f"microexp predict: note: {note}", file=sys.stderr)
    if args.output is not None:
        with output_errors(args.output):
            args.output.write_text(text if text.endswith("\n") else text + "\n")
        print(f"{len(result.windows)} window(s), {len(result.segments)} segment(s), {len(result.gaps)} gap(s) "
              f"written to {args.output}")
    else:
        print(text.rstrip("\n"))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify a video or frame folder with a trained run",
                       description="Classify a video file (mp4/avi/mov...) or a folder of frames in sliding "
                                   "windows, preprocessing each window exactly as the run's training did "
                                   "(face detection included). Frames where no window could be classified "
                                   "(no face) are reported as gaps. By default every checkpoint of the run is "
                                   "used and their class probabilities averaged (a LOSO run: one model per "
                                   "fold); --fold picks one.")
    p.add_argument("input", type=Path, help="video file or folder of numbered frame images")
    p.add_argument("--run", type=Path, help="run directory written by `microexp evaluate` (with checkpoints/)")
    p.add_argument("--onnx", type=Path, help="an ONNX file written by `microexp export` instead of --run")
    p.add_argument("--fold", help="use this fold's checkpoint(s) only (fold name, e.g. sub01, or file stem)")
    p.add_argument("--ensemble", action="store_true",
                   help="average the probabilities of all checkpoints (the default; stated for clarity)")
    p.add_argument("--face", choices=FACE_MODES,
                   help="dlib = detect and crop the face (the default, also for a run trained on ready-made face "
                        "crops: frames without a face become gaps); dlib-mmod = the same, with dlib's CNN detector "
                        "where HOG and tracking lose the face (turned heads); none = the input frames are face "
                        "crops already, classify them as they are")
    p.add_argument("--window", help="window length: frames (24), ms (300ms) or s (0.3s); "
                                    "default: the training clips' median duration at the input's fps")
    p.add_argument("--stride", help="step between windows: frames, ms or s (default: a quarter window)")
    p.add_argument("--fps", type=float, help="frame rate, > 0 of the input (default: from the video; for a frame "
                                             "folder the training clips' rate)")
    p.add_argument("--min-prob", type=float, default=0.5,
                   help="a segment needs its class at or above this mean probability (default 0.5)")
    p.add_argument("--batch-size", type=int, default=16,
                   help="windows per model call (default 16): more is faster up to the CPU's cache, and memory "
                        "grows with it (one batch of windows is held at a time)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print windows, segments and gaps as JSON")
    fmt.add_argument("--csv", action="store_true", help="print one CSV row per window and per gap")
    p.add_argument("-o", "--output", type=Path, help="write the table / JSON / CSV to this file")
    p.add_argument("--device", default="cpu", help="cpu | cuda (PyTorch checkpoints only)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="fp32 (default) or bf16: the models' products in bfloat16 (autocast), fast on CPUs with "
                        "AVX-512 BF16 or AMX; elsewhere emulated (a note says so)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
