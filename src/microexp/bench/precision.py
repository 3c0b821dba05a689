"""bf16 against fp32 for MicroExpSTCNN: training step (batch 8), batch-8 inference and batch-1 latency, alternated."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from microexp.bench.timing import alternate, summarise
from microexp.precision import autocast, cpu_support
from microexp.train.loop import train_step


def bench_precision(quick: bool = False, repeats: int = 5, warmup: int = 2, force: bool = False,
                    log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Variants timed in turn within each repeat (ratios only mean something measured so), each ratio against the
    fp32 fast path: ``bf16`` is the fast path in bf16 (what ``precision: bf16`` runs on CPU: bf16 conv work units,
    the autotuner's Dense candidate), ``bf16_plain`` the plain layers under autocast (bf16 before the fast path ran
    it). Where the CPU lacks bf16 instructions nothing is timed (the JSON says so) unless ``force``. ``quick``:
    tiny sizes, figures not meaningful."""
    from microexp.models.stcnn import MicroExpSTCNN

    support = cpu_support()
    out: dict[str, Any] = {"precision": "bf16", "cpu": support, "quick": quick}
    if not support["native"] and not force:
        out["supported"] = False
        out["note"] = "this CPU has no bf16 instructions (AVX-512 BF16 or AMX): no bf16 speed-up to measure"
        return out
    out["supported"] = bool(support["native"])
    if not support["native"]:
        out["note"] = "emulated: this CPU has no bf16 instructions, so bf16 is timed in software"
    shape, batch = ((1, 20, 32, 32), 2) if quick else ((1, 96, 64, 64), 8)
    warmup = max(1, warmup)  # the first call at a shape may tune the fast path: never timed
    torch.manual_seed(0)
    model = MicroExpSTCNN(3, shape)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(batch, *shape, generator=gen), torch.randint(0, 3, (batch,), generator=gen)
    x1 = x[:1].clone()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def train(fast: bool, precision: str) -> Callable[[], None]:
        def step() -> None:
            model.fast = fast
            model.train()
            train_step(model, opt, {"clip": x}, y, loss_fn, precision)  # the loop's step; frees its gradients
        return step

    def infer(inp: torch.Tensor, fast: bool, precision: str) -> Callable[[], None]:
        def run() -> None:
            model.fast = fast
            model.eval()
            with torch.no_grad(), autocast(precision):
                model(clip=inp)
        return run

    variants = {"fp32_fast": (True, "fp32"), "bf16": (True, "bf16"), "bf16_plain": (False, "bf16")}
    log("bf16 vs fp32: training steps ...")
    out["train"] = summarise(alternate({k: train(*v) for k, v in variants.items()}, repeats, warmup), batch,
                             "fp32_fast")
    for name, inp, n in (("infer_batch", x, batch), ("infer_single", x1, 1)):
        log(f"bf16 vs fp32: {name} ...")
        out[name] = summarise(alternate({k: infer(inp, *v) for k, v in variants.items()},
                                        repeats * (5 if n == 1 else 1), warmup), n, "fp32_fast")
    model.fast = True
    out["speedup_vs_fp32_fast"] = {k: out[k]["ratios"]["bf16"] for k in ("train", "infer_batch", "infer_single")}
    out["speedup_range"] = {k: out[k]["ratio_range"]["bf16"] for k in ("train", "infer_batch", "infer_single")}
    return out
