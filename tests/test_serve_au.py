"""The web app with a real AU run (issue #24): a tiny AU-detection run trained on synthetic clips with rendered AUs
(tests/test_au_task.py's ``au_run``) serves a job on a short uploaded video, alone and with a spotting run
(``spot --recognise`` in the app), through the server's API as ``microexp serve`` starts it (the browser is not
needed: tests/test_serve.py checks how the page shows an interval's AUs); every window and every spotted interval
comes back with the run's AU probabilities, the same as ``microexp predict`` gives."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from test_au_task import au_run, au_synth  # noqa: F401 - the tiny AU run (2 folds, 1 epoch) and its clips
from test_serve import Server, spotting, write_video  # noqa: F401 - the MDMD spotting run on synthetic videos


@pytest.fixture(scope="module")
def server(au_run: Path, spotting: dict, tmp_path_factory: pytest.TempPathFactory) -> Any:  # noqa: F811
    runs = tmp_path_factory.mktemp("served-au") / "runs"
    shutil.copytree(au_run, runs / "au")
    shutil.copytree(spotting["run"], runs / "spotting")
    s = Server(runs, tmp_path_factory.mktemp("serve-au-tmp"))
    yield s
    s.stop()


def run_job(server: Server, video: Path, **params: str) -> dict:
    status, body = server.submit("au", video, face="none", **params)
    assert status == 201, body
    body = server.wait(body["id"])
    assert body["state"] == "done", body
    return body


def file(server: Server, job: str, name: str) -> Any:
    status, body = server.get(f"/api/jobs/{job}/files/{name}")
    assert status == 200, body
    return body


def run_aus(au_run: Path) -> list[str]:  # noqa: F811
    from microexp.runs import read_metrics

    chosen = read_metrics(au_run)["au"]["chosen_per_fold"]
    return sorted({a for aus in chosen.values() for a in aus}, key=lambda a: int(a[2:]))


@pytest.mark.slow
def test_an_app_job_with_an_au_run_gives_au_probabilities_per_window(
        server: Server, au_synth: Path, au_run: Path, tmp_path: Path) -> None:  # noqa: F811
    import microexp

    clip = next(p for p in sorted(au_synth.glob("*/*")) if p.is_dir())  # 16 synthetic face-crop frames
    frames = np.stack([cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in sorted(clip.glob("*.png"))])
    video = write_video(tmp_path / "aus.mp4", frames, fps=30.0)
    job = run_job(server, video, window="8", stride="4")["id"]
    result = file(server, job, "result.json")
    union = run_aus(au_run)
    assert result["task"] == "au" and result["classes"] == union and len(result["windows"]) == 3
    for w in result["windows"]:
        assert set(w["probabilities"]) == set(union) and all(0.0 < p < 1.0 for p in w["probabilities"].values())
    # the app's numbers are predict's on the same file
    direct = microexp.load(au_run, face="none").predict(str(video), window=8, stride=4)
    assert [w["probabilities"] for w in result["windows"]] == [
        pytest.approx(w.probabilities, abs=1e-5) for w in direct.windows]
    header = file(server, job, "result.csv").decode().splitlines()[0].split(",")
    assert [h for h in header if h.startswith("p_")] == [f"p_{a}" for a in union]
    # an AU run labels windows with the AUs it detects: no "no neutral class" note
    assert file(server, job, "view.json") == {"main": "intervals", "notes": []}


@pytest.mark.slow
def test_an_app_job_with_a_spotting_run_and_an_au_run_gives_each_spot_its_aus(
        server: Server, au_run: Path, spotting: dict) -> None:  # noqa: F811
    body = run_job(server, spotting["video"], spot_run="spotting")
    assert "spotting run spotting" in body["message"]
    placed = file(server, body["id"], "spot-intervals.json")["spots"]
    union = run_aus(au_run)
    assert placed, body
    for s in placed:
        assert list(s["aus"]) == union and all(0.0 < p < 1.0 for p in s["aus"].values())
        assert s["emotion"] == ("+".join(a for a in union if s["aus"][a] >= 0.5) or "none")
    # spots.json is what `microexp spot --recognise AU_RUN --json` writes: the same AU probabilities
    spots = file(server, body["id"], "spots.json")["spots"]
    assert [s["aus"] for s in spots] == [pytest.approx(s["aus"], abs=1e-9) for s in placed]
