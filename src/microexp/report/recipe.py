"""The recipe card of a run started with ``evaluate --recipe``: the recipe, each deviation from it, the published
number(s) beside ours ("published (leaky: why)" where the seed's evaluation leaked) and the run's own leaks.

One card, three renderings: :func:`recipe_card` (a dict), :func:`card_text` (the terminal and
``RUN_DIR/recipe-card.txt``) and :func:`card_html` (the HTML report).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from microexp.errors import ConfigError, MicroexpError
from microexp.fileio import output_errors, write_atomic
from microexp.runs import read_config, read_metrics

CARD_FILE = "recipe-card.txt"


def _ours(metrics: dict[str, Any], metric: str) -> str:
    dataset, _, name = metric.rpartition(".")  # "smic.uf1": a composite's per-dataset score
    if dataset:
        metrics, metric = (metrics.get("per_dataset") or {}).get(dataset) or {}, name
    if metric not in metrics:
        return "-"
    std = metrics.get(f"{metric}_std")
    return f"{metrics[metric]:.4f}" + (f" ± {std:.4f}" if std is not None else "")


def _epoch_range(metrics: dict[str, Any], metric: str) -> str | None:
    rng = metrics.get("epoch_range")
    if not rng or metric not in rng:
        return None
    m = rng[metric]
    return f"{m['mean']:.4f} ± {m['std']:.4f} (epochs {rng['first']}-{rng['last']})"


def _ours_for(metrics: dict[str, Any], p: dict[str, Any]) -> str:
    """Our figure comparable with a published one: the per-dataset score for a ``dataset`` figure, the epoch-range
    mean ± std for a Table VIII-style ``epochs`` figure, else the run's own (final) score."""
    if p.get("dataset"):
        return _ours(((metrics.get("per_dataset") or {}).get(p["dataset"]) or {}), p["metric"])
    if p.get("epochs"):
        return _epoch_range(metrics, p["metric"]) or "- (run with train.report_epochs to compare)"
    return _ours(metrics, p["metric"])


def published_value(p: dict[str, Any], digits: str = ".4f") -> str:
    """``0.8220 ± 0.0502 (epochs 91-100)``, ``0.8886 (smic)`` or ``0.8780`` (``digits``: the number format)."""
    text = f"{p['value']:{digits}}"
    if p.get("std") is not None:
        text += f" ± {p['std']:{digits}} (epochs {p['epochs'][0]}-{p['epochs'][1]})"
    if p.get("dataset"):
        text += f" ({p['dataset']})"
    return text


def published_label(p: dict[str, Any]) -> str:
    label = "published" + (f" [{p['where']}]" if p.get("where") else "")
    if p.get("scope"):
        label += f" ({p['scope']})"
    return f"{label} (leaky: {p['leaky']})" if p.get("leaky") else label


def _counts_row(counts: dict[str, Any] | None, metrics: dict[str, Any]) -> dict[str, Any] | None:
    if not counts:
        return None
    ours = metrics.get("class_counts") or {}
    return {"where": counts.get("where", ""), "published": dict(counts["classes"]), "ours": dict(ours),
            "note": counts.get("note", "")}


def recipe_card(config: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any] | None:
    """The card of a run (its ``config.yaml`` and ``metrics.json`` dicts); ``None`` for a run without a recipe."""
    r = config.get("recipe")
    if not r:
        return None
    from microexp import recipes

    note = ""
    try:
        recipe = recipes.get(r["name"])
        published, seed, table, counts = list(recipe.published), recipe.seed, recipe.table, recipe.counts
        if recipe.version != r.get("version"):
            note = (f"the run used version {r.get('version')} of the recipe; this microexp ships version "
                    f"{recipe.version} (published figures shown from it)")
    except MicroexpError:
        published, seed, table, counts = [], "", "", None
        note = f"recipe {r['name']!r} is not shipped with this microexp: no published figures to show"
    rows = []
    for p in published:
        rows.append({"metric": p["metric"], "published": p["value"], "published_text": published_value(p),
                     "label": published_label(p), "ours": _ours_for(metrics, p),
                     "ours_epoch_range": None if p.get("epochs") or p.get("dataset")
                     else _epoch_range(metrics, p["metric"])})
    leaks = list(metrics.get("leaks") or [])
    return {"name": r["name"], "version": r.get("version"), "profile": r.get("profile"), "seed": seed, "table": table,
            "deviations": list(r.get("deviations") or []), "rows": rows, "leaks": leaks,
            "counts": _counts_row(counts, metrics),
            "leaky": bool(leaks) or bool((metrics.get("epoch_policy") or {}).get("leaky")), "note": note}


def card_text(card: dict[str, Any]) -> str:
    lines = [f"recipe {card['name']} (version {card['version']}, profile {card['profile']})"]
    if card["seed"]:
        lines.append(f"  seed: {card['seed']}; {card['table']}")
    if card["deviations"]:
        lines.append(f"  deviations from the recipe ({len(card['deviations'])}):")
        lines += [f"    {d['key']}: {d['recipe']!r} -> {d['run']!r}" for d in card["deviations"]]
    else:
        lines.append("  deviations from the recipe: none")
    if card["rows"]:
        for row in card["rows"]:
            extra = f"; epoch range {row['ours_epoch_range']}" if row["ours_epoch_range"] else ""
            lines.append(f"  {row['metric']}: {row['label']} {row['published_text']}; ours {row['ours']}{extra}")
    else:
        lines.append("  published: no figure")
    if card.get("counts"):
        c = card["counts"]
        lines.append(f"  clips per class: published [{c['where']}] {_class_text(c['published'])}; ours "
                     f"{_class_text(c['ours']) if c['ours'] else '-'}" + (f" ({c['note']})" if c["note"] else ""))
    if card["leaky"]:
        lines.append("  THIS RUN IS LEAKY: " + ("; ".join(f"{x['switch']} ({x['description']})" for x in card["leaks"])
                                            or "the epoch was chosen on the test fold"))
    if card["note"]:
        lines.append(f"  note: {card['note']}")
    return "\n".join(lines)


def _class_text(counts: dict[str, int]) -> str:
    return " / ".join(f"{k} {v}" for k, v in counts.items()) + f" = {sum(counts.values())}"


def card_html(card: dict[str, Any]) -> str:
    e = html.escape
    parts = [f"<p>Recipe <b>{e(card['name'])}</b> (version {e(str(card['version']))}, profile "
             f"<b>{e(str(card['profile']))}</b>). {e(card['seed'])}; {e(card['table'])}.</p>"]
    if card["deviations"]:
        rows = "".join(f"<tr><td class='l'>{e(d['key'])}</td><td class='l'>{e(repr(d['recipe']))}</td>"
                       f"<td class='l'>{e(repr(d['run']))}</td></tr>" for d in card["deviations"])
        parts.append(f"<p>This run deviates from the recipe in {len(card['deviations'])} value(s):</p><table id='deviations'>"
                     f"<tr><th class='l'>key</th><th class='l'>recipe</th><th class='l'>this run</th></tr>{rows}</table>")
    else:
        parts.append("<p>No deviation from the recipe.</p>")
    if card["rows"]:
        rows = "".join(f"<tr><td class='l'>{e(r['metric'])}</td><td class='l'>{e(r['label'])}</td>"
                       f"<td>{e(r['published_text'])}</td><td>{e(r['ours'])}</td>"
                       f"<td>{e(r['ours_epoch_range'] or '-')}</td></tr>" for r in card["rows"])
        parts.append("<table id='published'><tr><th class='l'>metric</th><th class='l'>figure</th><th>published</th>"
                     f"<th>ours</th><th>ours, epoch range</th></tr>{rows}</table>")
    else:
        parts.append("<p class='note'>The seed publishes no figure for this experiment.</p>")
    if card.get("counts"):
        c = card["counts"]
        parts.append(f"<p>Clips per class: published ({e(c['where'])}) {e(_class_text(c['published']))}; ours "
                     f"{e(_class_text(c['ours']) if c['ours'] else '-')}"
                     + (f" ({e(c['note'])})" if c["note"] else "") + ".</p>")
    if card["note"]:
        parts.append(f"<p class='note'>{e(card['note'])}</p>")
    return "".join(parts)


def write_recipe_card(run_dir: str | Path) -> tuple[Path, str]:
    """Write ``RUN_DIR/recipe-card.txt``; returns (path, text)."""
    card = recipe_card(read_config(run_dir), read_metrics(run_dir))
    if card is None:
        raise ConfigError(f"{run_dir}: the run was not started from a recipe (no recipe in config.yaml)")
    text = card_text(card)
    path = Path(run_dir) / CARD_FILE
    with output_errors(path):
        write_atomic(path, text + "\n")
    return path, text
