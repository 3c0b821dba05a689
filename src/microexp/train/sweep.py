"""Grids of runs under one protocol (e.g. the STCNN kernel-size ablation, Reddy et al. 2019 Table IX).

A grid maps dotted configuration keys to lists of values (``model_params.kernel: [[3,3,3],[3,3,7],[3,3,15]]``);
every combination is one run, written to its own run directory under the sweep directory, and the results are
tabulated in ``sweep.csv`` / ``sweep.json``. A sweep directory can be re-run: finished points are reused and
killed points resume at their next unfinished fold.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from microexp import runs as rundir
from microexp.config import RunConfig
from microexp.contract.values import load_yaml
from microexp.errors import ConfigError
from microexp.train.evaluate import check_model, evaluate

# Reddy et al. (IJCNN 2019) Table IX: MicroExpSTCNN validation accuracy (%) on CAS(ME)^2 by kernel
# (rows x cols x frames), single 80/20 split with the epoch picked on that split (docs/models.md §1.11.10).
TABLE_IX = {(3, 3, 3): 82.93, (3, 3, 7): 80.49, (3, 3, 15): 87.80, (3, 3, 19): 29.27,
            (5, 5, 3): 63.30, (5, 5, 7): 58.54, (5, 5, 15): 51.22, (5, 5, 19): 29.27,
            (7, 7, 3): 70.73, (7, 7, 7): 51.22, (7, 7, 15): 29.27, (7, 7, 19): 51.22}
PUBLISHED_NOTE = ("published_table_ix_accuracy: PUBLISHED numbers, not ours - Reddy et al. 2019 Table IX, STCNN on "
                  "CAS(ME)^2, one random 80/20 clip split with the best epoch picked on it (leaky); for reference only")


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``KEY=[v1, v2, ...]`` strings (values in YAML/JSON flow syntax) to a grid."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--grid {item!r} is not KEY=[v1,v2,...]")
        key, raw = item.split("=", 1)
        try:
            values = load_yaml(raw)  # 1e-3 is a number, as in --set
        except yaml.YAMLError as exc:
            raise ConfigError(f"--grid {item!r}: cannot parse the values ({exc})") from None
        grid[key.strip()] = values if isinstance(values, list) else [values]
    return grid


def load_grid(path: Path) -> dict[str, list[Any]]:
    """A YAML grid file: a mapping from dotted keys to lists of values."""
    try:
        data = load_yaml(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the grid ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path}: a grid is a mapping from configuration keys to lists of values")
    return {str(k): v if isinstance(v, list) else [v] for k, v in data.items()}


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    if not grid or any(len(v) == 0 for v in grid.values()):
        raise ConfigError(f"empty grid {grid}")
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(grid[k] for k in keys))]


def point_name(i: int, point: dict[str, Any]) -> str:
    parts = [f"{k.split('.')[-1]}-{'x'.join(map(str, v)) if isinstance(v, list) else v}" for k, v in point.items()]
    return re.sub(r"[^A-Za-z0-9_.x-]+", "_", f"p{i + 1:02d}_" + "_".join(parts))[:120]


def published_accuracy(config: RunConfig) -> float | None:
    """Table IX's accuracy (%) for an STCNN kernel, when this point is one of them."""
    kernel = config.model_params.get("kernel")
    if config.model != "stcnn" or kernel is None:
        return None
    return TABLE_IX.get(tuple(int(k) for k in kernel))


@dataclass
class SweepResult:
    out: Path | None
    table: pd.DataFrame


def run_sweep(base: RunConfig, grid: dict[str, list[Any]], out: Path | None = None, progress: bool = True,
              log: Callable[[str], None] = print, evaluate_fn: Callable[..., Any] = evaluate) -> SweepResult:
    """Evaluate every grid point under ``base``'s protocol; one run directory per point under ``out``."""
    points = grid_points(grid)
    configs = [base.with_overrides([f"{k}={json.dumps(v)}" for k, v in p.items()]) for p in points]
    for config in configs:  # every point must be valid before the first one trains
        check_model(config)
        config.train.check_device()
    rows = []
    for i, (point, config) in enumerate(zip(points, configs, strict=True)):
        name = point_name(i, point)
        run_dir = out / name if out is not None else None
        log(f"[{i + 1}/{len(points)}] {name}")
        resume = run_dir is not None and (run_dir / rundir.CONFIG).is_file()
        result = evaluate_fn(config, out=run_dir, progress=progress, log=log, resume=resume)
        m = result.metrics
        row: dict[str, Any] = {"point": name, **{k: json.dumps(v) for k, v in point.items()}}
        for key in ("uf1", "uar", "accuracy"):
            row[key] = m[key]
            row[f"{key}_std"] = m.get(f"{key}_std", 0.0)
        if m.get("control"):
            row["control_uf1"], row["control_uar"] = m["control"]["uf1"], m["control"]["uar"]
        row["leaky"] = bool(m["epoch_policy"].get("leaky"))
        row["published_table_ix_accuracy"] = published_accuracy(config)
        row["run_dir"] = str(run_dir) if run_dir is not None else ""
        rows.append(row)
    table = pd.DataFrame(rows)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "sweep.csv", index=False)
        (out / "sweep.json").write_text(json.dumps({
            "grid": grid, "base": base.to_dict(), "protocol": base.protocol, "rows": rows,
            "note": PUBLISHED_NOTE}, indent=2))
    return SweepResult(out, table)


def sweep_table(table: pd.DataFrame, grid_keys: list[str]) -> str:
    """Terminal table: one line per point; Table IX's published accuracy beside STCNN kernels, labelled."""
    head = f"{'point':<24}" + "".join(f"{k:>26}" for k in grid_keys) + f"{'UF1':>16}{'UAR':>16}{'accuracy':>16}"
    has_pub = table["published_table_ix_accuracy"].notna().any()
    if has_pub:
        head += f"{'published acc*':>16}"
    lines = [head, "-" * len(head)]
    for _, r in table.iterrows():
        line = f"{r['point'][:23]:<24}" + "".join(f"{str(r[k])[:25]:>26}" for k in grid_keys)
        for key in ("uf1", "uar", "accuracy"):
            line += f"{r[key]:.3f} ± {r[f'{key}_std']:.3f}".rjust(16)
        if has_pub:
            pub = r["published_table_ix_accuracy"]
            line += f"{pub:>15.2f}%" if pd.notna(pub) else f"{'-':>16}"
        lines.append(line + ("  LEAKY" if r["leaky"] else ""))
    if has_pub:
        lines += ["", "* " + PUBLISHED_NOTE]
    return "\n".join(lines)
