"""The FastAPI application of ``microexp serve``: two pages (Analyse, Runs), their JSON API, and nothing from
outside (the page's only script library, plotly.js, is the copy inside the ``plotly`` Python package).

Three routers (pages, runs, jobs) over one :class:`ServeState` held by the app. Requests that start or stop work
(POST, DELETE) depend on :func:`require_header`: they must carry ``X-Microexp: 1``, which a web page from
another site cannot add without the browser asking first (CORS), so such a page cannot drive the local server.
Errors are microexp's own types, mapped to HTTP statuses in one place (:data:`STATUS`) and answered as one line
(``{"detail": ...}``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from microexp import runs as rundir
from microexp.contract.serve import JobOptions
from microexp.errors import ConfigError, MicroexpError
from microexp.serve.jobs import FINAL, Job, JobManager
from microexp.serve.runs import OutsideRunsError, RunNotFoundError, list_runs, resolve_run, run_summary

STATIC = Path(__file__).with_name("static")
DEFAULT_MAX_UPLOAD_MB = 512
RESULT_FILES = {"result.json": "application/json", "result.csv": "text/csv", "view.json": "application/json",
                "video.webm": "video/webm", "spots.json": "application/json", "spots.csv": "text/csv",
                "spot-intervals.json": "application/json"}
DOWNLOADS = {"result.json": ".json", "result.csv": ".csv", "spots.json": ".spots.json", "spots.csv": ".spots.csv"}
WAIT_LIMIT_S = 60.0  # the longest a request waits for a job's state to change


class JobNotFoundError(MicroexpError):
    """No job of that id (never made, or the server restarted)."""


class JobNotDoneError(MicroexpError):
    """The job has no results (yet, or it failed or was cancelled)."""


# microexp's errors as HTTP statuses: the first class an error is an instance of decides; other microexp errors
# are the request's fault (422)
STATUS: dict[type[MicroexpError], int] = {OutsideRunsError: 403, RunNotFoundError: 404, JobNotFoundError: 404,
                                          JobNotDoneError: 409, MicroexpError: 422}


@dataclass
class ServeState:
    """What the routes share: the runs folder, the upload limit, the jobs and the server's temporary folder."""

    runs: Path
    max_upload_mb: float
    plotly_js: Path
    workers: int
    tmp_root: Path | None
    tmp: Path = field(init=False)
    jobs: JobManager = field(init=False)

    def run_path(self, rel: str, need: str = rundir.METRICS) -> Path:
        return resolve_run(self.runs, rel, need)

    def job(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise JobNotFoundError(f"no job {job_id!r}")
        return job

    def done_job(self, job_id: str) -> Job:
        job = self.job(job_id)
        if job.state != "done":
            raise JobNotDoneError(f"job {job_id} is {job.state}: no results")
        return job


def state(request: Request) -> ServeState:
    return request.app.state.serve


def require_header(request: Request) -> None:
    if request.headers.get("x-microexp") != "1":
        raise HTTPException(403, "missing header X-Microexp: 1 (requests that start or stop work need it)")


State = Annotated[ServeState, Depends(state)]
GUARDED = [Depends(require_header)]


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


# ------------------------------------------------------------------------------------------------------ pages
pages = APIRouter()


@pages.get("/", response_class=HTMLResponse)
def analyse_page() -> FileResponse:
    return FileResponse(STATIC / "analyse.html")


@pages.get("/runs", response_class=HTMLResponse)
def runs_page() -> FileResponse:
    return FileResponse(STATIC / "runs.html")


@pages.get("/favicon.ico")
def favicon() -> Response:
    return Response(status_code=204)  # no icon: said once, so the browser does not log a 404 on every page


@pages.get("/vendor/plotly.min.js")
def plotly(s: State) -> FileResponse:
    return FileResponse(s.plotly_js, media_type="text/javascript")


# ------------------------------------------------------------------------------------------------------- runs
runs_api = APIRouter(prefix="/api")


@runs_api.get("/info")
def info(s: State) -> dict[str, Any]:
    return {"runs": str(s.runs.resolve()), "max_upload_mb": s.max_upload_mb, "spot": spot_available()}


@runs_api.get("/runs")
def all_runs(s: State) -> dict[str, Any]:
    found, broken = list_runs(s.runs)
    return {"runs": found, "unreadable": broken}


@runs_api.get("/run")
def one_run(s: State, run: str) -> dict[str, Any]:
    return run_summary(s.runs, run)


@runs_api.get("/report", response_class=HTMLResponse)
def report(s: State, run: str) -> HTMLResponse:
    from microexp.report.html import render_report

    path = s.run_path(run)
    out = s.tmp / "reports" / f"{hashlib.sha1(str(path).encode()).hexdigest()[:16]}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    render_report(path, out=out, saliency=0, log=lambda _m: None)
    return HTMLResponse(out.read_text(encoding="utf-8"))


@runs_api.get("/compare")
def compare(s: State, a: str, b: str) -> dict[str, Any]:
    from microexp.report.compare import compare_runs, compare_text

    c = compare_runs(s.run_path(a), s.run_path(b))
    c["a"], c["b"] = a, b  # the names the page uses, not the server's absolute paths
    return {**c, "text": compare_text(c)}


# ------------------------------------------------------------------------------------------------------- jobs
jobs_api = APIRouter(prefix="/api/jobs")


@jobs_api.post("", status_code=201, dependencies=GUARDED)
async def submit(request: Request, s: State, run: str, name: str = "", folder: str = "",
                 window: Annotated[int | None, Query(ge=1)] = None, stride: Annotated[int | None, Query(ge=1)] = None,
                 face: str | None = None, spot_run: str = "") -> dict[str, Any]:
    """A job on an uploaded video (the request body) or a frame folder on this machine. window / stride: frames
    (default: the run's); face: dlib, dlib-mmod or none (default: the run's)."""
    job_options = JobOptions(window=window, stride=stride, face=face)  # checked before any upload is read
    options = check_runs(s, run, spot_run)
    options.update(job_options.model_dump())
    job_id, job_dir = s.jobs.new_job_dir()
    try:
        if folder:
            path = Path(folder).expanduser()
            if not path.is_dir():
                raise ConfigError(f"{folder}: no such folder on this machine (give a folder of numbered frame "
                                  "images, or upload a video file)")
            job = Job(job_id, str(path), run, job_dir, path, uploaded=False, options=options)
        else:
            job = Job(job_id, _safe_name(name), run, job_dir, await _receive(request, job_dir / "input",
                                                                              _safe_name(name), s.max_upload_mb),
                      uploaded=True, options=options)
    except BaseException:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise
    return s.jobs.submit(job).to_dict()


def check_runs(s: ServeState, run: str, spot_run: str) -> dict[str, Any]:
    """The job's runs, checked before any upload is read: a recognition run with checkpoints, and a spotting run
    or none."""
    run_dir = s.run_path(run, need=rundir.CONFIG)
    if rundir.is_spotting_run(run_dir):
        raise ConfigError(f"run {run} is a spotting run (it has {rundir.SPOTTER}): choose it as the spotting run, "
                          "and a trained recognition run as the trained run")
    if not rundir.checkpoint_files(run_dir):
        raise ConfigError(f"run {run}: no checkpoints in it, so it cannot classify videos (was it made with "
                          "save_checkpoints: none, or is it a scikit-learn baseline?)")
    options: dict[str, Any] = {"run_dir": str(run_dir)}
    if spot_run:
        if not spot_available():
            raise ConfigError("spotting is not available in this microexp (no microexp.spot module)")
        spot_dir = s.run_path(spot_run, need=rundir.CONFIG)
        if not rundir.is_spotting_run(spot_dir):
            raise ConfigError(f"run {spot_run} is not a spotting run (no {rundir.SPOTTER}): choose one made by "
                              "microexp evaluate --task spot, or none")
        options["spot_run"], options["spot_run_dir"] = spot_run, str(spot_dir)
    return options


@jobs_api.get("")
def all_jobs(s: State) -> dict[str, Any]:
    return {"jobs": [j.to_dict() for j in sorted(s.jobs.jobs.values(), key=lambda j: j.created)]}


@jobs_api.get("/{job_id}")
async def job_status(s: State, job_id: str, wait: Annotated[float, Query(ge=0)] = 0,
                     until: Annotated[list[str] | None, Query()] = None) -> dict[str, Any]:
    """The job; ``wait`` > 0: answered once it is in one of the ``until`` states (default: finished), or after
    ``wait`` seconds (at most a minute) as it is then."""
    job = s.job(job_id)
    if wait:
        await run_in_threadpool(s.jobs.wait, job, tuple(until or FINAL), min(wait, WAIT_LIMIT_S))
    return job.to_dict()


@jobs_api.delete("/{job_id}", dependencies=GUARDED)
def cancel(s: State, job_id: str) -> dict[str, Any]:
    s.jobs.cancel(s.job(job_id).id)
    return s.job(job_id).to_dict()


@jobs_api.post("/{job_id}/saliency/{kind}/{index}", dependencies=GUARDED)
async def saliency(s: State, job_id: str, kind: Literal["interval", "spot"],
                   index: Annotated[int, PathParam(ge=0)]) -> dict[str, Any]:
    """Where the model looked in one interval of a finished job: made on the first request, then kept."""
    job = s.done_job(job_id)
    if not (job.result_dir / ("result.json" if kind == "interval" else "spot-intervals.json")).is_file():
        raise JobNotDoneError(f"job {job_id} has no {kind}s")
    return await run_in_threadpool(s.jobs.explain, job, kind, index)


@jobs_api.get("/{job_id}/files/{name}")
def job_file(s: State, job_id: str, name: str) -> Response:
    job = s.done_job(job_id)
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


# --------------------------------------------------------------------------------------------------- the app
async def microexp_error(_request: Request, exc: Exception) -> JSONResponse:
    status = next(code for cls, code in STATUS.items() if isinstance(exc, cls))
    return JSONResponse({"detail": str(exc)}, status_code=status)


async def http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)


async def invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's validation errors as one line naming the parameter and the value given."""
    assert isinstance(exc, RequestValidationError)
    lines = []
    for e in exc.errors():
        where = str(e["loc"][-1]) if e.get("loc") else "request"
        given = f" {e['input']!r}" if e.get("input") is not None else ""
        lines.append(f"{where}{given}: {e['msg'].lower()}")
    return JSONResponse({"detail": "; ".join(lines)}, status_code=422)


def create_app(runs: Path, *, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, workers: int = 1,
               allowed_hosts: list[str] | None = None, tmp_root: Path | None = None) -> FastAPI:
    """The app serving the run directories under ``runs``. Jobs' files go to a fresh temporary folder (under
    ``tmp_root``, default the system's), deleted when the app shuts down."""
    runs = Path(runs)
    if not runs.is_dir():
        raise ConfigError(f"--runs {runs}: no such folder")
    shared = ServeState(runs, max_upload_mb, _plotly_js(), workers, tmp_root)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        shared.tmp = Path(tempfile.mkdtemp(prefix="microexp-serve-", dir=tmp_root))
        shared.jobs = JobManager(shared.tmp / "jobs", workers)
        try:
            yield
        finally:
            shared.jobs.shutdown()
            shutil.rmtree(shared.tmp, ignore_errors=True)

    app = FastAPI(title="microexp serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.serve = shared
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or ["127.0.0.1", "localhost"])
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for router in (pages, runs_api, jobs_api):
        app.include_router(router)
    app.add_exception_handler(MicroexpError, microexp_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    return app


def _safe_name(name: str) -> str:
    """A file name to show and to save under: the last part, without odd characters."""
    base = Path(name.replace("\\", "/")).name
    clean = "".join(c if c.isalnum() or c in "._- " else "_" for c in base).strip(" .")
    return clean[:120] or "upload"


async def _receive(request: Request, folder: Path, name: str, limit_mb: float) -> Path:
    """The request body (the video's bytes) streamed to ``folder/name``, refused past the size limit."""
    limit = int(limit_mb * (1 << 20))
    too_big = f"upload larger than the limit of {limit_mb:g} MB (start the server with --max-upload-mb to change it)"
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise HTTPException(413, too_big)
    # kept under the user's file name: the job runs beside it, so results and messages name it as the user did;
    # whether the file is a video is decided by decoding it, not by its name
    folder.mkdir()
    path = folder / name
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
