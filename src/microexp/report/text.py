"""Plain-text results tables for the terminal."""

from __future__ import annotations

from typing import Any


def _fmt(m: dict[str, Any], key: str) -> str:
    std = m.get(f"{key}_std")
    return f"{m[key]:.3f}" + (f" ± {std:.3f}" if std is not None and len(m.get("seeds", [])) > 1 else "")


def results_table(metrics: dict[str, Any]) -> str:
    """Headline metrics, the shuffle control beside them when run, and per-class recall."""
    lines = [f"{metrics['model']} on {metrics['dataset']} ({metrics['n_clips']} clips, {metrics['n_subjects']} subjects, "
             f"classes {', '.join(metrics['classes'])})",
             f"protocol {metrics['protocol']} ({metrics['n_folds']} folds x {len(metrics['seeds'])} seed(s)); "
             f"epoch policy: {metrics['epoch_policy']['name']} - {metrics['epoch_policy']['description']}"]
    if "training" in metrics:
        t = metrics["training"]
        shapes = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in metrics.get("inputs", {}).items())
        lines.append(f"training: {t['optimizer']} lr {t['lr']:g}" + (f" momentum {t['momentum']:g}" if t["momentum"] else "")
                     + f", batch {t['batch_size']}, {t['epochs']} epochs; input (C x T x H x W) {shapes}")
    header = f"{'':14}{'UF1':>16}{'UAR':>16}{'accuracy':>16}"
    lines += ["", header, "-" * len(header)]
    lines.append(f"{'result':14}{_fmt(metrics, 'uf1'):>16}{_fmt(metrics, 'uar'):>16}{_fmt(metrics, 'accuracy'):>16}")
    control = metrics.get("control")
    if control:
        lines.append(f"{'shuffle ctrl':14}{_fmt(control, 'uf1'):>16}{_fmt(control, 'uar'):>16}"
                     f"{_fmt(control, 'accuracy'):>16}")
    lines.append(f"{'chance':14}{metrics['chance']['uf1']:>16.3f}{metrics['chance']['uar']:>16.3f}"
                 f"{metrics['chance']['accuracy']:>16.3f}")
    if metrics.get("per_dataset"):
        lines.append("")
        for name, m in metrics["per_dataset"].items():
            lines.append(f"{name[:14]:14}{_fmt({**m, 'seeds': metrics['seeds']}, 'uf1'):>16}"
                         f"{_fmt({**m, 'seeds': metrics['seeds']}, 'uar'):>16}"
                         f"{_fmt({**m, 'seeds': metrics['seeds']}, 'accuracy'):>16}   ({m['n']} clips)")
    lines += ["", "per class (recall / support): " + ", ".join(
        f"{c} {v['recall']:.2f}/{v['support']}" for c, v in metrics["per_class"].items())]
    leaks = metrics.get("leaks") or []
    if leaks:
        lines.append("WARNING: LEAKY RUN - do not report as a result: "
                     + "; ".join(f"{x['switch']} ({x['description']})" for x in leaks))
    elif metrics["epoch_policy"].get("leaky"):
        lines.append("WARNING: LEAKY RUN - the epoch was chosen on the test fold; do not report as a result.")
    if metrics.get("n_excluded"):
        lines.append(f"{metrics['n_excluded']} clip(s) excluded: see excluded.csv")
    return "\n".join(lines)
