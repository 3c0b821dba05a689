"""Side-by-side comparison of two runs: headline metrics (with control and chance) and configuration differences."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from microexp.config import config_diff
from microexp.errors import ConfigError
from microexp.fileio import check_output_file, output_errors
from microexp.report.html import STYLE, _e, _fmt, _table, leaks_of
from microexp.runs import load_run

KEYS = ("uf1", "uar", "accuracy")


def _policy(m: dict[str, Any]) -> str:
    return m["epoch_policy"]["name"] + (" (LEAKY)" if leaks_of(m) else "")


def _leaks(m: dict[str, Any]) -> str:
    return ", ".join(x["switch"] for x in leaks_of(m)) or "-"


def _recipe(config: dict[str, Any]) -> str:
    r = config.get("recipe")
    if not r:
        return "-"
    n = len(r.get("deviations") or [])
    return f"{r['name']}:{r.get('profile')}" + (f" ({n} deviation(s))" if n else "")


def compare_runs(a: Path, b: Path) -> dict[str, Any]:
    """Headline rows (label, value in A, value in B) and the configuration keys that differ."""
    ra, rb = load_run(a), load_run(b)
    ma, mb = ra["metrics"], rb["metrics"]
    if (ma.get("task") == "au") != (mb.get("task") == "au"):
        raise ConfigError(f"{a if ma.get('task') == 'au' else b} is an AU-detection run and the other a recognition "
                          "run: compare two runs of the same task")
    if ma.get("task") == "au":
        return {"a": str(a), "b": str(b), "rows": _au_rows(ma, mb),
                "config_diff": config_diff(ra["config"], rb["config"])}
    rows = [["model / dataset / protocol", f"{ma['model']} / {ma['dataset']} / {ma['protocol']}",
             f"{mb['model']} / {mb['dataset']} / {mb['protocol']}"],
            ["epoch policy", _policy(ma), _policy(mb)],
            ["leaks", _leaks(ma), _leaks(mb)],
            ["recipe", _recipe(ra["config"]), _recipe(rb["config"])],
            ["clips / subjects / seeds", f"{ma['n_clips']} / {ma['n_subjects']} / {len(ma['seeds'])}",
             f"{mb['n_clips']} / {mb['n_subjects']} / {len(mb['seeds'])}"]]
    for k in KEYS:
        rows.append([k.upper() if k != "accuracy" else k, _fmt(ma, k), _fmt(mb, k)])
    for k in KEYS:
        ca, cb = ma.get("control") or {}, mb.get("control") or {}
        rows.append([f"shuffle control {k}", _fmt(ca, k), _fmt(cb, k)])
    for k in KEYS:
        rows.append([f"chance {k}", f"{ma['chance'][k]:.3f}", f"{mb['chance'][k]:.3f}"])
    datasets = sorted(set(ma.get("per_dataset") or {}) | set(mb.get("per_dataset") or {}))
    for d in datasets:
        for k in ("uf1", "uar"):
            rows.append([f"{d} {k}", _fmt((ma.get("per_dataset") or {}).get(d, {}), k),
                         _fmt((mb.get("per_dataset") or {}).get(d, {}), k)])
    return {"a": str(a), "b": str(b), "rows": rows, "config_diff": config_diff(ra["config"], rb["config"])}


def _au_rows(ma: dict[str, Any], mb: dict[str, Any]) -> list[list[str]]:
    """Headline rows of two AU-detection runs: means, control, chance and the F1 of every AU either reports."""
    def num(m: dict[str, Any], key: str) -> str:
        return "-" if m.get(key) is None else f"{m[key]:.3f}"

    rows = [["model / dataset / protocol", f"{ma['model']} / {ma['dataset']} / {ma['protocol']}",
             f"{mb['model']} / {mb['dataset']} / {mb['protocol']}"],
            ["clips / subjects / seeds", f"{ma['n_clips']} / {ma['n_subjects']} / {len(ma['seeds'])}",
             f"{mb['n_clips']} / {mb['n_subjects']} / {len(mb['seeds'])}"],
            ["AU min positive", str(ma["au"]["min_positive"]), str(mb["au"]["min_positive"])]]
    for key in ("mean_f1", "mean_macro_f1", "mean_precision", "mean_recall"):
        rows.append([key.replace("_", " "), num(ma, key), num(mb, key)])
    for key in ("mean_f1", "mean_macro_f1"):
        rows.append([f"shuffle control {key.replace('_', ' ')}", num(ma.get("control") or {}, key),
                     num(mb.get("control") or {}, key)])
        rows.append([f"chance {key.replace('_', ' ')}", num(ma["chance"], key), num(mb["chance"], key)])
    names = sorted(set(ma["per_au"]) | set(mb["per_au"]), key=lambda n: int(n[2:]))
    for n in names:
        rows.append([f"{n} F1", num(ma["per_au"].get(n, {}), "f1"), num(mb["per_au"].get(n, {}), "f1")])
    return rows


def compare_text(c: dict[str, Any]) -> str:
    width = max(len(r[0]) for r in c["rows"]) + 2
    lines = [f"{'':{width}}{'A':>24}{'B':>24}", f"{'':{width}}{c['a'][-24:]:>24}{c['b'][-24:]:>24}"]
    lines += [f"{r[0]:{width}}{r[1]:>24}{r[2]:>24}" for r in c["rows"]]
    lines += ["", "configuration differences:" if c["config_diff"] else "configuration: identical"]
    lines += [f"  {k}: {va!r} -> {vb!r}" for k, va, vb in c["config_diff"]]
    return "\n".join(lines)


def compare_html(c: dict[str, Any], out: Path) -> Path:
    out = check_output_file(out, "comparison")
    diff = _table(["key", "A", "B"], [[k, va, vb] for k, va, vb in c["config_diff"]], left=3) \
        if c["config_diff"] else "<p>identical</p>"
    doc = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>microexp compare</title>"
           f"<style>{STYLE}</style></head><body><h1>Run comparison</h1><p>A: {_e(c['a'])}<br>B: {_e(c['b'])}</p>"
           f"<h2>Headline metrics</h2>{_table(['', 'A', 'B'], c['rows'])}"
           f"<h2>Configuration differences</h2>{diff}</body></html>")
    with output_errors(out):
        out.write_text(doc, encoding="utf-8")
    return out
