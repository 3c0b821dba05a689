"""``microexp recipes [NAME[:PROFILE]]``: the shipped seed recipes, one line each, or one recipe in full."""

from __future__ import annotations

import argparse
import json
from typing import Any


def published_text(published: list[dict[str, Any]]) -> str:
    """``accuracy 0.878 (leaky)``, ``UF1 0.902, UAR 0.902``, or ``none published``."""
    if not published:
        return "none published"
    from microexp.report.recipe import published_value

    def one(p: dict[str, Any]) -> str:
        metric = "accuracy" if p["metric"] == "accuracy" else p["metric"].upper()
        return f"{metric} {published_value(p, '.4g')}" + (" (leaky)" if p["leaky"] else "")

    return ", ".join(one(p) for p in published)


def run(args: argparse.Namespace) -> int:
    from microexp import recipes

    if args.name:
        name, profile = recipes.parse_ref(args.name)
        recipe = recipes.get(name)
        header = recipe.header(profile)
        config = recipe.config_dict(profile)
        if args.json:
            print(json.dumps({"header": header, "config": config}, indent=2, default=str))
            return 0
        import yaml

        print(f"{name} (version {recipe.version}), profile {profile} (profiles: {', '.join(recipe.profile_names)}): "
              f"{header['why']}")
        print(f"seed: {recipe.seed}")
        print(f"reproduces: {recipe.table}; published: {published_text(header['published'])}")
        from microexp.report.recipe import published_label, published_value

        for p in header["published"]:
            print(f"  {p['metric']} {published_value(p)}: {published_label(p)}")
        if header.get("counts"):
            c = header["counts"]
            print(f"clips per class [{c['where']}]: " + " / ".join(f"{k} {v}" for k, v in c["classes"].items())
                  + f" = {sum(c['classes'].values())}" + (f" ({c['note']})" if c.get("note") else ""))
        print("choices (SOURCE [WHERE]: text; SOURCE paper | code | ours | ambiguous):")
        for key, why in recipe.choices.items():
            print(f"  {key}: {why}")
        config.pop("recipe")
        print(f"run configuration (microexp evaluate --recipe {name}:{profile} --root DIR):")
        print(yaml.safe_dump(config, sort_keys=False, width=110).rstrip())
        return 0
    rows = []
    for name in recipes.names():
        r = recipes.get(name)
        rows.append({"name": name, "version": r.version, "profiles": r.profile_names, "model": r.base.get("model"),
                     "dataset": r.base.get("dataset"), "table": r.table, "published": list(r.published)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows) + 2
    for r in rows:
        print(f"{r['name']:{width}}{'/'.join(r['profiles']):12}{r['model']:22}{r['dataset']:10}"
              f"{published_text([p for p in r['published'] if not p.get('dataset')])}"
              + (" (+ per dataset)" if any(p.get("dataset") for p in r["published"]) else ""))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recipes", help="seed recipes: each published experiment as a runnable configuration",
                       description="List the shipped seed recipes with their published figure, or show one "
                                   "(NAME or NAME:PROFILE, profiles paper | code). Run one with "
                                   "`microexp evaluate --recipe NAME[:PROFILE] --root DIR`.")
    p.add_argument("name", nargs="?", metavar="NAME[:PROFILE]", help="show this recipe (default profile paper)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)
