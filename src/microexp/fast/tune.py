"""Choose each hot op's implementation by measuring it on this machine, once per shape, and remember the winner.

The fast path's ops have several implementations (*candidates*) with the same mathematics:

- ``conv_relu_pool``: ``fused`` (:mod:`microexp.fast.conv`: oneDNN conv2d work units of 2 pooled rows + compiled
  pooling, in bf16 for the ``bf16`` precision), ``fused1`` / ``fused4`` / ``fused_half`` (the same with 1 or 4
  pooled rows a unit, or half a clip's: smaller units balance the threads at batch 1, larger ones give oneDNN
  longer products), ``wino`` / ``wino_quarter`` / ``wino_half`` (fp32 only: units of 2 pooled rows, a quarter
  or half a clip with the width taps by Winograd F(6, 3), 1.8x fewer multiplies, fp32 rounding of the
  transforms; kernels 3 wide, filters in sixteens, else as ``fused``), ``wino_f4`` (the same by F(4, 3), half
  a clip; for widths that F(6, 3) would pad more), ``wino_fused_quarter`` / ``wino_fused_half`` (F(6, 3) units
  of a quarter or half a clip whose products come from a compiled register kernel and are pooled as they are
  made, never written out; one input channel, filters in 32s, else as the Winograd units), ``onednn_cl``
  (PyTorch's conv3d -> ReLU -> max-pool in channels-last memory, which oneDNN runs with its own kernels, bf16
  ones for ``bf16``), ``amx_quarter`` / ``amx_half`` (``bf16`` only: units of a quarter or half a clip on AMX
  tiles, pooled as they are made, :mod:`microexp.fast.amx`; elsewhere oneDNN's bf16 units of the same size) and
  ``plain`` (the PyTorch layers as they are).
- ``linear`` (the wide Dense layers): ``fast`` (:mod:`microexp.fast.dense`, fp32 arithmetic), ``stream`` (its
  forward streamed over the weights for a few batch rows, MKL's backward; fp32 arithmetic), ``bf16`` (weights
  and input in bf16, the weights' bf16 copy kept between calls that do not train; ``bf16`` precision only) and
  ``plain`` (``torch.nn.functional.linear``).
- ``linear_sgd`` (a wide Dense layer trained by plain SGD, :func:`microexp.fast.dense.sgd_in_backward`): ``fused``
  (the streamed forward, and the SGD step folded into the backward: three passes over the weights in all),
  ``fused_mkl`` (the same with MKL's forward) and ``plain`` (the ``linear`` choice, then the optimiser's step).

Which wins depends on the CPU (AVX2, AVX-512, AVX-512 BF16, AMX), the torch build and the shape, so the first time
an op meets a shape on a machine each candidate is timed there (alternated, a few runs; up to ~15 s for the largest
training shapes, with one progress line on stderr) and the fastest kept. ``plain`` is always a candidate, so the
choice is never slower than the plain layers as measured; today's default (``fused`` / ``fast``) is kept unless
another candidate beats it by more than ``MARGIN`` (or it is slower than ``plain``), confirmed by
``CONFIRM_REPEATS`` more alternated runs of it, ``plain`` and every candidate that beat it by the margin. A choice
measured while the machine is overloaded (load average above ``LOAD_PER_CORE`` per core) holds for the process only;
the others are stored in the user cache (``$MICROEXP_TUNE_CACHE``, else ``$XDG_CACHE_HOME/microexp/tune.json``)
under a key of the CPU model, its flags, the torch version, the thread count, the op, train or inference, the
precision and the shapes, and reused from then on (until the op gains or loses a candidate: then it is timed again).

``MICROEXP_TUNE`` (or :func:`force`) overrides: ``off`` takes the defaults without timing anything (the test
suite sets it); ``op=candidate[,op=candidate]`` or a bare candidate name forces one (for tests and comparisons).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from microexp.errors import ConfigError
from microexp.fileio import user_cache_dir

CANDIDATES: dict[str, dict[str, tuple[str, ...]]] = {
    "conv_relu_pool": {"fp32": ("fused", "fused1", "fused4", "fused_half", "wino", "wino_quarter",
                                "wino_half", "wino_f4", "wino_fused_quarter", "wino_fused_half", "onednn_cl",
                                "plain"),
                       "bf16": ("fused", "fused1", "fused4", "fused_half", "amx_quarter", "amx_half", "onednn_cl",
                                "plain")},
    "linear": {"fp32": ("fast", "stream", "plain"), "bf16": ("fast", "bf16", "stream", "stream_bf16", "plain")},
    "linear_sgd": {"fp32": ("fused", "fused_mkl", "plain"), "bf16": ("fused", "fused_mkl", "plain")},
}
DEFAULTS = {"conv_relu_pool": "fused", "linear": "fast", "linear_sgd": "fused"}  # today's path: kept unless beaten by more than MARGIN
MARGIN = 0.05
REPEATS = 3  # alternated timed runs per candidate (after one warm-up run each)
CONFIRM_REPEATS = 5  # more runs of the default and a challenger before leaving the default
LOAD_PER_CORE = 2.0  # a choice measured at a higher 1-minute load per core is not written to the cache
_lock = threading.RLock()
_memory: dict[str, str] = {}
_forced: list[dict[str, str] | str] = []
_retune = False  # set by retune(): measure again instead of reading the file cache
decisions: dict[str, dict[str, Any]] = {}  # this process's choices, for the bench: key -> record
log: Callable[[str], None] = lambda m: print(f"microexp: {m}", file=sys.stderr, flush=True)  # noqa: E731


def cache_path() -> Path:
    """``$MICROEXP_TUNE_CACHE``, else ``~/.cache/microexp/tune.json``."""
    return user_cache_dir("MICROEXP_TUNE_CACHE", "tune.json")


def machine() -> dict[str, Any]:
    """What a choice depends on besides the op: CPU model, its flags, torch version, thread count."""
    return {**_cpu(), "torch": torch.__version__, "threads": torch.get_num_threads()}


@functools.cache
def _cpu() -> dict[str, str]:
    """The CPU model and a digest of its flags, read once per process (every forward asks)."""
    model, flags = "", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            if (line.startswith("flags") or line.startswith("Features")) and not flags:
                flags = " ".join(sorted(line.split(":", 1)[1].split()))
    except OSError:
        import platform

        model = platform.processor() or platform.machine()
    return {"cpu": model, "flags_sha1": hashlib.sha1(flags.encode()).hexdigest()[:12]}


def precision_now() -> str:
    """``bf16`` inside a CPU bf16 autocast region (how :mod:`microexp.precision` asks for bf16), else ``fp32``."""
    if torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16:
        return "bf16"
    return "fp32"


def _parse(spec: str) -> dict[str, str] | str:
    spec = spec.strip()
    if "=" not in spec:
        return spec
    out = {}
    for part in spec.split(","):
        op, _, cand = part.partition("=")
        out[op.strip()] = cand.strip()
    return out


def forced(op: str, precision: str) -> str | None:
    """The candidate forced for ``op`` (:func:`force` first, then ``MICROEXP_TUNE``), ``DEFAULTS`` for ``off``."""
    env = os.environ.get("MICROEXP_TUNE", "").strip()
    for spec in reversed(([_parse(env)] if env else []) + _forced):  # the innermost force() first
        if spec == "off":
            return DEFAULTS[op]
        cand = spec.get(op) if isinstance(spec, dict) else spec
        if cand is None:
            continue
        if cand not in CANDIDATES[op][precision]:
            raise ConfigError(f"MICROEXP_TUNE: {op} has no candidate {cand!r} for {precision} "
                             f"(one of {list(CANDIDATES[op][precision])})")
        return cand
    return None


@contextlib.contextmanager
def force(spec: str) -> Iterator[None]:
    """Within the block, use the candidates ``spec`` names (``MICROEXP_TUNE``'s syntax)."""
    _forced.append(_parse(spec))
    try:
        yield
    finally:
        _forced.pop()


def key(op: str, train: bool, precision: str, shapes: tuple[tuple[int, ...], ...]) -> str:
    m = machine()
    shape = ";".join("x".join(map(str, s)) for s in shapes)
    return f"{m['cpu']}|{m['flags_sha1']}|torch {m['torch']}|{m['threads']} threads|{op}|" \
           f"{'train' if train else 'infer'}|{precision}|{shape}"


def _load() -> dict[str, Any]:
    try:
        data = json.loads(cache_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _store(k: str, record: dict[str, Any]) -> None:
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _load()
        data[k] = record
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(path)
    except OSError:
        pass  # a read-only cache: the choice holds for this process only


def measure(fns: dict[str, Callable[[], Any]], repeats: int = REPEATS, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each function: ``warmup`` untimed rounds, then ``repeats`` rounds timed in turn (A, B, C, A, B, C
    ...), so that a machine that slows down or speeds up shifts them alike. The bench times with it too."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def pick(times: dict[str, list[float]], default: str) -> str:
    """The fastest median, except that ``default`` stays unless beaten by more than ``MARGIN``; never a candidate
    slower than ``plain`` as measured."""
    med = {k: statistics.median(v) for k, v in times.items()}
    best = min(med, key=med.__getitem__)
    keep = default in med and med[best] > med[default] * (1 - MARGIN) and med[default] <= med.get("plain", math.inf)
    return default if keep else best


def choose(op: str, train: bool, shapes: tuple[tuple[int, ...], ...],
           make: Callable[[str], Callable[[], Any]], what: str = "") -> str:
    """The candidate for ``op`` at these shapes: forced, remembered, or measured now (``make(candidate)`` returns a
    function that runs the op once that way)."""
    precision = precision_now()
    cand = forced(op, precision)
    if cand is not None:
        return cand
    k = key(op, train, precision, shapes)
    with _lock:
        if k in _memory:
            return _memory[k]
        record = None if _retune else _load().get(k)
        if not (isinstance(record, dict) and record.get("winner") in CANDIDATES[op][precision]
                and set(record.get("seconds", ())) == set(CANDIDATES[op][precision])):  # a new candidate: again
            names = CANDIDATES[op][precision]
            log(f"tuning {op} ({what or shapes}, {'training' if train else 'inference'}, {precision}) for this "
                f"CPU: timing {', '.join(names)} ...")
            fns = {c: make(c) for c in names}
            with torch.autocast("cpu", enabled=False):
                times = measure(fns)
                winner = pick(times, DEFAULTS[op])
                if winner != DEFAULTS[op]:  # leaving today's path: confirm against it (and plain) with more runs,
                    # every candidate that beat it by the margin (a lucky first round must not hide a better one)
                    first = {c: statistics.median(v) for c, v in times.items()}
                    rivals = [c for c in names if first[c] < first[DEFAULTS[op]] * (1 - MARGIN)]
                    again = measure({c: fns[c] for c in dict.fromkeys((DEFAULTS[op], winner, *rivals, "plain"))},
                                    CONFIRM_REPEATS)
                    for c, v in again.items():
                        times[c] += v
                    winner = pick({c: times[c] for c in again}, DEFAULTS[op])
            med = {c: statistics.median(v) for c, v in times.items()}
            load = os.getloadavg()[0]
            keep = load <= LOAD_PER_CORE * (os.cpu_count() or 1)
            record = {"winner": winner, "seconds": {c: round(v, 5) for c, v in med.items()},
                      "speedup_vs_plain": round(med["plain"] / med[winner], 3),
                      "speedup_vs_default": round(med[DEFAULTS[op]] / med[winner], 3),
                      "load_average": round(load, 2), "cached": keep,
                      "measured": time.strftime("%Y-%m-%d %H:%M")}
            log(f"tuned {op}: {winner} ({', '.join(f'{c} {1000 * v:.1f} ms' for c, v in med.items())})"
                + ("" if keep else f"; load {load:.1f}: kept for this process only"))
            if keep:
                _store(k, record)
        _memory[k] = record["winner"]
        decisions[k] = dict(record, op=op, mode="train" if train else "infer", precision=precision,
                            shapes=[list(s) for s in shapes])
        return record["winner"]


def retune(on: bool = True) -> None:
    """Measure every op again the first time this process meets it (``microexp bench --retune``), replacing
    the cached choices."""
    global _retune
    _retune = on
    clear_memory()


def clear_memory() -> None:
    """Forget this process's choices (the file cache stays)."""
    with _lock:
        _memory.clear()
        decisions.clear()
