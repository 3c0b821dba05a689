"""Self-contained HTML report of a run directory (``microexp report RUN_DIR`` -> ``RUN_DIR/report.html``).

Sections: epoch policy (a red LEAKY banner listing the run's leaks, ``metrics.json`` ``leaks``), the recipe card of
a run started from a seed recipe (:mod:`microexp.report.recipe`), configuration, dataset summary with the
excluded clips, headline metrics beside the shuffle control and chance, confusion matrix, per-class /
per-subject / per-dataset bars, learning curves per fold, seed spread and saliency examples. Every figure is a
matplotlib PNG embedded as base64, so the file can be mailed or archived on its own.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from microexp.errors import ConfigError, MicroexpError
from microexp.fileio import check_output_file, output_errors
from microexp.report import plots
from microexp.report.recipe import card_html, recipe_card
from microexp.runs import load_run  # noqa: F401 - importable from here as before

STYLE = """
body { font-family: sans-serif; margin: 24px auto; max-width: 1180px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 17px; border-bottom: 1px solid #ccc; padding-bottom: 3px; margin-top: 28px; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; } th { background: #f2f2f2; }
td.l, th.l { text-align: left; }
pre { background: #f7f7f7; padding: 8px; font-size: 12px; overflow-x: auto; }
img { max-width: 100%; margin: 4px 0; }
.leaky { background: #c00000; color: #fff; font-weight: bold; padding: 12px 16px; font-size: 16px; }
.policy { padding: 8px 12px; background: #eef5ee; }
.note { color: #666; font-size: 12px; }
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _fmt(m: dict[str, Any], key: str) -> str:
    if key not in m:
        return "-"
    std = m.get(f"{key}_std")
    return f"{m[key]:.3f}" + (f" ± {std:.3f}" if std is not None else "")


def _table(header: list[str], rows: list[list[Any]], left: int = 1) -> str:
    th = "".join(f"<th class='l'>{_e(h)}</th>" if i < left else f"<th>{_e(h)}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td class='l'>{_e(v)}</td>" if i < left else f"<td>{_e(v)}</td>"
                                    for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _img(uri: str, alt: str) -> str:
    return f"<img src='{uri}' alt='{_e(alt)}'>"


def metrics_table(m: dict[str, Any]) -> str:
    rows = [["result", _fmt(m, "uf1"), _fmt(m, "uar"), _fmt(m, "accuracy")]]
    if m.get("control"):
        c = m["control"]
        rows.append(["shuffle control", _fmt(c, "uf1"), _fmt(c, "uar"), _fmt(c, "accuracy")])
    rows.append(["chance", *(f"{m['chance'][k]:.3f}" for k in ("uf1", "uar", "accuracy"))])
    return _table(["", "UF1", "UAR", "accuracy"], rows)


def leaks_of(m: dict[str, Any]) -> list[dict[str, str]]:
    """The run's leaks (``metrics.json`` ``leaks``); an older run has only the test-peek flag."""
    leaks = list(m.get("leaks") or [])
    if not leaks and m["epoch_policy"].get("leaky"):
        leaks = [{"switch": "train.epoch_policy=test-peek", "description": "the epoch was chosen on the test fold"}]
    return leaks


def epoch_policy_section(m: dict[str, Any]) -> str:
    p = m["epoch_policy"]
    text = (f"Epoch policy <b>{_e(p['name'])}</b>: {_e(p['description'])}. Up to {_e(p.get('epochs'))} epochs; "
            f"epochs used: {_e(p.get('chosen_epochs'))}.")
    leaks = leaks_of(m)
    if leaks:
        items = "".join(f"<li><b>{_e(x['switch'])}</b>: {_e(x['description'])}</li>" for x in leaks)
        return (f"<div class='leaky' id='leaky'>LEAKY RUN: test data influenced this run. These numbers reproduce "
                f"published practice and are not a result.<ul>{items}</ul></div><p>{text}</p>")
    return f"<p class='policy'>{text}</p>"


def saliency_section(run: dict[str, Any], generate: int, log: Callable[[str], None]) -> str:
    """Embed RUN_DIR/explain/*.png; when there are none, generate up to ``generate`` (one per class if possible)."""
    explain_dir = run["dir"] / "explain"
    pngs = sorted(explain_dir.glob("*.png")) if explain_dir.is_dir() else []
    note = ""
    if not pngs and generate > 0 and not run["predictions"].empty:
        from microexp.explain.saliency import explain_clip

        preds = run["predictions"]
        first_seed = preds[preds["seed"] == preds["seed"].min()]
        right = first_seed[first_seed["true"] == first_seed["predicted"]]
        picks = (right if not right.empty else first_seed).drop_duplicates("true").head(generate)
        for _, r in picks.iterrows():
            try:
                res = explain_clip(run["dir"], f"{r['dataset']}/{r['subject']}/{r['clip_id']}", fold=r["fold"],
                                   seed=int(r["seed"]))
                pngs += [f for f in res.files if f.suffix == ".png"]
            except MicroexpError as exc:
                note = f"saliency examples not generated: {exc}"
                log(note)
                break
    if not pngs:
        return f"<p class='note'>{_e(note or 'no saliency examples (run `microexp explain RUN_DIR --clip ID`).')}</p>"
    imgs = "".join(f"<figure>{_img(plots.png_file_uri(p.read_bytes()), p.stem)}<figcaption class='note'>"
                   f"{_e(p.stem)} (GIF beside it in explain/)</figcaption></figure>" for p in pngs[:6])
    return ("<p class='note'>Vanilla-gradient saliency of the predicted class (positive part, per frame), "
            "binarised at each frame's 90th percentile, and Grad-CAM on the last 3D convolution; computed with the "
            "checkpoint of the fold in which the clip was held out.</p>" + imgs)


def render_report(run_dir: Path, out: Path | None = None, saliency: int = 2,
                  log: Callable[[str], None] = print) -> Path:
    """Write the HTML report of a run directory; returns its path (default RUN_DIR/report.html)."""
    if saliency < 0:
        raise ConfigError(f"saliency={saliency}: give a number of examples >= 0")
    run = load_run(run_dir)
    path = check_output_file(Path(out) if out else Path(run_dir) / "report.html", "report")
    m, cfg = run["metrics"], run["config"]
    if m.get("task") == "au":
        return _write(path, f"microexp AU run: {m['model']} on {m['dataset']} ({m['protocol']})", au_sections(run))
    parts = [f"<h1>{_e(m['model'])} on {_e(m['dataset'])}: protocol {_e(m['protocol'])}</h1>",
             "<h2>Epoch policy</h2>", epoch_policy_section(m)]
    card = recipe_card(cfg, m)
    if card is not None:
        parts += ["<h2 id='recipe'>Recipe card</h2>", card_html(card)]

    parts += ["<h2>Metrics</h2>",
              f"<p>{m['n_clips']} clips, {m['n_subjects']} subjects, {m['n_folds']} fold(s) x "
              f"{len(m['seeds'])} seed(s) {_e(m['seeds'])}. UF1 and UAR on the pooled predictions of all folds"
              f"{'; mean ± std over seeds' if len(m['seeds']) > 1 else ''}.</p>", metrics_table(m)]

    parts += ["<h2>Dataset</h2>"]
    preds = run["predictions"]
    if not preds.empty:
        one = preds[preds["seed"] == preds["seed"].min()]
        counts = one.groupby(["dataset", "true"]).size().unstack(fill_value=0)
        parts.append(f"<p>Test predictions per source dataset and class (seed {int(one['seed'].iloc[0])}; under "
                     f"LOSO, k-fold and LODO every used clip is tested once).</p>")
        parts.append(_table(["dataset", *counts.columns], [[d, *row.tolist()] for d, row in counts.iterrows()]))
    excluded = run["excluded"]
    parts.append(f"<p>{len(excluded)} clip(s) excluded.</p>")
    if not excluded.empty:
        parts.append(_table(["clip", "reason"], excluded.head(200).values.tolist(), left=2))

    first = f" (seed {m['seeds'][0]})" if len(m["seeds"]) > 1 else ""  # per-class/subject rows are the first seed's
    parts += ["<h2>Confusion matrix</h2>", _img(plots.confusion(m["confusion"], m["classes"], "confusion (rows: true)"
                                                              + (", summed over seeds" if first else "")),
                                               "confusion matrix")]
    parts += ["<h2>Per class</h2>", _img(plots.bars(m["per_class"], ("precision", "recall", "f1"), f"per class{first}"),
                                         "per-class bars")]
    if m.get("per_subject"):
        parts += ["<h2>Per subject</h2>", _img(plots.bars(m["per_subject"], ("uf1", "uar", "accuracy"),
                                                          f"per test subject (pooled over its clips){first}",
                                                          m["chance"]), "per-subject bars")]
    if m.get("per_dataset"):
        rows = [[d, _fmt(v, "uf1"), _fmt(v, "uar"), _fmt(v, "accuracy"), v["n"]] for d, v in m["per_dataset"].items()]
        parts += ["<h2>Per dataset</h2>", _table(["dataset", "UF1", "UAR", "accuracy", "clips"], rows),
                  _img(plots.bars(m["per_dataset"], ("uf1", "uar"), "per source dataset", m["chance"]),
                       "per-dataset bars")]
    hist = run["history"]
    if not hist.empty:
        parts += ["<h2>Learning curves</h2>", _img(plots.learning_curves(hist), "learning curves")]
    parts += ["<h2>Seed spread</h2>",
              _img(plots.seed_spread(m["per_seed"], (m.get("control") or {}).get("per_seed"), m["chance"]),
                   "seed spread")]
    parts += ["<h2>Saliency examples</h2>", saliency_section(run, saliency, log)]
    parts += ["<h2>Configuration</h2>", f"<pre>{_e(yaml.safe_dump(cfg, sort_keys=False))}</pre>",
              f"<p class='note'>microexp {_e(m.get('microexp_version'))}; {_e(m.get('seconds'))} s.</p>"]
    return _write(path, f"microexp run: {m['model']} on {m['dataset']} ({m['protocol']})", parts)


def _write(path: Path, title: str, parts: list[str]) -> Path:
    doc = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
           f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
    with output_errors(path):
        path.write_text(doc, encoding="utf-8")
    return path


def au_sections(run: dict[str, Any]) -> list[str]:
    """The report of an AU-detection run (microexp.train.au): per-AU metrics and bars against the shuffled control
    and chance."""
    m, cfg = run["metrics"], run["config"]
    control = (m.get("control") or {}).get("per_au", {})
    chance = m["chance"]["per_au_f1"]
    au = m["au"]
    parts = [f"<h1>AU detection: {_e(m['model'])} on {_e(m['dataset'])}, protocol {_e(m['protocol'])}</h1>",
             f"<p>{m['n_clips']} clips, {m['n_subjects']} subjects, {m['n_folds']} fold(s), seed(s) {_e(m['seeds'])}. "
             f"In each fold the AUs with at least {au['min_positive']} positive training clips; positives are "
             f"{_e(au['positives'])}. Sigmoid outputs, threshold {au['threshold']}, the last of "
             f"{m['epoch_policy']['epochs']} epochs; metrics on the pooled predictions of all folds.</p>"]
    rows = [[name, f"{v['f1']:.3f}", f"{v['macro_f1']:.3f}", f"{v['precision']:.3f}", f"{v['recall']:.3f}",
             v["support"], f"{control[name]['f1']:.3f}" if name in control else "-", f"{chance.get(name, 0):.3f}"]
            for name, v in m["per_au"].items()]
    rows.append(["mean", f"{m['mean_f1']:.3f}", f"{m['mean_macro_f1']:.3f}", f"{m['mean_precision']:.3f}",
                 f"{m['mean_recall']:.3f}", "", f"{m['control']['mean_f1']:.3f}" if m.get("control") else "-",
                 f"{m['chance']['mean_f1']:.3f}"])
    parts += ["<h2>Per AU</h2>", _table(["AU", "F1", "macro F1", "precision", "recall", "support", "control F1",
                                         "chance F1"], rows)]
    groups = {name: {"f1": v["f1"], "control_f1": control.get(name, {}).get("f1", float("nan")),
                     "chance_f1": chance.get(name, 0.0)} for name, v in m["per_au"].items()}
    parts.append(_img(plots.bars(groups, ("f1", "control_f1", "chance_f1"),
                                 "F1 per AU: the run, its shuffled control and chance"), "per-AU bars"))
    if m.get("per_dataset"):
        parts += ["<h2>Per dataset</h2>", _table(["dataset", "mean F1", "mean macro F1", "clips"],
                                                 [[d, f"{v['mean_f1']:.3f}", f"{v['mean_macro_f1']:.3f}", v["n"]]
                                                  for d, v in m["per_dataset"].items()])]
    parts += ["<h2>AUs chosen per fold</h2>",
              _table(["fold", "AUs"], [[f, ", ".join(a)] for f, a in au["chosen_per_fold"].items()], left=2)]
    excluded = run["excluded"]
    parts.append(f"<p>{len(excluded)} clip(s) excluded.</p>")
    if not excluded.empty:
        parts.append(_table(["clip", "reason"], excluded.head(200).values.tolist(), left=2))
    if m.get("au_unparsed"):
        parts += ["<h2>AU codes not understood</h2>", "<ul>" + "".join(f"<li>{_e(x)}</li>" for x in m["au_unparsed"])
                  + "</ul>"]
    parts += ["<h2>Configuration</h2>", f"<pre>{_e(yaml.safe_dump(cfg, sort_keys=False))}</pre>",
              f"<p class='note'>microexp {_e(m.get('microexp_version'))}; {_e(m.get('seconds'))} s.</p>"]
    return parts
