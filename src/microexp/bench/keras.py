"""``microexp bench --vs-keras``: microexp against the seeds' own framework (Keras on TensorFlow), side by side.

The Keras references of MicroExpSTCNN and MicroExpFuseNet (intermediate, late) are built from the seeds' layer
tables in the repository's ``benchmarks/keras_reference.py``, outside the package, with their own optional
requirements (``benchmarks/requirements.txt``). Both frameworks run in one process, on the same thread count, and
every figure is timed in alternating order within each repeat (microexp, Keras, microexp, ...), so a machine that
slows down or speeds up during the run shifts both alike: only the ratios are meant to be read.

Figures per model: training clips/s (one SGD step, batch 8, cross-entropy), batch-8 inference clips/s and batch-1
latency, and the parameter counts of both (equal by construction; a difference is reported, never hidden).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from microexp.bench.timing import alternate, pair_ratio, spread, summarise
from microexp.errors import ConfigError

MODELS = ("stcnn", "fusenet-intermediate", "fusenet-late")
INSTALL = "pip install -r benchmarks/requirements.txt (tensorflow-cpu 2.21, keras 3)"


def benchmarks_dir() -> Path:
    """The repository's ``benchmarks/`` folder (``MICROEXP_BENCHMARKS`` overrides)."""
    env = os.environ.get("MICROEXP_BENCHMARKS")
    here = Path(env) if env else Path(__file__).resolve().parents[3] / "benchmarks"
    if not (here / "keras_reference.py").is_file():
        raise ConfigError(f"--vs-keras: no Keras references at {here}/keras_reference.py; they live in the "
                          "benchmarks/ folder of a microexp source checkout (or set MICROEXP_BENCHMARKS)")
    return here


def keras_reference() -> ModuleType:
    """``benchmarks/keras_reference.py``, imported; one line with the install command when TF/Keras are absent."""
    path = benchmarks_dir() / "keras_reference.py"
    for name in ("tensorflow", "keras"):
        if importlib.util.find_spec(name) is None:
            raise ConfigError(f"--vs-keras needs TensorFlow and Keras, and {name} is not installed: {INSTALL}")
    spec = importlib.util.spec_from_file_location("microexp_keras_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shapes(name: str, quick: bool) -> dict[str, tuple[int, int, int, int]]:
    """(C, T, H, W) input of each stream: the seeds' CAS(ME)^2 sizes, or tiny ones for ``quick``."""
    if name == "stcnn":
        return {"clip": (1, 20, 32, 32) if quick else (1, 96, 64, 64)}
    size = (1, 20, 16, 16) if quick else (1, 96, 32, 32)
    return {"eyes": size, "mouth": size}


def build_pair(name: str, quick: bool, n_classes: int = 3) -> tuple[Any, Any]:
    """The microexp model (registry) and its Keras reference for the same inputs."""
    import torch

    from microexp.models.registry import get

    ref = keras_reference()
    torch.manual_seed(0)
    spec = get(name)
    torch_model = spec.builder(n_classes, shapes(name, quick), **spec.hparams)
    return torch_model, ref.build(name, n_classes, shapes(name, quick))


def parameter_counts(name: str, quick: bool = False) -> dict[str, int]:
    torch_model, keras_model = build_pair(name, quick)
    return {"microexp": sum(p.numel() for p in torch_model.parameters()), "keras": int(keras_model.count_params())}


VARIANTS = {"bf16": (True, "bf16"), "plain": (False, "fp32")}  # extra microexp variants: (fast path, precision)


def bench_model(name: str, quick: bool, repeats: int, warmup: int, precision: str = "fp32",
                log: Callable[[str], None] = lambda _m: None, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """``microexp`` (the fast path in ``precision``) against ``keras``, and each ``extra`` variant of microexp
    (``bf16``: the fast path in bf16, ``plain``: the plain layers in fp32, as ``microexp_bf16`` /
    ``microexp_plain``) in the same alternation, so that every ratio between them comes from one run."""
    import numpy as np
    import torch

    from microexp import precision as prec
    from microexp.train.loop import train_step

    ref = keras_reference()
    torch_model, keras_model = build_pair(name, quick)
    streams = shapes(name, quick)
    batch = 2 if quick else 8
    warmup = max(1, warmup)  # the first call at a shape may tune microexp's fast path: never timed
    rng = np.random.default_rng(0)
    xs = {k: rng.standard_normal((batch, *s)).astype(np.float32) for k, s in streams.items()}
    y = np.arange(batch) % 3
    tx = {k: torch.from_numpy(v) for k, v in xs.items()}
    ty = torch.from_numpy(y).long()
    opt = torch.optim.SGD(torch_model.parameters(), lr=0.01)  # the seeds' Keras 'SGD' string
    loss_fn = torch.nn.CrossEntropyLoss()
    kx = ref.to_keras_layout(xs)
    k1 = {k: v[:1] for k, v in kx.items()}
    t1 = {k: v[:1] for k, v in tx.items()}
    ref.compile_sgd(keras_model)
    kstep, kinfer = ref.train_step(keras_model, kx, y, 3), ref.infer(keras_model)

    variants = {"microexp": (True, precision), **{f"microexp_{v}": VARIANTS[v] for v in extra}}

    def train(fast: bool, precision: str) -> Callable[[], None]:
        def step() -> None:
            torch_model.fast = fast
            torch_model.train()
            train_step(torch_model, opt, tx, ty, loss_fn, precision)
        return step

    def infer(inputs: dict[str, torch.Tensor], fast: bool, precision: str) -> Callable[[], None]:
        def run() -> None:
            torch_model.fast = fast
            torch_model.eval()
            with torch.no_grad(), prec.autocast(precision):
                torch_model(**inputs)
        return run

    def timed(make: Callable[..., Callable[[], None]], keras_fn: Callable[[], Any], n: int, clips: int,
              *args: Any) -> dict[str, Any]:
        fns = {k: make(*args, *v) for k, v in variants.items()}
        times = alternate({**fns, "keras": keras_fn}, n, warmup)
        torch_model.fast = True
        result = summarise(times, clips, "keras")
        result["between"] = {f"{k}/microexp": pair_ratio(times, k, "microexp") for k in fns if k != "microexp"}
        return result

    counts = {"microexp": sum(p.numel() for p in torch_model.parameters()),
              "keras": int(keras_model.count_params())}
    out: dict[str, Any] = {"model": name, "inputs": {k: list(v) for k, v in streams.items()},
                           "precision": precision, "parameters": counts,
                           "parameters_equal": counts["microexp"] == counts["keras"]}
    log(f"{name}: training steps, microexp and keras alternating ...")
    out["train"] = timed(train, kstep, repeats, batch)
    log(f"{name}: batch-{batch} inference ...")
    out["infer_batch"] = timed(infer, lambda: kinfer(kx), repeats, batch, tx)
    log(f"{name}: batch-1 latency ...")
    out["infer_single"] = timed(infer, lambda: kinfer(k1), repeats * 3, 1, t1)
    out["ratio_microexp_to_keras"] = {k: out[k]["ratios"]["microexp"] for k in ("train", "infer_batch", "infer_single")}
    return out


def run_vs_keras(models: tuple[str, ...] = MODELS, quick: bool = False, repeats: int = 5, warmup: int = 2,
                 threads: int | None = None, precision: str = "fp32",
                 log: Callable[[str], None] = lambda _m: None, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every model of ``models`` in microexp and Keras (and the ``extra`` microexp variants), alternating;
    JSON-ready."""
    import torch

    from microexp import precision as prec
    from microexp.bench.machine import machine_facts
    from microexp.bench.tuning import tuned_choices

    prec.note_once(prec.check(precision, "cpu", "--precision"))
    if "bf16" in extra:
        prec.note_once(prec.check("bf16", "cpu", "--goals"))
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ConfigError(f"--vs-keras compares {list(MODELS)}, not {unknown}")
    ref = keras_reference()
    n = threads or os.cpu_count() or 1
    torch.set_num_threads(n)
    ref.set_threads(n)
    out: dict[str, Any] = {"machine": machine_facts(), "keras": ref.versions(), "threads": n, "quick": quick,
                           "repeats": repeats, "warmup": warmup, "precision": precision,
                           "order": "alternating within each repeat: microexp, keras",
                           "extra": list(extra),
                           "models": [bench_model(m, quick, repeats, warmup, precision, log, extra) for m in models]}
    out["tuned"] = tuned_choices()
    out["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    if set(extra) >= {"bf16", "plain"}:
        out["goals"] = goals(out)
    return out


# Issue #28's done-when figures: (model, figure, variant, against, goal); "keras" ratios are microexp / Keras fp32
GOALS = (("stcnn", "train", "microexp", "keras", 2.5), ("stcnn", "infer_batch", "microexp", "keras", 1.25),
         ("stcnn", "infer_single", "microexp", "keras", 1.25),
         ("fusenet-intermediate", "train", "microexp", "keras", 2.5),
         ("fusenet-intermediate", "infer_batch", "microexp", "keras", 1.25),
         ("fusenet-intermediate", "train", "microexp", "microexp_plain", 3.0),
         ("stcnn", "train", "microexp_bf16", "microexp", 1.5),
         ("stcnn", "infer_batch", "microexp_bf16", "microexp", 1.5),
         ("stcnn", "infer_batch", "microexp_bf16", "keras", 2.0))
GOALS_MODELS = ("stcnn", "fusenet-intermediate")


def goals(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Each done-when figure of issue #28 that this run measured: median ratio, per-repeat range, goal, met."""
    by = {b["model"]: b for b in r["models"]}
    rows = []
    for model, fig, a, b, goal in GOALS:
        if model not in by or (a != "microexp" and a not in by[model][fig]["ratios"]) or \
                (b != "keras" and b not in by[model][fig]["ratios"]):
            continue
        f = by[model][fig]
        if b == "keras":
            ratio, rng = f["ratios"][a], f["ratio_range"][a]
        elif a == "microexp":  # the fast path over a variant: the inverse of that variant's ratio to it
            v = f["between"][f"{b}/microexp"]
            ratio, rng = round(1 / v["ratio"], 3), [round(1 / v["range"][1], 3), round(1 / v["range"][0], 3)]
        else:
            ratio, rng = f["between"][f"{a}/{b}"]["ratio"], f["between"][f"{a}/{b}"]["range"]
        rows.append({"model": model, "figure": fig, "what": f"{a} / {b}", "ratio": ratio, "range": rng,
                     "goal": goal, "met": ratio >= goal})
    return rows


def summary(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [f"microexp vs Keras {r['keras']['keras']} / TensorFlow {r['keras']['tensorflow']} on {m['cpu']}, "
             f"{r['threads']} threads, load {m['load_average_at_start'][0]} -> {m['load_average_at_end'][0]}, "
             f"precision {r['precision']} (alternating; ratio = microexp / keras speed)"]
    for b in r["models"]:
        p = b["parameters"]
        same = "equal" if b["parameters_equal"] else f"DIFFER (keras {p['keras']:,})"
        lines.append(f"  {b['model']}: {p['microexp']:,} parameters, {same}")
        for key, what, unit in (("train", "train batch", "clips/s"), ("infer_batch", "infer batch", "clips/s"),
                                ("infer_single", "batch 1", "ms")):
            f = b[key]
            vals = f["ms"] if unit == "ms" else f["clips_per_s"]
            label = f"{what} {f['batch']}" if key != "infer_single" else what
            lines.append(f"    {label:14s} microexp {vals['microexp']:8.2f} {unit:7s} keras {vals['keras']:8.2f} "
                         f"{unit:7s} ratio {spread(f, 'microexp')}")
            for k, v in f.get("between", {}).items():
                lines.append(f"    {'':14s} {k.split('/')[0]:8s} {vals[k.split('/')[0]]:8.2f} {unit:7s} "
                             f"{spread(f, k.split('/')[0])} of keras, {v['ratio']:.2f}x "
                             f"({v['range'][0]:.2f}-{v['range'][1]:.2f}) of microexp")
    if r.get("goals"):
        lines.append("issue #28 goals (median ratio, min-max over the alternated repeats):")
        lines += [f"  {g['model']:21s} {g['figure']:12s} {g['what']:26s} {g['ratio']:5.2f}x ({g['range'][0]:.2f}-"
                  f"{g['range'][1]:.2f})  goal {g['goal']}x  {'met' if g['met'] else 'NOT met'}" for g in r["goals"]]
    from microexp.bench.tuning import lines as tuned_lines

    return "\n".join(lines + tuned_lines(r.get("tuned", {})))
