"""Numeric precision of training and inference, in one place: ``fp32`` (the default) or ``bf16``.

bf16 runs the model's matrix products and convolutions in bfloat16 under ``torch.autocast`` (fp32 master weights,
fp32 loss and softmax), on CPU or CUDA. It pays on CPUs with bf16 instructions, AVX-512 BF16 (``avx512_bf16``) or
AMX (``amx_bf16``): read from /proc/cpuinfo, and from oneDNN's own check when that file is absent. Elsewhere
bf16 runs emulated (the same bf16 rounding of each product's inputs, several times slower than fp32; measured
0.06-0.28x on AVX2): allowed, with one note on stderr, so that a configuration means the same on every machine. A CUDA device without bf16 is refused with one line.

The fast CPU path (:mod:`microexp.fast`) is fp32 arithmetic; under autocast the models take their plain layers
(``microexp.fast.conv.usable`` is false while autocast is on), which oneDNN runs in bf16.

A model trained by :func:`microexp.train.loop.fit` remembers its precision (:func:`tag`), so that scoring it
(``predict_proba``) uses the precision it was trained in unless told otherwise.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
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


# --- bench -------------------------------------------------------------------------------------------------------

def bench_precision(quick: bool = False, repeats: int = 5, warmup: int = 2, force: bool = False,
                    log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """bf16 against fp32 for MicroExpSTCNN: training step (batch 8), batch-8 inference and batch-1 latency.

    Variants are timed in alternating order within each repeat (ratios only mean something measured so). fp32
    runs the fast CPU path and, for reference, the plain layers; bf16 runs the plain layers under autocast, and for
    inference also with the weights stored in bf16. Where the CPU lacks bf16 instructions nothing is timed (the
    JSON says so) unless ``force``. ``quick``: tiny sizes, figures not meaningful."""
    import torch

    from microexp.models.stcnn import MicroExpSTCNN
    from microexp.timing import alternate, summarise

    support = cpu_support()
    out: dict[str, Any] = {"precision": "bf16", "cpu": support, "quick": quick}
    if not support["native"] and not force:
        out["supported"] = False
        out["note"] = "this CPU has no bf16 instructions (AVX-512 BF16 or AMX): no bf16 speed-up to measure"
        return out
    out["supported"] = bool(support["native"])
    shape, batch = ((1, 20, 32, 32), 2) if quick else ((1, 96, 64, 64), 8)
    torch.manual_seed(0)
    model = MicroExpSTCNN(3, shape)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(batch, *shape, generator=gen), torch.randint(0, 3, (batch,), generator=gen)
    x1 = x[:1].clone()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    frozen = cast_weights(MicroExpSTCNN(3, shape, fast=False), "bf16").eval()

    def train(fast: bool, precision: str) -> Callable[[], None]:
        def step() -> None:
            model.fast = fast
            model.train()
            opt.zero_grad(set_to_none=True)
            with autocast(precision):
                loss = loss_fn(model(clip=x).float(), y)
            loss.backward()
            opt.step()
        return step

    def infer(inp: torch.Tensor, fast: bool, precision: str, weights_bf16: bool = False) -> Callable[[], None]:
        def run() -> None:
            net = frozen if weights_bf16 else model
            net.eval()
            if not weights_bf16:
                model.fast = fast
            with torch.no_grad(), autocast(precision):
                net(clip=inp)
        return run

    log("bf16 vs fp32: training steps ...")
    out["train"] = summarise(alternate({"fp32_fast": train(True, "fp32"), "fp32_plain": train(False, "fp32"),
                                        "bf16": train(False, "bf16")}, repeats, warmup), batch, "fp32_fast")
    for name, inp, n in (("infer_batch", x, batch), ("infer_single", x1, 1)):
        log(f"bf16 vs fp32: {name} ...")
        out[name] = summarise(alternate({"fp32_fast": infer(inp, True, "fp32"), "bf16": infer(inp, False, "bf16"),
                                         "bf16_weights": infer(inp, False, "bf16", True)},
                                        repeats * (5 if n == 1 else 1), warmup), n, "fp32_fast")
    model.fast = True
    out["speedup_vs_fp32_fast"] = {"train": out["train"]["ratios"]["bf16"],
                                   "infer_batch": max(out["infer_batch"]["ratios"][k] for k in ("bf16", "bf16_weights")),
                                   "infer_single": max(out["infer_single"]["ratios"][k]
                                                       for k in ("bf16", "bf16_weights"))}
    return out
