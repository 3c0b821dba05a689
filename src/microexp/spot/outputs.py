"""Spotting outputs in the formats people submit, and microexp's own JSON.

- MEGC spotting log (MEGC2020 onwards): a first line naming the dataset (``1`` SAMM-LV, ``2`` CAS(ME)^2, the
  dataset name otherwise), then one line per interval ``video gt_onset gt_offset pred_onset pred_offset
  TP|FP|FN``; ``-`` where a side is missing (a miss has no prediction, a false positive no ground truth).
- Spot-then-recognise CSV (MEGC2024 STR): ``subject,video,onset,offset,emotion`` per predicted interval.
- JSON: every prediction with its type and score, and the metrics.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from microexp.spot.metrics import Spot, SpotScore

MEGC_DATASET = {"samm_lv": "1", "casme_sq": "2"}


def megc_log(result: SpotScore, dataset: str) -> str:
    """The MEGC spotting log of one dataset."""
    lines = [MEGC_DATASET.get(dataset, dataset)]
    for r in result.rows:
        if r.dataset != dataset:
            continue
        gt = f"{r.gt[0]} {r.gt[1]}" if r.gt else "- -"
        pred = f"{r.pred[0]} {r.pred[1]}" if r.pred else "- -"
        lines.append(f"{r.video} {gt} {pred} {r.outcome}")
    return "\n".join(lines) + "\n"


def parse_megc_log(text: str) -> tuple[str, list[tuple[str, tuple[int, int] | None, tuple[int, int] | None, str]]]:
    """(dataset line, rows) of a MEGC log written by :func:`megc_log`."""
    lines = [line for line in text.splitlines() if line.strip()]
    rows = []
    for line in lines[1:]:
        video, a, b, c, d, outcome = line.split()
        rows.append((video, None if a == "-" else (int(a), int(b)), None if c == "-" else (int(c), int(d)), outcome))
    return lines[0], rows


STR_COLUMNS = ("subject", "video", "onset", "offset", "emotion")


def str_csv(preds: Sequence[Spot]) -> str:
    """The spot-then-recognise submission CSV."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(STR_COLUMNS)
    for p in sorted(preds, key=lambda p: (p.dataset, p.subject, p.video, p.onset)):
        w.writerow([p.subject, p.video, p.onset, p.offset, p.emotion])
    return buf.getvalue()


def spots_json(preds: Sequence[Spot], metrics: dict[str, Any] | None = None, **extra: Any) -> str:
    body: dict[str, Any] = {"predictions": [asdict(p) for p in preds], **extra}
    if metrics is not None:
        body["metrics"] = metrics
    return json.dumps(body, indent=1)


def spots_of_json(body: dict) -> list[Spot]:
    """The predicted intervals of a run's ``predictions.json`` body (as :func:`spots_json` writes it)."""
    return [Spot(**p) for p in body["predictions"]]
