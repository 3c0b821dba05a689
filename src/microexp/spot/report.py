"""The report of a spotting run: per video one timeline with the score curve, the threshold, the ground-truth
intervals and the predicted ones, hits / misses / false positives coloured; the metrics beside both controls
(shuffled predictions: chance level and p-value; shuffled training intervals, when run). One self-contained HTML file (figures embedded as PNG)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from microexp.errors import ConfigError

COLOURS = {"TP": "#2e7d32", "FN": "#c62828", "FP": "#ef6c00", "GT": "#1565c0", "blink": "#757575"}


def timeline_png(video: str, numbers: np.ndarray, curves: dict[str, tuple[np.ndarray, float]],
                 rows: list[dict[str, Any]], blinks: list[dict[str, Any]] | None = None) -> bytes:
    """One video's timeline: score curves (one per type) with their thresholds, then ground truth and predictions
    as bars, coloured by outcome, and the blinks (spot.blinks) in a grey lane of their own."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bars) = plt.subplots(2, 1, figsize=(10, 3.2), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    for (t, (values, th)), colour in zip(sorted(curves.items()), ("#6a1b9a", "#00838f"), strict=False):
        ax.plot(numbers[: len(values)], values, lw=0.8, color=colour, label=f"{t} score")
        ax.axhline(th, color=colour, lw=0.6, ls="--")
    ax.legend(loc="upper right", fontsize=7)
    ax.set_title(video, fontsize=9)
    lanes = {("micro", "gt"): 3, ("micro", "pred"): 2, ("macro", "gt"): 1, ("macro", "pred"): 0}
    for r in rows:
        if r["gt"]:
            colour = COLOURS["TP"] if r["outcome"] == "TP" else COLOURS["FN"]
            a, b = r["gt"]
            bars.broken_barh([(a, b - a + 1)], (lanes[(r["type"], "gt")] - 0.4, 0.8), color=colour)
        if r["pred"]:
            colour = COLOURS["TP"] if r["outcome"] == "TP" else COLOURS["FP"]
            a, b = r["pred"]
            bars.broken_barh([(a, b - a + 1)], (lanes[(r["type"], "pred")] - 0.4, 0.8), color=colour, alpha=0.7)
    for b in blinks or []:
        bars.broken_barh([(b["onset"], b["offset"] - b["onset"] + 1)], (-1.4, 0.8), color=COLOURS["blink"])
    bars.set_yticks([3, 2, 1, 0, -1], ["micro GT", "micro pred", "macro GT", "macro pred", "blinks"], fontsize=7)
    bars.set_ylim(-1.6, 3.6)
    bars.set_xlabel("frame (green hit, red miss, orange false positive, grey blink)", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def render_spot_report(run_dir: str | Path, out: str | Path | None = None, max_videos: int = 60) -> Path:
    from microexp import runs
    from microexp.spot.groundtruth import Interval
    from microexp.spot.metrics import score
    from microexp.spot.outputs import spots_of_json

    run_dir = Path(run_dir)
    if not (run_dir / runs.METRICS).is_file() or not (run_dir / runs.CURVES).is_file():
        raise ConfigError(f"{run_dir}: not a spotting run ({runs.METRICS} and curves.npz expected)")
    metrics = runs.read_metrics(run_dir)
    gt_body = runs.read_json(run_dir / runs.GROUND_TRUTH, "run file")
    gt = [Interval(**r) for r in gt_body["intervals"]]
    body = runs.read_json(run_dir / runs.SPOT_PREDICTIONS, "run file")  # read once: spots and blinks
    preds = spots_of_json(body)
    result = score(gt, preds)
    arrays = np.load(run_dir / runs.CURVES)
    blinks = body.get("blinks", {})  # older runs: none
    parts = [f"<h1>Spotting run {html.escape(run_dir.name)}</h1>"]
    if metrics.get("leaky"):
        parts.append('<p style="background:#c62828;color:white;padding:6px">LEAKY: threshold tuned on the test '
                     "subject (test-peek); these numbers are not an estimate of performance on new subjects.</p>")
    head = "<tr><th>dataset</th><th>type</th><th>TP</th><th>FP</th><th>FN</th><th>P</th><th>R</th><th>F1</th>" \
           "<th>shuffled predictions F1 (chance)</th><th>p</th><th>shuffled training F1</th></tr>"
    body = []
    for t in ("micro", "macro", "overall"):
        c = metrics["overall"][t]
        ctrl = metrics.get("control", {}).get("overall", {}).get(t, {}).get("f1")
        p = metrics.get("shuffled_predictions", {}).get(t, {}).get("p_value")  # older runs: chance only
        body.append(f"<tr><td>all</td><td>{t}</td><td>{c['tp']}</td><td>{c['fp']}</td><td>{c['fn']}</td>"
                    f"<td>{c['precision']:.4f}</td><td>{c['recall']:.4f}</td><td><b>{c['f1']:.4f}</b></td>"
                    f"<td>{metrics['chance'].get(t, 0):.4f}</td><td>{'' if p is None else f'{p:.3f}'}</td>"
                    f"<td>{'' if ctrl is None else f'{ctrl:.4f}'}</td></tr>")
    parts.append(f"<table border=1 cellspacing=0 cellpadding=3>{head}{''.join(body)}</table>")
    parts.append("<p>Shuffled predictions: the run's predicted intervals moved at random within their videos (same "
                 "lengths); p = how often a shuffle scored at least the run's F1. Shuffled training: the whole "
                 "pipeline trained on ground truth moved at random.</p>")
    if metrics.get("control", {}).get("note"):
        parts.append(f"<p>{html.escape(metrics['control']['note'])}</p>")
    if "strs" in metrics:
        parts.append("<p>Spot-then-recognise (recognition run " + html.escape(str(metrics.get("recognition_run")))
                     + "): " + ", ".join(f"STRS {t} {v['strs']:.4f} (F1 spot {v['f1_spot']:.4f} x F1 analysis "
                                         f"{v['f1_analysis']:.4f})" for t, v in metrics["strs"].items()) + "</p>")
    if metrics.get("excluded"):
        parts.append("<h2>Excluded</h2><ul>" + "".join(f"<li>{html.escape(e['clip'])}: {html.escape(e['reason'])}"
                                                       "</li>" for e in metrics["excluded"]) + "</ul>")
    if metrics.get("gaps"):
        parts.append("<h2>Stretches without a face</h2><ul>" + "".join(
            f"<li>{html.escape(v)}: " + ", ".join(f"frames {a}-{b}" for a, b, _ in g) + "</li>"
            for v, g in metrics["gaps"].items()) + "</ul>")
    parts.append("<h2>Timelines</h2>")
    videos = sorted({k.split("|")[0] for k in arrays.files if k.endswith("|numbers")})
    for video in videos[:max_videos]:
        numbers = arrays[f"{video}|numbers"]
        curves = {}
        for t in ("micro", "macro"):
            if f"{video}|{t}|score" in arrays.files:
                curves[t] = (arrays[f"{video}|{t}|score"], float(arrays[f"{video}|{t}|threshold"][0]))
        rows = [{"type": r.type, "gt": r.gt, "pred": r.pred, "outcome": r.outcome} for r in result.rows
                if r.video == video]
        png = base64.b64encode(timeline_png(video, numbers, curves, rows, blinks.get(video, []))).decode()
        parts.append(f'<img src="data:image/png;base64,{png}" alt="{html.escape(video)}"><br>')
    if len(videos) > max_videos:
        parts.append(f"<p>{len(videos) - max_videos} more videos not drawn.</p>")
    config = (run_dir / runs.CONFIG).read_text() if (run_dir / runs.CONFIG).is_file() else ""
    parts.append(f"<h2>Configuration</h2><pre>{html.escape(config)}</pre>")
    path = Path(out) if out else run_dir / "report.html"
    path.write_text("<!doctype html><meta charset=utf-8><title>spotting report</title><body style='font-family:"
                    "sans-serif'>" + "\n".join(parts) + "</body>")
    return path
