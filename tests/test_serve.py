"""``microexp serve`` end to end: the server runs as the CLI starts it (a subprocess on a free loopback port) and
Debian's chromium, driven by Playwright's Python API (its own driver, no browser download), uploads a synthetic
video with known micro-expressions, follows the job and reads the timeline; the Runs page is checked against
the runs' metrics.json; a spotting run made on synthetic long videos spots a known micro-expression through the
page. Screenshots of every page go to the test's folder and to /tmp/serve-shots/."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from conftest import tiny_config
from microexp.cli import main
from microexp.errors import ConfigError, DataError
from microexp.serve.runs import OutsideRunsError, find_runs, resolve_run
from microexp.spot.evaluate import SpotConfig, evaluate_spotting
from microexp.synth import load_faces, render_clip
from microexp.synth.longvideo import LongVideoConfig, events_of, write_layout
from microexp.train.evaluate import evaluate
from test_predict_synth import RENDER, synth_run  # noqa: F401 - the one tiny trained run, reused

SHOTS = Path("/tmp/serve-shots")
ROOT = Path(__file__).resolve().parents[1]
FPS = RENDER["fps"]
# the video: neutral, a smile (AU6+12, onset frame 19, offset 29), neutral, a brow raise (AU1+2, onset 67, offset 77)
EVENTS = (("positive", 19, 29), ("surprise", 67, 77))


def write_video(path: Path, frames: np.ndarray, fps: float = FPS) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frames.shape[2], frames.shape[1]))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR) if f.ndim == 2 else cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def event_frames(order: tuple[str, str] = ("6+12", "1+2")) -> np.ndarray:
    face = load_faces(5)[4]  # a face none of the training subjects has
    parts = [render_clip(face, aus, n_frames=48, onset=20, apex=25, offset=30, seed=3 + i, jitter=0.0, **RENDER).frames
             for i, aus in enumerate(order)]
    return np.concatenate(parts)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    event = write_video(d / "clip.mp4", event_frames())
    data = event.read_bytes()
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (40, 64, 64), dtype=np.uint8)  # decodes fine, shows no face
    (d / "notes.mp4").write_text("these are my notes, not a video\n" * 20)
    (d / "half.mp4").write_bytes(data[: len(data) // 2])
    # four times as long: a job that is surely still running when the tests cancel it or stop the server
    long = write_video(d / "long.mp4", np.concatenate([event_frames()] * 4))
    return {"event": event, "long": long, "reversed": write_video(d / "reversed.mp4", event_frames(("1+2", "6+12"))),
            "noface": write_video(d / "noface.mp4", noise), "text": d / "notes.mp4", "truncated": d / "half.mp4",
            "empty": Path(d / "empty.mp4"), "big": d / "big.mp4"}


@pytest.fixture(scope="module")
def runs_root(synth_run: Path, blob_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    root = tmp_path_factory.mktemp("served") / "runs"
    shutil.copytree(synth_run, root / "synth")
    # a second, tiny run: 2-epoch STCNN with a shuffle control and the leaky epoch policy, for the Runs page
    config = tiny_config(blob_tree, protocol="holdout", control="shuffle",
                         **{"train.epochs": 2, "train.epoch_policy": "test-peek"})
    evaluate(config, out=root / "demo" / "leaky", progress=False, log=lambda _m: None)
    return root


class Server:
    def __init__(self, root: Path, tmp: Path, *extra: str) -> None:
        pytest.importorskip("fastapi")  # the serve extra
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT / "src") + os.pathsep +
               os.environ.get("PYTHONPATH", "")}
        self.log = tmp.with_name(tmp.name + ".log")  # a file, not a pipe nobody reads that could fill up
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "microexp", "serve", "--runs", str(root), "--port",
                                          "0", *extra], stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the first line is the URL, printed once the socket listens
        assert line.startswith("microexp serve: http://127.0.0.1:"), (line, self.log.read_text())
        self.url = line.split()[2].rstrip("/")

    def get(self, path: str) -> tuple[int, Any]:
        return self.request("GET", path)

    def request(self, method: str, path: str, data: bytes | None = None, headers: dict[str, str] | None = None,
                ) -> tuple[int, Any]:
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                body = r.read()
                status = r.status
        except urllib.error.HTTPError as exc:
            body, status = exc.read(), exc.code
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body

    def submit(self, run: str, video: Path | None = None, **params: str) -> tuple[int, Any]:
        query = urllib.parse.urlencode({"run": run, **({"name": video.name} if video else {}), **params})
        return self.request("POST", f"/api/jobs?{query}", video.read_bytes() if video else None,
                            {"X-Microexp": "1", "Content-Type": "application/octet-stream"})

    def wait(self, job: str, states: tuple[str, ...] = ("done", "failed", "cancelled"), limit: float = 300) -> dict:
        """The job once it is in one of ``states``: the server answers when its state changes (no polling)."""
        deadline = time.monotonic() + limit
        query = urllib.parse.urlencode([("wait", "50"), *(("until", s) for s in states)])
        while time.monotonic() < deadline:
            status, body = self.get(f"/api/jobs/{job}?{query}")
            assert status == 200, body
            if body["state"] in states:
                return body
        raise AssertionError(f"job {job} still {body['state']} ({body['phase']})")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        return self.proc.wait(timeout=60)

    def leftovers(self) -> list[str]:
        return sorted(p.name for p in self.tmp.iterdir())


@pytest.fixture(scope="module")
def server(runs_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(runs_root, tmp_path_factory.mktemp("server-tmp"), "--max-upload-mb", "1")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    # here, not at the top of the module: the tests without a browser run where playwright is missing
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        yield b
        b.close()


def shot(page: Any, tmp_path: Path, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    shutil.copy(tmp_path / f"{name}.png", SHOTS / f"{name}.png")


def console_errors(page: Any) -> list[str]:
    """Every error the page logs (a failed request included) or throws; the tests assert there is none."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def local_only(page: Any, server: Server) -> list[str]:
    """Every URL the page asks for; the test asserts all are the server's own."""
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    return asked


def predict_cli(run: Path, video: Path, fmt: str) -> str:
    """What `microexp predict VIDEO --json/--csv` writes, run beside the video so that its source is the name."""
    out = video.parent / f"{video.stem}.cli.{fmt}"
    with contextlib.chdir(video.parent):
        assert main(["predict", video.name, "--run", str(run), "--stride", "2", "--face", "none", f"--{fmt}",
                     "-o", str(out), "--no-progress"]) == 0
    return out.read_text()


# ---- the Analyse page ---------------------------------------------------------------------------------------------


def test_analyse_page_finds_the_micro_expression_and_explains_it(server: Server, browser: Any, videos: dict,
                                                                 runs_root: Path, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    asked = local_only(page, server)
    errors = console_errors(page)
    page.goto(server.url + "/")
    page.wait_for_selector("#run option", state="attached")
    assert page.eval_on_selector_all("#run option", "os => os.map(o => o.value)") == ["demo/leaky", "synth"]
    # the spotting-run choice only where this microexp has the spotting module
    assert page.is_hidden("#spot-choice") == (importlib.util.find_spec("microexp.spot") is None)
    page.select_option("#run", "synth")
    page.select_option("#face", "none")  # the video is face crops, as the run's training clips were
    page.fill("#stride", "2")
    page.set_input_files("#file", str(videos["event"]))
    shot(page, tmp_path, "1-analyse-start")
    page.click("#analyse")
    page.wait_for_selector(".job[data-state=running] progress, .job[data-state=done]", timeout=120_000)
    page.wait_for_selector("tr.interval", timeout=300_000)
    rows = page.eval_on_selector_all("tr.interval", "rs => rs.map(r => ({...r.dataset}))")
    shot(page, tmp_path, "2-analyse-result")
    for label, onset, offset in EVENTS:
        hits = [r for r in rows if r["label"] == label and float(r["start"]) < (offset + 1) / FPS
                and float(r["end"]) > onset / FPS]
        assert len(hits) == 1, (label, rows)
    assert {r["label"] for r in rows} == {"neutral", "positive", "surprise"}
    # the timeline plot holds one bar per interval
    bars = page.evaluate("document.getElementById('timeline').data.filter(t => t.type === 'bar')"
                         ".reduce((n, t) => n + t.x.length, 0)")
    assert bars == len(rows)

    assert page.inner_text("#notes") == ""  # the run has a neutral class: no warning
    # saliency is made when an interval is clicked, not before
    job = page.get_attribute("#result", "data-job")
    assert list(server.tmp.glob(f"microexp-serve-*/jobs/{job}/result/saliency-*")) == []
    smile = next(r for r in rows if r["label"] == "positive")
    page.click(f"tr.interval[data-index='{smile['index']}']")
    page.wait_for_function("document.getElementById('saliency-img') && document.getElementById('saliency-img')"
                           ".complete && document.getElementById('saliency-img').naturalWidth > 100")
    page.wait_for_function(f"Math.abs(document.getElementById('video').currentTime - {smile['start']}) < 0.05")
    assert "positive" in page.inner_text("#saliency h2")
    assert page.evaluate("document.getElementById('video').duration") == pytest.approx(96 / FPS, abs=0.1)
    assert sorted(p.name for p in server.tmp.glob(f"microexp-serve-*/jobs/{job}/result/saliency-*")) == [
        f"saliency-interval-{smile['index']}.{x}" for x in ("gif", "json", "png")]  # that interval's, kept
    shot(page, tmp_path, "3-analyse-saliency")

    # a bar on the timeline is clickable too: the brow raise's (bar traces in class order)
    bar = page.locator("#timeline g.trace.bars").nth(2).locator("g.point path").first.bounding_box()
    page.mouse.click(bar["x"] + bar["width"] / 2, bar["y"] + bar["height"] / 2)
    page.wait_for_function("document.querySelector('#saliency h2').textContent.includes('surprise') && "
                           "document.getElementById('saliency-img') && document.getElementById('saliency-img').complete",
                           timeout=120_000)
    surprise = next(r for r in rows if r["label"] == "surprise")
    assert page.evaluate("document.getElementById('video').currentTime") == pytest.approx(float(surprise["start"]),
                                                                                          abs=0.05)

    with page.expect_download() as download:
        page.click("#download-json")
    got = Path(download.value.path()).read_text()
    assert got == predict_cli(runs_root / "synth", videos["event"], "json")
    assert download.value.suggested_filename == "clip.json"
    with page.expect_download() as download:
        page.click("#download-csv")
    assert Path(download.value.path()).read_text() == predict_cli(runs_root / "synth", videos["event"], "csv")
    assert asked and all(u.startswith(server.url + "/") for u in asked), [u for u in asked if server.url not in u]
    assert errors == []
    page.close()


def test_bad_uploads_say_what_is_wrong_and_the_server_keeps_serving(server: Server, browser: Any, videos: dict,
                                                                     tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 700})
    page.goto(server.url + "/")
    page.wait_for_selector("#run option", state="attached")
    page.select_option("#run", "synth")
    page.set_input_files("#file", str(videos["text"]))
    page.click("#analyse")
    page.wait_for_selector(".job[data-state=failed] .message", timeout=300_000)
    assert page.inner_text(".job[data-state=failed] .message") == \
        "notes.mp4: cannot read video (not a video file, or a codec neither OpenCV nor PyAV decodes)"
    shot(page, tmp_path, "4-analyse-not-a-video")

    videos["empty"].write_bytes(b"")
    page.set_input_files("#file", str(videos["empty"]))
    page.click("#analyse")
    page.wait_for_function("document.getElementById('start-error').textContent.length > 0")
    assert page.inner_text("#start-error") == "empty upload (0 bytes): choose a video file"
    videos["big"].write_bytes(b"\0" * (1 << 20) + b"\0")  # one byte over the server's --max-upload-mb 1
    page.set_input_files("#file", str(videos["big"]))
    page.click("#analyse")
    page.wait_for_function("document.getElementById('start-error').textContent.includes('limit')")
    assert page.inner_text("#start-error") == ("upload larger than the limit of 1 MB (start the server with "
                                               "--max-upload-mb to change it)")
    page.close()

    for key, message in (("truncated", "half.mp4: cannot read video (not a video file, or a codec neither OpenCV "
                                       "nor PyAV decodes)"),
                         ("noface", "noface.mp4: no face detected in any of its 16 window(s) (40 frames)")):
        status, job = server.submit("synth", videos[key], face="dlib")  # the run's frames were face crops
        assert status == 201, job
        assert server.wait(job["id"])["message"] == message
        assert list(server.tmp.glob(f"microexp-serve-*/jobs/{job['id']}/input")) == []  # a failed job's goes
    assert server.get("/api/info")[0] == 200


# ---- spotting -----------------------------------------------------------------------------------------------

# three 8 s long videos, one micro- and one macro-expression each; the first video's smile is the one to find
LONG = LongVideoConfig(n_subjects=3, videos_per_subject=1, n_frames=240, fps=30.0, size=64, micro_per_video=1,
                       macro_per_video=1, seed=3)


@pytest.fixture(scope="module")
def spotting(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A spotting run the cheap way (MDMD, training-free but for its fitted k and thresholds) and the first long
    video as an MJPG file, with its known micro-expression (frames numbered from 1, as a video file's are)."""
    d = tmp_path_factory.mktemp("spotting")
    root = write_layout("samm_lv", LONG, d / "lv")
    evaluate_spotting(SpotConfig(dataset="samm_lv", root=str(root), fps=LONG.fps, crop=48, face="none"),
                      out=d / "run")
    video = d / "long-smile.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), LONG.fps, (LONG.size, LONG.size), False)
    for f in sorted((root / "SAMM_longvideos" / "001_1").iterdir()):
        writer.write(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE))
    writer.release()
    (micro,) = [e for e in events_of(LONG)[0][2] if e.type == "micro"]
    return {"run": d / "run", "video": video, "micro": micro}


def spot_cli(spot_run: Path, recognise: Path, video: Path, fmt: str) -> str:
    """What `microexp spot VIDEO --run SPOT_RUN --recognise RUN --face none --json/--csv` writes, run beside the
    video so that its source is the name."""
    out = video.parent / f"{video.stem}.spot-cli.{fmt}"
    with contextlib.chdir(video.parent), open(out, "w") as f, contextlib.redirect_stdout(f):
        assert main(["spot", video.name, "--run", str(spot_run), "--recognise", str(recognise), "--face", "none",
                     f"--{fmt}"]) == 0
    return out.read_text()


def test_a_spotting_run_spots_the_micro_expression_on_the_timeline(server: Server, browser: Any, spotting: dict,
                                                                  runs_root: Path, tmp_path: Path) -> None:
    shutil.copytree(spotting["run"], runs_root / "spotting")  # only for this test: the Runs page lists two runs
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 1100}, accept_downloads=True)
        page.goto(server.url + "/")
        page.wait_for_selector("#spot-run option[value=spotting]", state="attached")
        # each choice offers its own kind of run
        assert page.eval_on_selector_all("#run option", "os => os.map(o => o.value)") == ["demo/leaky", "synth"]
        assert page.eval_on_selector_all("#spot-run option", "os => os.map(o => o.value)") == ["", "spotting"]

        # a run of the wrong kind (as an old page or a hand-made request would send it): one line, no job
        page.set_input_files("#file", str(spotting["video"]))
        page.evaluate("document.getElementById('run').append(new Option('spotting', 'spotting'))")
        page.select_option("#run", "spotting")
        page.click("#analyse")
        page.wait_for_function("document.getElementById('start-error').textContent.length > 0")
        assert page.inner_text("#start-error") == ("run spotting is a spotting run (it has spotter.json): choose it "
                                                   "as the spotting run, and a trained recognition run as the "
                                                   "trained run")
        status, body = server.submit("synth", spotting["video"], spot_run="synth")
        assert status == 422 and body["detail"] == ("run synth is not a spotting run (no spotter.json): choose one "
                                                    "made by microexp evaluate --task spot, or none")

        errors = console_errors(page)  # from here on (the refusals above are logged as failed requests)
        page.select_option("#run", "synth")
        page.select_option("#spot-run", "spotting")
        page.select_option("#face", "none")  # face crops, for the recognition run and the spotting run alike
        page.click("#analyse")
        page.wait_for_selector("tr.spot", timeout=300_000)
        assert page.inner_text("#start-error") == ""
        spots = page.eval_on_selector_all("tr.spot", "rs => rs.map(r => ({...r.dataset, cls: r.className}))")
        shot(page, tmp_path, "8-analyse-spotting")
        # spot first: the spotted intervals are the page's list; the recognition run's segments are not shown
        assert page.get_attribute("#result", "data-main") == "spots"
        assert page.is_hidden("#intervals-box") and page.is_visible("#spots-table")
        micro = spotting["micro"]  # frame n of the file plays from (n - 1) / fps
        known = ((micro.onset - 1) / LONG.fps, micro.offset / LONG.fps)
        hits = [s for s in spots if s["type"] == "micro" and float(s["start"]) < known[1]
                and float(s["end"]) > known[0]]
        assert len(hits) == 1, (known, spots)
        assert hits[0]["emotion"]  # classified by the recognition run
        assert all(("blink" in s["cls"]) == (s["type"] == "blink") for s in spots)  # the spotter's blinks, marked
        # the timeline: a row per spotted type, its bars where the table says; beneath, the per-window class
        # probabilities as a strip (a heatmap), not as intervals
        traces = page.evaluate("document.getElementById('timeline').data.map(t => ({type: t.type, meta: t.meta, "
                               "name: t.name, base: t.base, x: t.x, y: t.y, text: t.text}))")
        bars = [t for t in traces if t["meta"] == "spot"]
        micro_row = next(b for b in bars if b["name"] == "micro")
        assert any(b < known[1] and b + w > known[0] for b, w in zip(micro_row["base"], micro_row["x"], strict=True))
        assert {b["name"] for b in bars} == {s["type"] for s in spots}
        assert hits[0]["emotion"] in micro_row["text"]
        assert [t["type"] for t in traces if t["meta"] != "spot"] == ["heatmap"]
        assert next(t for t in traces if t["meta"] == "strip")["y"] == ["neutral", "positive", "surprise"]

        # a click on the micro bar plays the video from the spot's start and explains it (made now, not before)
        job = page.get_attribute("#result", "data-job")
        assert list(server.tmp.glob(f"microexp-serve-*/jobs/{job}/result/saliency-*")) == []
        index = [t["type"] for t in traces].index("bar") + next(i for i, b in enumerate(bars) if b["name"] == "micro")
        bar = page.locator("#timeline g.trace.bars").nth(index).locator("g.point path")
        k = next(i for i, (b, w) in enumerate(zip(micro_row["base"], micro_row["x"], strict=True))
                 if b < known[1] and b + w > known[0])
        bar.nth(k).scroll_into_view_if_needed()  # the timeline lies below the fold of the page
        box = bar.nth(k).bounding_box()
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_function(f"Math.abs(document.getElementById('video').currentTime - {hits[0]['start']}) < 0.05")
        assert page.is_visible(f"tr.spot.chosen[data-index='{hits[0]['index']}']")
        page.wait_for_function("document.getElementById('saliency-img') && document.getElementById('saliency-img')"
                               ".complete && document.getElementById('saliency-img').naturalWidth > 100",
                               timeout=120_000)
        assert f"micro {hits[0]['index']}" in page.inner_text("#saliency h2")
        shot(page, tmp_path, "9-analyse-spot-saliency")

        # a blink event (as the spotter reports them) is drawn as a blink: its own grey row, not classified
        result = next(server.tmp.glob(f"microexp-serve-*/jobs/{job}/result"))
        placed = json.loads((result / "spot-intervals.json").read_text())
        assert all(s["aus"] == {} for s in placed["spots"])  # a recognition run: no AU column
        assert page.locator("#spots-table td.aus").count() == 0
        if not any(s["type"] == "blink" for s in placed["spots"]):  # a spotter without blink events: add one
            placed["spots"].append({"index": len(placed["spots"]), "type": "blink", "onset": 100, "offset": 106,
                                    "score": 0.5, "emotion": "", "first": 99, "last": 105,
                                    "start_time": 99 / LONG.fps, "end_time": 106 / LONG.fps})
        # an AU run's spots carry their AU probabilities (`microexp spot --recognise AU_RUN`): shown per interval
        placed["spots"][int(hits[0]["index"])]["aus"] = {"AU6": 0.91, "AU12": 0.724}
        (result / "spot-intervals.json").write_text(json.dumps(placed))
        page.click(f".job[data-job='{job}'] button.show")
        page.wait_for_selector("tr.spot.blink")
        assert page.inner_text(f"tr.spot[data-index='{hits[0]['index']}'] td.aus") == "AU6 0.91, AU12 0.72"
        assert "AU probabilities" in page.inner_text("#spots-table tr >> nth=0")
        blinks = page.eval_on_selector_all("tr.spot.blink", "rs => rs.map(r => r.lastChild.textContent)")
        assert blinks and set(blinks) == {"blink (not an expression)"}
        blink_row = page.evaluate("document.getElementById('timeline').data.find(t => t.name === 'blink')")
        assert blink_row["marker"]["color"] == "#9e9e9e" and set(blink_row["text"]) == {"blink"}
        page.click("tr.spot.blink")
        page.wait_for_function("document.querySelector('#saliency .note').textContent.includes('a blink')")
        shot(page, tmp_path, "10-analyse-blink")

        # the downloads are what `microexp spot` writes for the same file
        assert "microexp spot --run spotting --recognise synth --face none --json / --csv" in page.inner_text(
            "#downloads")
        with page.expect_download() as download:
            page.click("#download-spots-json")
        got = Path(download.value.path()).read_text()
        assert got == spot_cli(runs_root / "spotting", runs_root / "synth", spotting["video"], "json")
        assert download.value.suggested_filename == "long-smile.spots.json"
        assert json.loads(got)["source"] == "long-smile.avi"
        with page.expect_download() as download:
            page.click("#download-spots-csv")
        assert Path(download.value.path()).read_text() == spot_cli(runs_root / "spotting", runs_root / "synth",
                                                                   spotting["video"], "csv")

        # the Runs page shows the spotting run's dataset, method and F1 per type from its metrics.json
        m = json.loads((runs_root / "spotting" / "metrics.json").read_text())
        page.goto(server.url + "/runs")
        page.wait_for_selector("tr[data-run=spotting]")

        def cell(key: str) -> str:
            return page.inner_text(f"tr[data-run=spotting] td[data-key={key}]")

        assert (cell("model"), cell("dataset"), cell("protocol")) == ("mdmd", "samm_lv", m["protocol"])
        assert cell("f1") == ", ".join(f"{t} {m['overall'][t]['f1']:.3f}" for t in ("micro", "macro", "overall"))
        assert cell("chance_f1") == ", ".join(f"{t} {v:.3f}" for t, v in m["chance"].items())
        assert cell("uf1") == "-"
        shot(page, tmp_path, "11-runs-spotting")
        assert errors == []
        page.close()
    finally:
        shutil.rmtree(runs_root / "spotting")


# ---- jobs -------------------------------------------------------------------------------------------------------


def test_two_jobs_queue_without_mixing_results_and_a_job_can_be_cancelled(server: Server, videos: dict,
                                                                          runs_root: Path) -> None:
    import microexp

    first = server.submit("synth", videos["reversed"], stride="2", face="none")[1]
    second = server.submit("synth", videos["event"], stride="2", face="none")[1]
    third = server.submit("synth", videos["event"], face="none")[1]
    assert second["state"] == "queued" and third["state"] == "queued"  # one worker: the others wait their turn
    status, cancelled = server.request("DELETE", f"/api/jobs/{third['id']}", headers={"X-Microexp": "1"})
    assert status == 200 and cancelled["state"] == "cancelled"
    predictor = microexp.load(runs_root / "synth", face="none")  # the videos are face crops
    for job, video in ((first, videos["reversed"]), (second, videos["event"])):
        assert server.wait(job["id"])["state"] == "done"
        got = json.loads(urllib.request.urlopen(f"{server.url}/api/jobs/{job['id']}/files/result.json").read())
        want = predictor.predict(video, stride=2).to_dict()
        want["source"] = video.name
        assert got == json.loads(json.dumps(want))
        # the temporary files went when the job ended; the results and the upload (saliency reads its frames
        # when the page asks) stay for the page
        assert sorted(p.name for p in server.tmp.glob(f"microexp-serve-*/jobs/{job['id']}/*")) == \
            ["input", "progress.json", "result", "status.json"]
        assert [p.name for p in server.tmp.glob(f"microexp-serve-*/jobs/{job['id']}/input/*")] == [video.name]
    # the reversed video has the brow raise first
    labels = [s["label"] for s in json.loads(urllib.request.urlopen(
        f"{server.url}/api/jobs/{first['id']}/files/result.json").read())["segments"] if s["label"] != "neutral"]
    assert labels == ["surprise", "positive"]

    # a running job stopped: its process ends and its files go
    running = server.submit("synth", videos["long"])[1]
    server.wait(running["id"], ("running",))
    status, body = server.request("DELETE", f"/api/jobs/{running['id']}", headers={"X-Microexp": "1"})
    assert status == 200
    assert server.wait(running["id"])["state"] == "cancelled"
    left = list(server.tmp.glob(f"microexp-serve-*/jobs/{running['id']}/*"))
    assert [p.name for p in left if p.name in ("work", "result", "input")] == []
    assert server.get(f"/api/jobs/{running['id']}/files/result.json")[0] == 409


def test_a_frame_folder_on_disk_is_analysed_as_predict_reads_it(server: Server, runs_root: Path,
                                                                 tmp_path: Path) -> None:
    import microexp

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(event_frames()):
        cv2.imwrite(str(folder / f"img{i:03d}.png"), f)
    status, job = server.submit("synth", None, folder=str(folder), stride="2", face="none")
    assert status == 201, job
    assert server.wait(job["id"])["state"] == "done"
    got = json.loads(urllib.request.urlopen(f"{server.url}/api/jobs/{job['id']}/files/result.json").read())
    assert got == json.loads(microexp.load(runs_root / "synth", face="none").predict(folder, stride=2).to_json())
    # an interval's saliency, read from the user's folder: made on the first request, the same entry after
    smile = next(i for i, seg in enumerate(got["segments"]) if seg["label"] == "positive")
    url = f"/api/jobs/{job['id']}/saliency/interval/{smile}"
    status, entry = server.request("POST", url, headers={"X-Microexp": "1"})
    assert status == 200 and entry["label"] == "positive" and entry["note"] == "", entry
    png = next(server.tmp.glob(f"microexp-serve-*/jobs/{job['id']}/result/{entry['figure']}"))
    made = png.stat().st_mtime_ns
    assert server.request("POST", url, headers={"X-Microexp": "1"}) == (200, entry)
    assert png.stat().st_mtime_ns == made  # kept, not made again
    assert server.request("POST", f"/api/jobs/{job['id']}/saliency/spot/0", headers={"X-Microexp": "1"}) == \
        (409, {"detail": f"job {job['id']} has no spots"})
    assert len(list(folder.iterdir())) == 96  # the user's frames are read, never deleted
    status, body = server.submit("synth", None, folder=str(tmp_path / "missing"))
    assert status == 422 and body["detail"].startswith(f"{tmp_path / 'missing'}: no such folder")


def test_requests_that_start_work_need_the_header_and_the_loopback_host(server: Server, videos: dict) -> None:
    status, body = server.request("POST", "/api/jobs?run=synth&name=clip.mp4", videos["event"].read_bytes())
    assert status == 403 and "X-Microexp" in body["detail"]
    status, _ = server.request("GET", "/api/info", headers={"Host": "evil.example"})
    assert status == 400
    status, body = server.request("POST", "/api/jobs/job1/saliency/interval/0")
    assert status == 403 and "X-Microexp" in body["detail"]


def test_bad_parameters_and_unknown_jobs_are_one_line(server: Server, videos: dict) -> None:
    # typed parameters: FastAPI checks them, the answer names the parameter and the value
    status, body = server.submit("synth", videos["event"], window="100ms")
    assert (status, body["detail"]) == (422, "window '100ms': input should be a valid integer, unable to parse "
                                             "string as an integer")
    status, body = server.submit("synth", videos["event"], face="opencv")
    assert (status, body["detail"]) == (422, "face 'opencv': expected one of dlib, dlib-mmod, none")  # JobOptions
    status, body = server.request("POST", "/api/jobs/job999/saliency/spot/0", headers={"X-Microexp": "1"})
    assert (status, body["detail"]) == (404, "no job 'job999'")
    status, body = server.request("POST", "/api/jobs/job1/saliency/frame/0", headers={"X-Microexp": "1"})
    assert status == 422 and body["detail"].startswith("kind 'frame': input should be 'interval' or 'spot'")
    assert server.get("/api/jobs/job999/files/result.json") == (404, {"detail": "no job 'job999'"})
    assert server.get("/favicon.ico")[0] == 204  # the browser asks for it on every page: no 404 logged


# ---- the Runs page -------------------------------------------------------------------------------------------


def _fmt(m: dict, key: str) -> str:
    std = m.get(f"{key}_std")
    return f"{m[key]:.3f}" + (f" ± {std:.3f}" if std is not None else "") if key in m else "-"


def test_runs_page_shows_each_runs_metrics_json_and_compares_two(server: Server, browser: Any, runs_root: Path,
                                                                 tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    asked = local_only(page, server)
    page.goto(server.url + "/runs")
    page.wait_for_selector("tr[data-run]")
    assert page.eval_on_selector_all("tr[data-run]", "rs => rs.map(r => r.dataset.run)") == ["demo/leaky", "synth"]
    for rel in ("demo/leaky", "synth"):
        m = json.loads((runs_root / rel / "metrics.json").read_text())
        control = m.get("control") or {}

        def cell(key: str, rel: str = rel) -> str:
            return page.inner_text(f"tr[data-run='{rel}'] td[data-key='{key}']")

        assert cell("uf1") == _fmt(m, "uf1") and cell("uar") == _fmt(m, "uar")
        assert cell("control_uf1") == (_fmt(control, "uf1") if control else "-")
        assert cell("control_uar") == (_fmt(control, "uar") if control else "-")
        assert cell("epoch_policy") == m["epoch_policy"]["name"]
        assert cell("leaky") == ("LEAKY" if m["epoch_policy"].get("leaky") else "no")
        assert cell("model") == m["model"]
    assert page.inner_text("tr[data-run='demo/leaky'] td[data-key='leaky']") == "LEAKY"
    assert page.inner_text("tr[data-run='demo/leaky'] td[data-key='control_uf1']") != "-"
    shot(page, tmp_path, "5-runs")

    page.select_option("#run-a", "synth")
    page.select_option("#run-b", "demo/leaky")
    page.click("#compare")
    page.wait_for_selector("#compare-table")
    from microexp.report.compare import compare_runs, compare_text

    c = compare_runs(runs_root / "synth", runs_root / "demo" / "leaky")
    got = page.eval_on_selector_all("#compare-table tr[data-row]",
                                    "rs => rs.map(r => [...r.children].map(td => td.textContent))")
    assert got == c["rows"]
    c["a"], c["b"] = "synth", "demo/leaky"
    assert page.inner_text("#compare-text") == compare_text(c)
    shot(page, tmp_path, "6-runs-compare")

    with page.expect_popup() as popup:
        page.click("tr[data-run='demo/leaky'] a.report")
    report = popup.value
    report.wait_for_selector("#leaky")
    assert "stcnn on plain" in report.title()
    shot(report, tmp_path, "7-run-report")
    assert asked and all(u.startswith(server.url + "/") for u in asked)
    page.close()


def test_run_paths_outside_the_runs_folder_are_refused(server: Server, runs_root: Path, synth_run: Path,  # noqa: F811
                                                       tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    shutil.copytree(synth_run, outside, ignore=shutil.ignore_patterns("checkpoints"))
    (runs_root / "escape").symlink_to(outside, target_is_directory=True)
    try:
        for rel in ("../elsewhere", "synth/../../elsewhere", str(outside), "/etc", "escape"):
            q = urllib.parse.quote(rel)
            for path in (f"/api/run?run={q}", f"/api/report?run={q}", f"/api/compare?a=synth&b={q}"):
                status, body = server.get(path)
                assert status == 403, (path, status, body)
            status, body = server.submit(rel, None, folder="/tmp")
            assert status == 403, (rel, body)
        assert "escape" not in [r["run"] for r in server.get("/api/runs")[1]["runs"]]
        assert server.get("/api/run?run=nothing-here")[0] == 404
        assert server.get("/api/run?run=synth")[0] == 200
    finally:
        (runs_root / "escape").unlink()


def test_resolve_run_refuses_what_lies_outside(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "metrics.json").write_text("{}")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "metrics.json").write_text("{}")
    (root / "link").symlink_to(tmp_path / "out")
    assert resolve_run(root, "a/b") == (root / "a" / "b").resolve()
    for bad, words in (("../out", "'..'"), (str(tmp_path / "out"), "absolute"), ("link", "outside"),
                       ("a/../../out", "'..'"), ("", "give a folder")):
        with pytest.raises(OutsideRunsError, match=words):
            resolve_run(root, bad)
    with pytest.raises(DataError, match="not a run directory"):
        resolve_run(root, "a")
    assert find_runs(root) == ["a/b"]


def test_the_page_says_when_a_recognition_run_alone_labels_every_window() -> None:
    from microexp.predict import PredictionResult
    from microexp.serve.analyse import page_view

    def result(classes: list[str], n_frames: int, window: int = 12) -> PredictionResult:
        return PredictionResult("v.mp4", 30.0, n_frames, window, 3, classes, ["m"], [], [], [], [])

    no_neutral = result(["negative", "positive", "surprise"], 1200)
    (note,) = page_view(no_neutral, None)["notes"]
    assert note.startswith("this run's model has no neutral class (negative/positive/surprise): it labels every "
                           "window")
    assert page_view(no_neutral, None)["main"] == "intervals"
    # not said: with a spotting run (which is then the main view), for a run with a neutral class, for one clip
    assert page_view(no_neutral, object()) == {"main": "spots", "notes": []}
    assert page_view(result(["neutral", "positive"], 1200), None)["notes"] == []
    assert page_view(result(["negative", "positive"], 12), None)["notes"] == []


def test_each_phase_writes_its_progress_within_its_share_of_the_bar(tmp_path: Path) -> None:
    from microexp.serve.analyse import PHASES, Progress

    progress = Progress(tmp_path)

    def read() -> tuple[str, float]:
        p = json.loads((tmp_path / "progress.json").read_text())
        return p["phase"], p["progress"]

    progress("loading the model")
    assert read() == ("loading the model", 0.0)
    classify = progress.frames("classifying windows")
    classify(1, 1200)
    low, high = PHASES["classifying windows"]
    assert read() == ("classifying windows 1/1200", pytest.approx(low + (high - low) / 1200))
    classify(600, 1200)  # within a tenth of a second of the last write: skipped
    assert read()[0] == "classifying windows 1/1200"
    progress.video = "40%"
    progress("spotting")
    assert read() == ("spotting; video 40%", PHASES["spotting"][0])


def test_a_spotting_runs_summary_has_its_dataset_method_and_f1_per_type(spotting: dict, tmp_path: Path) -> None:
    from microexp.serve.runs import run_summary

    shutil.copytree(spotting["run"], tmp_path / "runs" / "spot")
    m = json.loads((spotting["run"] / "metrics.json").read_text())
    got = run_summary(tmp_path / "runs", "spot")
    assert (got["spotting"], got["method"], got["model"], got["dataset"]) == (True, "mdmd", "mdmd", "samm_lv")
    assert got["f1"] == {t: m["overall"][t]["f1"] for t in ("micro", "macro", "overall")}
    assert got["chance_f1"] == m["chance"] and got["predictable"] is False


# ---- the command ----------------------------------------------------------------------------------------------


def test_serve_refuses_a_missing_runs_folder_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["serve", "--runs", str(tmp_path / "nope"), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err == f"microexp serve: error: --runs {tmp_path / 'nope'}: no such folder (the folder whose run " \
                  "directories to show)\n"


def test_without_the_serve_extra_the_command_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed
    assert main(["serve", "--runs", str(tmp_path)]) == 2
    assert capsys.readouterr().err == ("microexp serve: error: the serve extra is not installed (uvicorn missing): "
                                       "pip install 'microexp[serve]'\n")


def test_a_port_in_use_or_out_of_range_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["serve", "--runs", str(tmp_path), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"microexp serve: error: cannot listen on 127.0.0.1:{port} (") and err.count("\n") == 1
    assert err.endswith("give another --port (0 picks a free one)\n")
    assert main(["serve", "--runs", str(tmp_path), "--port", "70000"]) == 2
    assert capsys.readouterr().err == "microexp serve: error: --port 70000: give 0-65535 (0 picks a free port)\n"


def test_another_address_than_loopback_is_warned_about(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    from microexp.serve import server

    def no_bind(host: str, port: int) -> None:  # the project's servers bind 127.0.0.1 only, tests included
        raise ConfigError(f"not binding {host}")

    monkeypatch.setattr(server, "bind", no_bind)
    with pytest.raises(ConfigError, match="not binding 0.0.0.0"):
        server.serve(tmp_path, host="0.0.0.0", port=0)
    assert "warning: listening on 0.0.0.0" in capsys.readouterr().err
    assert server.is_loopback("127.0.0.1") and server.is_loopback("localhost") and server.is_loopback("::1")
    assert not server.is_loopback("0.0.0.0") and not server.is_loopback("192.168.1.5")


def test_ctrl_c_ends_the_jobs_and_leaves_no_temporary_files(runs_root: Path, videos: dict, tmp_path: Path) -> None:
    server = Server(runs_root, tmp_path / "server-tmp")  # a server of its own: it stops it
    job = server.submit("synth", videos["long"])[1]
    server.submit("synth", videos["reversed"])  # queued behind it
    server.wait(job["id"], ("running",))
    assert list(server.tmp.glob("microexp-serve-*/jobs/*/input/*")) != []
    code = server.stop()
    assert code in (0, 130), server.log.read_text()
    assert server.leftovers() == []
    assert "Traceback" not in server.log.read_text()
