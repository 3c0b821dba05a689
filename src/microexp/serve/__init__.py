"""``microexp serve``: a local web app over predict, spot, explain and the run reports.

Two pages: **Analyse** (upload a video or name a frame folder, pick a trained run and a spotting run; a background
job runs ``microexp.load(run).predict`` and the spotting run's ``Spotter.spot`` on it, and the page shows the video
above the spotted intervals, with the recognition run's class probabilities as a strip beneath; an interval is
explained with :func:`microexp.explain.explain_window` when it is clicked) and **Runs** (every run directory under
``--runs`` with its headline metrics, its HTML report, and two runs side by side as ``microexp compare`` prints
them). Everything is served from this machine; the server binds 127.0.0.1 unless told otherwise. Needs the
``serve`` extra (FastAPI, uvicorn, plotly).
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> Any:
    # lazy: the CLI imports this package without FastAPI's import cost until the command runs
    if name == "create_app":
        from microexp.serve.app import create_app

        return create_app
    if name == "serve":
        from microexp.serve.server import serve

        return serve
    raise AttributeError(f"module 'microexp.serve' has no attribute {name!r}")
