"""The web app's speed against the command line's: one analysis job of ``microexp serve`` (a recognition run and a
spotting run on an uploaded video, until its results are ready) timed against ``microexp predict`` plus
``microexp spot --recognise`` on the same video, each run as a user runs it (a fresh process).

The video is :func:`microexp.predict.bench.write_face_video`'s (640x480, 30 fps, a real face drifting slowly). The
runs are made first, untimed: a small STSTNet trained on synthetic face clips (the tests' run) and an MDMD spotting
run fitted on synthetic long videos; both find the face with dlib (``--face dlib``), as on footage of a whole
scene. ``microexp bench --app`` calls :func:`app_vs_cli`; the figure is ``ratio`` (app job / command line).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

FACE = "dlib"


def make_runs(root: Path, log: Callable[[str], None] = print) -> None:
    """``root/recognise`` (a trained recognition run) and ``root/spot`` (an MDMD spotting run)."""
    from microexp.config import RunConfig
    from microexp.spot.evaluate import SpotConfig, evaluate_spotting
    from microexp.synth import SynthConfig, generate, write_plain
    from microexp.synth.longvideo import LongVideoConfig, write_layout
    from microexp.train.evaluate import evaluate

    log("bench --app: training the recognition run (synthetic clips)")
    clips = generate(SynthConfig(n_subjects=4, clips_per_class=4, classes=("positive", "surprise", "neutral"),
                                 n_frames=24, seed=0, fps=30.0, size=(64, 64), intensity=2.5, blink=False))
    data = write_plain(clips, root.parent / "clips")
    evaluate(RunConfig(dataset="plain", root=str(data), protocol="holdout", test_size=0.25, model="ststnet",
                       preprocess={"flow": "farneback", "flow_size": 56},
                       train={"epochs": 20, "lr": 0.05, "momentum": 0.9, "batch_size": 8}),
             out=root / "recognise", progress=False, log=lambda _m: None)
    log("bench --app: fitting the spotting run (synthetic long videos)")
    long = LongVideoConfig(n_subjects=3, videos_per_subject=1, n_frames=240, fps=30.0, size=64, micro_per_video=1,
                           macro_per_video=1, seed=3)
    lv = write_layout("samm_lv", long, root.parent / "lv")
    evaluate_spotting(SpotConfig(dataset="samm_lv", root=str(lv), fps=long.fps, crop=48, face="none"),
                      out=root / "spot")


def _cli(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "microexp", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)
    return time.perf_counter() - start


def cli_seconds(video: Path, runs: Path) -> dict[str, float]:
    """``microexp predict`` and ``microexp spot --recognise`` on the video, each in a fresh process."""
    predict = _cli(["predict", video.name, "--run", str(runs / "recognise"), "--face", FACE, "--json", "-o",
                    "cli.json", "--no-progress"], video.parent)
    spot = _cli(["spot", video.name, "--run", str(runs / "spot"), "--recognise", str(runs / "recognise"),
                 "--face", FACE, "--json"], video.parent)
    return {"predict_s": predict, "spot_s": spot, "total_s": predict + spot}


class _Server:
    """``microexp serve`` as the command starts it, on a free loopback port."""

    def __init__(self, runs: Path, tmp: Path) -> None:
        self.log = open(tmp / "serve.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "microexp", "serve", "--runs", str(runs), "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     env={**os.environ, "TMPDIR": str(tmp)})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("microexp serve: http://"):
            raise RuntimeError(f"microexp serve did not start: {line!r}")
        self.url = line.split()[2].rstrip("/")

    def request(self, method: str, path: str, data: bytes | None = None) -> dict[str, Any]:
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"X-Microexp": "1", "Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read())

    def job_seconds(self, video: Path) -> tuple[float, dict[str, Any]]:
        """Upload to results: the time a user waits for the page's results."""
        query = urllib.parse.urlencode({"run": "recognise", "spot_run": "spot", "face": FACE, "name": video.name})
        start = time.perf_counter()
        job = self.request("POST", f"/api/jobs?{query}", video.read_bytes())
        while job["state"] not in ("done", "failed", "cancelled"):
            job = self.request("GET", f"/api/jobs/{job['id']}?wait=50")
        seconds = time.perf_counter() - start
        if job["state"] != "done":
            raise RuntimeError(f"the app's job {job['state']}: {job['message']}")
        return seconds, job

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=60)
        self.log.close()


def app_vs_cli(seconds: float = 40.0, repeats: int = 1, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The app's job time against the command line's (medians of ``repeats`` alternating runs, after one
    untimed job that starts the app's worker)."""
    from microexp.bench.stream import FPS, HEIGHT, WIDTH, write_face_video

    with tempfile.TemporaryDirectory(prefix="microexp-bench-app-") as d:
        tmp = Path(d)
        (tmp / "videos").mkdir()
        video = tmp / "videos" / "face.mp4"
        frames = write_face_video(video, seconds)
        warm = tmp / "videos" / "warm-up.mp4"
        write_face_video(warm, 2.0, seed=1)
        runs = tmp / "runs"
        make_runs(runs, log)
        server = _Server(runs, tmp)
        try:
            server.job_seconds(warm)
            cli, app = [], []
            for r in range(repeats):
                log(f"bench --app: round {r + 1}/{repeats}: command line")
                cli.append(cli_seconds(video, runs))
                log(f"bench --app: round {r + 1}/{repeats}: app")
                app.append(server.job_seconds(video)[0])
        finally:
            server.stop()
    cli_s = median(c["total_s"] for c in cli)
    app_s = median(app)
    return {"video": {"seconds": seconds, "frames": frames, "width": WIDTH, "height": HEIGHT, "fps": FPS},
            "face": FACE, "repeats": repeats, "cli_predict_s": median(c["predict_s"] for c in cli),
            "cli_spot_s": median(c["spot_s"] for c in cli), "cli_s": cli_s, "app_job_s": app_s,
            "ratio": app_s / cli_s, "rounds": {"cli": cli, "app": app}}


def summary(result: dict[str, Any]) -> str:
    v = result["video"]
    return (f"app vs command line on a {v['seconds']:g}-s {v['width']}x{v['height']} video ({v['frames']} frames, "
            f"--face {result['face']}, median of {result['repeats']}):\n"
            f"  microexp predict      {result['cli_predict_s']:8.1f} s\n"
            f"  microexp spot         {result['cli_spot_s']:8.1f} s\n"
            f"  command line, total   {result['cli_s']:8.1f} s\n"
            f"  app job (upload to results) {result['app_job_s']:8.1f} s\n"
            f"  ratio app / command line    {result['ratio']:8.2f}")
