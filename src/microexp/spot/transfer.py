"""A spotting run applied to another data set as it is (no refitting): the cross-renderer figures.

``python -m microexp.spot.transfer RUN --dataset samm_lv --root ROOT`` spots every video of ROOT with the spotter
the run saved (fitted on all of its own subjects) and scores it against ROOT's ground truth: per type F1,
precision, recall; the shuffled-prediction control (the same predictions moved at random within their videos);
false alarms per minute of neutral video (predictions that touch no expression, per minute of frames outside
every expression); and, where ROOT has a ``distractors.json`` (both synthetic renderers write one), the share of
blinks reported as an expression, how many blinks were found as blinks, and the share of frames with a face
during head turns.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from microexp.contract.faces import FACE_HELP, FACE_MODES
from microexp.contract.spotting import BLINK_RULES
from microexp.spot.groundtruth import TYPES, Interval
from microexp.spot.metrics import Spot, score

PREDICTION_DRAWS = 50


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def transfer(run: str | Path, dataset: str, root: str | Path, annotation: str | Path | None = None,
             face: str | None = None, seed: int = 0, blinks: str | None = None) -> dict[str, Any]:
    """The figures of the module docstring; ``blinks`` (separate | spans | ignore) overrides the run's blink rule."""
    from microexp.spot.api import Spotter
    from microexp.spot.data import load_spot_data
    from microexp.spot.evaluate import prediction_control

    spotter = Spotter.load(run)
    if blinks is not None:
        if blinks not in BLINK_RULES:
            from microexp.errors import ConfigError

            raise ConfigError(f"blinks {blinks!r}: expected {' or '.join(BLINK_RULES)}")
        spotter.blinks = blinks
    data = load_spot_data(dataset, root, annotation)
    preds: list[Spot] = []
    blinks_found: dict[str, list[tuple[int, int]]] = {}
    gaps: dict[str, list[tuple[int, int]]] = {}
    n_frames: dict[str, int] = {}
    for key, (subject, folder) in sorted(data.videos.items()):
        r = spotter.spot(folder, fps=data.fps, subject=subject, face=face)
        preds += [replace(s, dataset=data.dataset, subject=subject, video=key[1]) for s in r.spots]
        blinks_found[key[1]] = [(b.onset, b.offset) for b in r.blinks]
        gaps[key[1]] = [(a, b) for a, b, _ in r.gaps]
        n_frames[key[1]] = r.n_frames
    gt = data.gt.intervals
    result = score(gt, preds)
    types = tuple(t for t in TYPES if t in spotter.params)
    control = prediction_control(gt, preds, data.gt.spans, result, types, np.random.default_rng(seed),
                                 PREDICTION_DRAWS)
    out: dict[str, Any] = {"run": str(run), "dataset": dataset, "root": str(root), "method": spotter.method,
                           "blink_rule": spotter.blinks, **result.to_dict(), "shuffled_predictions": control}
    out["false_alarms_per_minute"] = _false_alarms(gt, preds, n_frames, data.fps)
    distractors = Path(root) / "distractors.json"
    if distractors.is_file():
        videos = json.loads(distractors.read_text())["videos"]
        out.update(_distractor_figures(videos, gt, preds, blinks_found, gaps))
        # the same count with the true positives left out: a hit whose interval reaches a neighbouring blink
        # does not report that blink as an expression
        hits = {r.pred_index for r in result.rows if r.outcome == "TP"}
        wrong = [p for i, p in enumerate(preds) if i not in hits]
        fa = _distractor_figures(videos, gt, wrong, blinks_found, gaps)["blinks"]
        out["blinks"]["by_false_positives"] = fa["reported_as_expression"]
    return out


def _false_alarms(gt: list[Interval], preds: list[Spot], n_frames: dict[str, int], fps: float) -> float:
    """Predictions touching no ground-truth interval, per minute of frames outside every interval."""
    neutral = 0
    for video, n in n_frames.items():
        covered = np.zeros(n + 2, bool)
        for iv in gt:
            if iv.video == video:
                covered[max(iv.onset, 0):min(iv.offset, n) + 1] = True
        neutral += int((~covered[1:n + 1]).sum())
    alarms = sum(1 for p in preds if not any(iv.video == p.video and _overlaps((p.onset, p.offset),
                                                                               (iv.onset, iv.offset)) for iv in gt))
    return alarms / max(neutral / fps / 60.0, 1e-9)


def _distractor_figures(videos: dict[str, Any], gt: list[Interval], preds: list[Spot],
                        found: dict[str, list[tuple[int, int]]], gaps: dict[str, list[tuple[int, int]]]
                        ) -> dict[str, Any]:
    """Blinks away from any expression: how many a prediction covers (reported as an expression), how many the
    blink detector found; frames of head turns with a face."""
    n_blinks = as_expression = detected = 0
    turn_frames = turn_face = 0
    for video, d in videos.items():
        if video not in found:
            continue
        ivs = [(iv.onset, iv.offset) for iv in gt if iv.video == video]
        mine = [(p.onset, p.offset) for p in preds if p.video == video]
        for a, b, _ in d["blinks"]:
            if any(_overlaps((a, b), iv) for iv in ivs):
                continue
            n_blinks += 1
            as_expression += any(_overlaps((a, b), p) for p in mine)
            detected += any(_overlaps((a, b), f) for f in found[video])
        for a, b, _ in d.get("turns", []):
            for t in range(a, b + 1):
                turn_frames += 1
                turn_face += not any(g0 <= t <= g1 for g0, g1 in gaps[video])
    found_all = sum(len(v) for k, v in found.items() if k in videos)
    true_found = sum(any(_overlaps(f, (a, b)) for a, b, _ in videos[k]["blinks"])
                     for k, v in found.items() if k in videos for f in v)
    return {"blinks": {"n": n_blinks, "reported_as_expression": as_expression,
                       "share_as_expression": as_expression / n_blinks if n_blinks else 0.0,
                       "found_as_blinks": detected, "recall": detected / n_blinks if n_blinks else 0.0,
                       "blink_events": found_all,
                       "precision": true_found / found_all if found_all else 0.0},
            "head_turns": {"frames": turn_frames,
                           "share_with_face": turn_face / turn_frames if turn_frames else None}}


def summary(r: dict[str, Any]) -> str:
    o = r["overall"]
    line = [f"{r['method']} ({r['blink_rule']} blinks) on {r['root']}:"]
    for t in ("micro", "macro", "overall"):
        c = o[t]
        s = r["shuffled_predictions"][t]
        line.append(f"  {t:<7} F1 {c['f1']:.3f} P {c['precision']:.3f} R {c['recall']:.3f} (TP {c['tp']} FP {c['fp']} "
                    f"FN {c['fn']}); shuffled {s['f1']:.3f} (p {s['p_value']:.3f})")
    line.append(f"  false alarms per minute of neutral video {r['false_alarms_per_minute']:.2f}")
    if "blinks" in r:
        b = r["blinks"]
        line.append(f"  blinks: {b['reported_as_expression']} of {b['n']} reported as expression "
                    f"({b['share_as_expression']:.2f}; by false positives {b.get('by_false_positives', '-')}); "
                    f"found as blinks {b['found_as_blinks']} "
                    f"(recall {b['recall']:.2f}, precision {b['precision']:.2f})")
        if r["head_turns"]["frames"]:
            line.append(f"  head turns: {r['head_turns']['share_with_face']:.3f} of {r['head_turns']['frames']} "
                        "frames with a face")
    return "\n".join(line)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m microexp.spot.transfer", description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="spotting run directory (microexp evaluate --task spot)")
    p.add_argument("--dataset", default="samm_lv")
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--face", choices=FACE_MODES, help=FACE_HELP)
    p.add_argument("--blinks", choices=list(BLINK_RULES), help="override the run's blink rule")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    args = p.parse_args(argv)
    r = transfer(args.run, args.dataset, args.root, face=args.face, blinks=args.blinks)
    print(summary(r))
    if args.json:
        args.json.write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
