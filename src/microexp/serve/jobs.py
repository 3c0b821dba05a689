"""Background analysis jobs of ``microexp serve``.

Each job runs :func:`microexp.serve.analyse.run_job` in a process of its own (forked from a fresh forkserver,
so no state is shared between jobs and a cancelled job is simply terminated); ``workers`` jobs run at a time, the
others wait in submission order. Every job owns a folder under the server's temporary folder: its temporary files
are deleted when the job ends; its results (JSON, CSV, a playable copy of the video, saliency figures made when
the page asks for them) and, for a finished job, the uploaded file (the frames saliency explains are read from it)
stay until the server stops; the upload of a failed or cancelled job goes at once. :meth:`JobManager.shutdown`
deletes the whole folder. Waiting for a job is waiting on an event (:meth:`JobManager.wait`), not polling.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FINAL = ("done", "failed", "cancelled")


@dataclass
class Job:
    id: str
    name: str  # what the user gave: the uploaded file's name or the frame folder's path
    run: str  # run directory relative to --runs
    dir: Path  # the job's folder; results in dir/result
    input: Path
    uploaded: bool  # input is an uploaded file (in dir/input): deleted when the job fails or is cancelled
    options: dict[str, Any] = field(default_factory=dict)
    state: str = "queued"
    phase: str = "waiting for a free worker"
    progress: float = 0.0
    message: str = ""
    created: float = field(default_factory=time.time)
    process: Any = None
    cancel_requested: bool = False

    @property
    def result_dir(self) -> Path:
        return self.dir / "result"

    def refresh(self) -> None:
        """Phase and progress as the worker process last wrote them."""
        if self.state != "running":
            return
        try:
            p = json.loads((self.dir / "progress.json").read_text())
            self.phase, self.progress = str(p["phase"]), float(p["progress"])
        except (OSError, ValueError, KeyError):
            pass  # not written yet, or being replaced

    def to_dict(self) -> dict[str, Any]:
        self.refresh()
        return {"id": self.id, "name": self.name, "run": self.run, "state": self.state,
                "phase": self.state if self.state in FINAL else self.phase,
                "progress": round(self.progress, 4), "message": self.message, "created": self.created,
                "options": {k: v for k, v in self.options.items() if k in ("window", "stride", "face", "spot_run") and v}}


class JobManager:
    """Queue of analysis jobs run by ``workers`` threads, each driving one worker process at a time."""

    def __init__(self, root: Path, workers: int = 1) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.jobs: dict[str, Job] = {}
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified on every change of a job's state
        self._explaining: dict[tuple[str, str, int], threading.Lock] = {}
        self._ids = itertools.count(1)
        self._closed = False
        # forkserver: each job forks from a clean process that has torch and microexp imported already (seconds
        # saved per job), without inheriting the server's threads; nothing is shared between jobs
        self._context = multiprocessing.get_context("forkserver")
        from microexp.serve.analyse import PRELOAD

        self._context.set_forkserver_preload(PRELOAD)
        # start the forkserver now, in the background, rather than when the first job is waiting for it
        threading.Thread(target=self._warm_up, name="microexp-serve-warm-up", daemon=True).start()
        self._threads = [threading.Thread(target=self._work, name=f"microexp-serve-worker{i}", daemon=True)
                         for i in range(max(1, workers))]
        for t in self._threads:
            t.start()

    def _warm_up(self) -> None:
        try:
            p = self._context.Process(target=_nothing, daemon=True)
            p.start()
            p.join()
        except (OSError, RuntimeError):
            pass  # the first job starts it then

    def new_job_dir(self) -> tuple[str, Path]:
        """A fresh job id and its (created) folder, for the upload to be written into before :meth:`submit`."""
        with self._lock:
            job_id = f"job{next(self._ids)}"
        path = self.root / job_id
        path.mkdir()
        return job_id, path

    def submit(self, job: Job) -> Job:
        with self._lock:
            if self._closed:
                raise RuntimeError("the server is stopping")
            self.jobs[job.id] = job
        self._queue.put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def wait(self, job: Job, states: tuple[str, ...] = FINAL, timeout: float | None = None) -> bool:
        """Block until the job is in one of ``states`` (True) or ``timeout`` seconds passed (False)."""
        with self._changed:
            return self._changed.wait_for(lambda: job.state in states, timeout)

    def explain(self, job: Job, kind: str, index: int) -> dict[str, Any]:
        """The saliency entry of one interval of a finished job: made once, in a process of its own, then read
        from the job's results (several requests for the same interval wait for the one that makes it)."""
        out = job.result_dir / f"saliency-{kind}-{index}.json"
        with self._lock:
            lock = self._explaining.setdefault((job.id, kind, index), threading.Lock())
        with lock:
            if not out.is_file():
                from microexp.serve.analyse import explain_job

                work = job.dir / "explain"
                work.mkdir(exist_ok=True)
                spec = {"result": str(job.result_dir), "input": str(job.input), "uploaded": job.uploaded,
                        "run": job.options["run_dir"],
                        "face": job.options.get("face"), "kind": kind, "index": index, "work": str(work)}
                process = self._context.Process(target=explain_job, args=(spec,), name=f"microexp-{job.id}-explain",
                                                daemon=True)
                process.start()
                process.join()
                shutil.rmtree(work, ignore_errors=True)
                if not out.is_file():
                    return {"kind": kind, "index": index, "figure": None, "gif": None,
                            "note": f"no saliency: the explaining process ended unexpectedly (exit code "
                                    f"{process.exitcode})"}
            return json.loads(out.read_text())

    def cancel(self, job_id: str) -> Job | None:
        job = self.jobs.get(job_id)
        if job is None or job.state in FINAL:
            return job
        job.cancel_requested = True
        with self._lock:
            if job.state == "queued":
                self._finish(job, "cancelled", "cancelled before it started")
                return job
            process = job.process
        if process is not None:
            _stop(process)
        return job

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                if job.state != "queued" or self._closed:
                    continue
                job.state, job.phase = "running", "starting"
                self._changed.notify_all()
                from microexp.serve.analyse import run_job

                spec = {"dir": str(job.dir), "input": str(job.input), "uploaded": job.uploaded,
                        "run": job.options["run_dir"], "options": job.options}
                try:
                    job.process = self._context.Process(target=run_job, args=(spec,), name=f"microexp-{job.id}",
                                                        daemon=True)
                    job.process.start()
                except (OSError, RuntimeError, ValueError) as exc:
                    self._finish(job, "failed", f"could not start the analysis process: {exc}")
                    continue
            job.process.join()
            self._collect(job)

    def _collect(self, job: Job) -> None:
        status: dict[str, Any] = {}
        try:
            status = json.loads((job.dir / "status.json").read_text())
        except (OSError, ValueError):
            pass
        with self._lock:
            if job.cancel_requested:
                self._finish(job, "cancelled", "cancelled")
            elif status.get("state") == "done":
                self._finish(job, "done", status.get("message", ""))
            else:
                message = status.get("message") or f"the analysis process ended unexpectedly (exit code " \
                                                    f"{job.process.exitcode})"
                self._finish(job, "failed", message)

    def _finish(self, job: Job, state: str, message: str) -> None:
        # temporary files go as soon as the job ends; results (and a finished job's upload, which saliency
        # reads) stay until the server stops. Files first, state last: whoever sees the final state finds the
        # folder as it stays. Called with the lock held.
        shutil.rmtree(job.dir / "work", ignore_errors=True)
        if state != "done":
            if job.uploaded:
                shutil.rmtree(job.input.parent, ignore_errors=True)
            shutil.rmtree(job.result_dir, ignore_errors=True)
        job.refresh()
        job.process = None
        if state == "done":
            job.progress = 1.0
        job.phase, job.message = state, message
        job.state = state
        self._changed.notify_all()

    def shutdown(self) -> None:
        """Cancel every job, stop their processes and delete the server's temporary folder."""
        with self._lock:
            self._closed = True
            jobs = list(self.jobs.values())
        for job in jobs:
            self.cancel(job.id)
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


def _nothing() -> None:
    pass


def _stop(process: Any, grace: float = 5.0) -> None:
    process.terminate()
    process.join(grace)
    if process.is_alive():
        process.kill()
        process.join(grace)
