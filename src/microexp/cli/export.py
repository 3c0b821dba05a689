"""``microexp export``: write a run's model (one fold, or the mean of all folds) as an ONNX file."""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from microexp.errors import ConfigError
    from microexp.predict import ONNX_OPSET, export_onnx
    from microexp.predict.onnx import MAX_OPSET, MIN_OPSET

    if args.opset is not None and not MIN_OPSET <= args.opset <= MAX_OPSET:
        raise ConfigError(f"--opset {args.opset}: an ONNX opset between {MIN_OPSET} and {MAX_OPSET}")
    out = export_onnx(args.run, args.onnx, fold=args.fold, opset=ONNX_OPSET if args.opset is None else args.opset)
    print(f"exported {args.run} ({'fold ' + args.fold if args.fold else 'all checkpoints averaged'}) to {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a trained run to ONNX",
                       description="Export a run's model to ONNX: inputs are the preprocessed streams, the output "
                                   "class probabilities; the preprocessing config and classes are stored in the "
                                   "ONNX metadata so `microexp predict --onnx FILE` needs nothing else. Without "
                                   "--fold all checkpoints are exported as one averaging graph.")
    p.add_argument("run", type=Path, help="run directory written by `microexp evaluate`")
    p.add_argument("--onnx", type=Path, required=True, help="output .onnx file")
    p.add_argument("--fold", help="export this fold's checkpoint(s) only (fold name or checkpoint file stem)")
    p.add_argument("--opset", type=int, help="ONNX opset (default 17)")
    p.set_defaults(func=run)
