"""The FastAPI application of ``microexp serve``: two pages (Analyse, Runs), their JSON API, and nothing from
outside (the page's only script library, plotly.js, is the copy inside the ``plotly`` Python package).

Requests that start or stop work (POST, DELETE) must carry the header ``X-Microexp: 1``: a web page from another
site cannot add it without the browser asking first (CORS), so such a page cannot drive the local server.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from microexp import runs as rundir
from microexp.errors import ConfigError, DataError
from microexp.serve.jobs import Job, JobManager
from microexp.serve.runs import OutsideRunsError, list_runs, resolve_run, run_summary

STATIC = Path(__file__).with_name("static")
DEFAULT_MAX_UPLOAD_MB = 512
RESULT_FILES = {"result.json": "application/json", "result.csv": "text/csv", "intervals.json": "application/json",
                "video.webm": "video/webm", "spots.json": "application/json", "spots.csv": "text/csv",
                "spot-intervals.json": "application/json"}
DOWNLOADS = {"result.json": ".json", "result.csv": ".csv", "spots.json": ".spots.json", "spots.csv": ".spots.csv"}
CHUNK = 1 << 20


def spot_available() -> bool:
    """Spotting runs are offered only where this microexp has the spotting module."""
    try:
        return importlib.util.find_spec("microexp.spot") is not None
    except (ImportError, ValueError):
        return False


def _plotly_js() -> Path:
    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        raise ConfigError("the serve extra is not installed (pip install 'microexp[serve]'): plotly is missing")
    return Path(spec.origin).parent / "package_data" / "plotly.min.js"


def create_app(runs: Path, *, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, workers: int = 1,
               allowed_hosts: list[str] | None = None, tmp_root: Path | None = None) -> FastAPI:
    """The app serving the run directories under ``runs``. Jobs' files go to a fresh temporary folder (under
    ``tmp_root``, default the system's), deleted when the app shuts down."""
    runs = Path(runs)
    if not runs.is_dir():
        raise ConfigError(f"--runs {runs}: no such folder")
    plotly_js = _plotly_js()
    limit = int(max_upload_mb * (1 << 20))
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state["tmp"] = Path(tempfile.mkdtemp(prefix="microexp-serve-", dir=tmp_root))
        state["jobs"] = JobManager(state["tmp"] / "jobs", workers)
        try:
            yield
        finally:
            state["jobs"].shutdown()
            shutil.rmtree(state["tmp"], ignore_errors=True)

    app = FastAPI(title="microexp serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or ["127.0.0.1", "localhost"])
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def jobs() -> JobManager:
        return state["jobs"]

    def guard(request: Request) -> None:
        if request.headers.get("x-microexp") != "1":
            raise HTTPException(403, "missing header X-Microexp: 1 (requests that start or stop work need it)")

    def run_path(rel: str, need: str = "metrics.json") -> Path:
        try:
            return resolve_run(runs, rel, need)
        except OutsideRunsError as exc:
            raise HTTPException(403, str(exc)) from None
        except DataError as exc:
            raise HTTPException(404, str(exc)) from None

    def job_or_404(job_id: str) -> Job:
        job = jobs().get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id!r}")
        return job

    # ---------------------------------------------------------------------------------------------- pages
    @app.get("/", response_class=HTMLResponse)
    def analyse_page() -> FileResponse:
        return FileResponse(STATIC / "analyse.html")

    @app.get("/runs", response_class=HTMLResponse)
    def runs_page() -> FileResponse:
        return FileResponse(STATIC / "runs.html")

    @app.get("/vendor/plotly.min.js")
    def plotly() -> FileResponse:
        return FileResponse(plotly_js, media_type="text/javascript")

    # ----------------------------------------------------------------------------------------------- runs
    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return {"runs": str(runs.resolve()), "max_upload_mb": max_upload_mb, "spot": spot_available()}

    @app.get("/api/runs")
    def all_runs() -> dict[str, Any]:
        found, broken = list_runs(runs)
        return {"runs": found, "unreadable": broken}

    @app.get("/api/run")
    def one_run(run: str) -> dict[str, Any]:
        run_path(run)
        try:
            return run_summary(runs, run)
        except DataError as exc:
            raise HTTPException(422, str(exc)) from None

    @app.get("/api/report", response_class=HTMLResponse)
    def report(run: str) -> HTMLResponse:
        from microexp.report.html import render_report

        path = run_path(run)
        out = state["tmp"] / "reports" / f"{hashlib.sha1(str(path).encode()).hexdigest()[:16]}.html"
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            render_report(path, out=out, saliency=0, log=lambda _m: None)
        except (ConfigError, DataError) as exc:
            raise HTTPException(422, str(exc)) from None
        return HTMLResponse(out.read_text(encoding="utf-8"))

    @app.get("/api/compare")
    def compare(a: str, b: str) -> dict[str, Any]:
        from microexp.report.compare import compare_runs, compare_text

        pa, pb = run_path(a), run_path(b)
        try:
            c = compare_runs(pa, pb)
        except (ConfigError, DataError) as exc:
            raise HTTPException(422, str(exc)) from None
        c["a"], c["b"] = a, b  # the names the page uses, not the server's absolute paths
        return {**c, "text": compare_text(c)}

    # ----------------------------------------------------------------------------------------------- jobs
    @app.post("/api/jobs", status_code=201)
    async def submit(request: Request, run: str, name: str = "", folder: str = "", window: str = "",
                     stride: str = "", face: str = "", spot_run: str = "") -> dict[str, Any]:
        guard(request)
        if face not in ("", "dlib", "none"):
            raise HTTPException(422, f"face {face!r}: give dlib (detect and crop faces) or none (frames are face "
                                     "crops), or leave it out (the run's default: faces detected)")
        run_dir = run_path(run, need="config.yaml")
        if rundir.is_spotting_run(run_dir):
            raise HTTPException(422, f"run {run} is a spotting run (it has spotter.json): choose it as the spotting "
                                     "run, and a trained recognition run as the trained run")
        if not rundir.checkpoint_files(run_dir):
            raise HTTPException(422, f"run {run}: no checkpoints in it, so it cannot classify videos "
                                     "(was it made with save_checkpoints: none, or is it a scikit-learn baseline?)")
        options: dict[str, Any] = {"run_dir": str(run_dir), "window": window or None, "stride": stride or None,
                                  "face": face or None}
        if spot_run:
            if not spot_available():
                raise HTTPException(422, "spotting is not available in this microexp (no microexp.spot module)")
            spot_dir = run_path(spot_run, need="config.yaml")
            if not rundir.is_spotting_run(spot_dir):
                raise HTTPException(422, f"run {spot_run} is not a spotting run (no spotter.json): choose one made "
                                         "by microexp evaluate --task spot, or none")
            options["spot_run"], options["spot_run_dir"] = spot_run, str(spot_dir)
        job_id, job_dir = jobs().new_job_dir()
        try:
            if folder:
                path = Path(folder).expanduser()
                if not path.is_dir():
                    raise HTTPException(422, f"{folder}: no such folder on this machine (give a folder of numbered "
                                             "frame images, or upload a video file)")
                job = Job(job_id, str(path), run, job_dir, path, uploaded=False, options=options)
            else:
                job = Job(job_id, _safe_name(name), run, job_dir, await _receive(request, job_dir, name, limit,
                                                                                  max_upload_mb),
                          uploaded=True, options=options)
        except BaseException:
            shutil.rmtree(job_dir, ignore_errors=True)
            raise
        return jobs().submit(job).to_dict()

    @app.get("/api/jobs")
    def all_jobs() -> dict[str, Any]:
        return {"jobs": [j.to_dict() for j in sorted(jobs().jobs.values(), key=lambda j: j.created)]}

    @app.get("/api/jobs/{job_id}")
    def job_status(job_id: str) -> dict[str, Any]:
        return job_or_404(job_id).to_dict()

    @app.delete("/api/jobs/{job_id}")
    def cancel(request: Request, job_id: str) -> dict[str, Any]:
        guard(request)
        job_or_404(job_id)
        job = jobs().cancel(job_id)
        assert job is not None
        return job.to_dict()

    @app.get("/api/jobs/{job_id}/files/{name}")
    def job_file(job_id: str, name: str) -> Response:
        job = job_or_404(job_id)
        if job.state != "done":
            raise HTTPException(409, f"job {job_id} is {job.state}: no results")
        media = RESULT_FILES.get(name) or ("image/png" if name.endswith(".png") else "image/gif"
                                           if name.endswith(".gif") else None)
        path = job.result_dir / name
        # names are file names the job itself wrote: no folders, nothing else
        if media is None or "/" in name or name.startswith(".") or not path.is_file():
            raise HTTPException(404, f"job {job_id} has no file {name!r}")
        stem = Path(job.name).stem or "result"
        headers = {"Content-Disposition": f'attachment; filename="{_safe_name(stem)}{DOWNLOADS[name]}"'} \
            if name in DOWNLOADS else None
        return FileResponse(path, media_type=media, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    return app


def _safe_name(name: str) -> str:
    """A file name to show and to save under: the last part, without odd characters."""
    base = Path(name.replace("\\", "/")).name
    clean = "".join(c if c.isalnum() or c in "._- " else "_" for c in base).strip(" .")
    return clean[:120] or "upload"


async def _receive(request: Request, job_dir: Path, name: str, limit: int, limit_mb: float) -> Path:
    """The request body (the video's bytes) streamed to the job folder, refused past the size limit."""
    too_big = f"upload larger than the limit of {limit_mb:g} MB (start the server with --max-upload-mb to change it)"
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise HTTPException(413, too_big)
    # the suffix only helps the decoder guess; whether the file is a video is decided by decoding it
    suffix = Path(name).suffix.lower()
    path = job_dir / f"upload{suffix if suffix[1:].isalnum() and len(suffix) <= 6 else '.bin'}"
    size = 0
    with open(path, "wb") as f:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, too_big)
            f.write(chunk)
    if size == 0:
        raise HTTPException(422, "empty upload (0 bytes): choose a video file")
    return path
