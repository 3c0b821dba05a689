"""The autotuner's choices (:mod:`microexp.fast.tune`) that this bench process used: which candidate won each op
at each shape, and by how much against the plain layers and against today's default."""

from __future__ import annotations

import os
from typing import Any


def tuned_choices() -> dict[str, Any]:
    """Every choice made or read from the cache in this process, with the candidates' median seconds."""
    from microexp.fast import tune

    mode = os.environ.get("MICROEXP_TUNE", "")
    return {"mode": mode or "measured", "cache": str(tune.cache_path()), "machine": tune.machine(),
            "choices": [{k: v for k, v in d.items()} for d in tune.decisions.values()]}


def lines(t: dict[str, Any]) -> list[str]:
    """One line per choice: op, mode, precision, shape, winner, and its speed against plain and the default."""
    if not t.get("choices"):
        return [f"tuned fast path: none timed (MICROEXP_TUNE={t.get('mode')})"] if t else []
    out = [f"tuned fast path ({t['mode']}; cache {t['cache']}):"]
    for c in t["choices"]:
        shape = " ".join("x".join(map(str, s)) for s in c["shapes"][:2])
        secs = ", ".join(f"{k} {1000 * v:.1f}" for k, v in c["seconds"].items())
        out.append(f"  {c['op']:14s} {c['mode']:5s} {c['precision']} {shape:24s} -> {c['winner']:9s} "
                   f"{c['speedup_vs_plain']:.2f}x plain, {c['speedup_vs_default']:.2f}x default  [ms: {secs}]")
    return out
