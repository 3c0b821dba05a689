"""Numeric precision of training and inference, in one place: ``fp32`` (the default) or ``bf16``.

bf16 runs the model's matrix products and convolutions in bfloat16 under ``torch.autocast`` (fp32 master weights,
fp32 loss and softmax), on CPU or CUDA. On CPU the fast path (:mod:`microexp.fast`) takes the autocast region as its
cue and runs bf16 itself: its convolution work units in bf16 from the fp32 master weights, the wide Dense layers
by whichever candidate the autotuner (:mod:`microexp.fast.tune`) measured fastest (bf16 weights kept between
inference calls, or fp32), float32 between layers; the rest of the model runs under autocast.

It pays on CPUs with bf16 instructions, AVX-512 BF16 (``avx512_bf16``) or AMX (``amx_bf16``): read from
/proc/cpuinfo, and from oneDNN's own check when that file is absent. Elsewhere bf16 runs emulated (the same bf16
rounding of each product's inputs, several times slower than fp32; measured 0.06-0.28x on AVX2): allowed, with one
note on stderr, so that a configuration means the same on every machine. A CUDA device without bf16 is refused
with one line.

A model trained by :func:`microexp.train.loop.fit` remembers its precision (:func:`tag`), so that scoring it
(``predict_proba``) uses the precision it was trained in unless told otherwise.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from microexp.errors import ConfigError

PRECISIONS = ("fp32", "bf16")
CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # either gives native bf16 dot products
_ATTR = "_microexp_precision"
_noted: set[str] = set()


def check_name(precision: str, key: str = "precision") -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"{key}={precision!r} is not one of {list(PRECISIONS)}")
    return precision


def cpu_flags(cpuinfo: str | None = None) -> list[str]:
    """The bf16 flags this CPU reports (``CPU_FLAGS`` found in /proc/cpuinfo's first ``flags`` line)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    for line in cpuinfo.splitlines():
        if line.startswith("flags") or line.startswith("Features"):
            have = set(line.split(":", 1)[-1].split())
            return [f for f in CPU_FLAGS if f in have]
    return []


def cpu_support(cpuinfo: str | None = None) -> dict[str, Any]:
    """``{"native": bool, "flags": [...], "how": str}``: whether this CPU computes bf16 natively."""
    flags = cpu_flags(cpuinfo)
    if flags:
        return {"native": True, "flags": flags, "how": "/proc/cpuinfo"}
    if cpuinfo is None and not Path("/proc/cpuinfo").is_file():  # not Linux: ask oneDNN
        import torch

        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        return {"native": native, "flags": [], "how": "torch.ops.mkldnn._is_mkldnn_bf16_supported"}
    return {"native": False, "flags": [], "how": "/proc/cpuinfo"}


def check(precision: str, device: Any = "cpu", key: str = "precision") -> str | None:
    """Refuse what cannot run (one line); return a note for what runs slower than fp32 (emulated bf16), else None."""
    check_name(precision, key)
    if precision == "fp32":
        return None
    kind = getattr(device, "type", str(device)).split(":")[0]
    if kind == "cuda":
        import torch

        if not torch.cuda.is_available() or not torch.cuda.is_bf16_supported():
            raise ConfigError(f"{key}=bf16: this CUDA device has no bf16 support (use fp32)")
        return None
    if kind != "cpu":
        raise ConfigError(f"{key}=bf16 runs on cpu or cuda, not {kind!r} (use fp32)")
    if cpu_support()["native"]:
        return None
    return f"{key}=bf16: this CPU has no bf16 instructions (AVX-512 BF16 or AMX); bf16 runs emulated, slower than fp32"


def note_once(note: str | None) -> None:
    """Print a precision note once per process (stderr, one line)."""
    if note and note not in _noted:
        _noted.add(note)
        print(f"microexp: note: {note}", file=sys.stderr)


@contextlib.contextmanager
def autocast(precision: str, device: Any = "cpu", cache: bool = True) -> Iterator[None]:
    """``torch.autocast`` to bfloat16 for ``bf16`` on ``device``'s type; nothing for ``fp32``.

    ``cache=False`` re-casts the fp32 weights at every call instead of keeping a bf16 copy for the context's life
    (for a context that sees many models, e.g. a large ensemble)."""
    check_name(precision)
    if precision == "fp32":
        yield
        return
    import torch

    kind = getattr(device, "type", str(device)).split(":")[0]
    with torch.autocast(kind, dtype=torch.bfloat16, cache_enabled=cache):
        yield


def tag(model: Any, precision: str) -> None:
    """Remember on ``model`` the precision it was trained in (read by :func:`of`)."""
    setattr(model, _ATTR, check_name(precision))


def of(model: Any) -> str:
    """The precision ``model`` was trained in (``fp32`` when untagged)."""
    return getattr(model, _ATTR, "fp32")


def cast_weights(model: Any, precision: str) -> Any:
    """For inference only: the weights themselves in bf16 (half the bytes to stream, no per-call cast)."""
    import torch

    return model.to(torch.bfloat16) if check_name(precision) == "bf16" else model
