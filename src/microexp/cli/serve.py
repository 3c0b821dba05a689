"""``microexp serve``: the local web app (analyse a video, browse and compare runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from microexp.errors import ConfigError


def run(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401 - the serve extra, checked here for one clear line
        import plotly  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"the serve extra is not installed ({exc.name} missing): pip install 'microexp[serve]'") \
            from None
    from microexp.contract.serve import ServeOptions
    from microexp.serve.server import serve

    options = ServeOptions(runs=args.runs, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb,
                           workers=args.workers)
    serve(**options.to_dict(), announce=lambda line: print(line, flush=True))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="local web app: analyse a video, browse and compare runs",
                       description="Start a local web server (127.0.0.1 unless --host says otherwise) with two "
                                   "pages: Analyse (upload a video or name a frame folder, pick a trained run and "
                                   "a spotting run, see the spotted intervals on a timeline under the video, with "
                                   "the class probabilities beneath and an interval's saliency on a click, and "
                                   "download predict's and spot's JSON/CSV) and Runs (every run under "
                                   "--runs with its headline metrics, its report, and two runs compared). Nothing "
                                   "is loaded from the internet. Needs the serve extra: pip install "
                                   "'microexp[serve]'.")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="folder of run directories (default: runs)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; anything else is reachable from other machines "
                        "and prints a warning)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--max-upload-mb", type=float, default=512, help="largest video upload in MB (default 512)")
    p.add_argument("--workers", type=int, default=1,
                   help="analyses run at the same time (default 1; more wait in a queue)")
    p.set_defaults(func=run)
