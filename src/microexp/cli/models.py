"""``microexp models``: every registered model with its input streams, parameter count and source."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from microexp.errors import ConfigError

if TYPE_CHECKING:  # the registry imports torch: only when the command runs
    from microexp.models.registry import ModelSpec


def _inputs(spec: ModelSpec) -> str:
    if spec.reads == "aus":
        return "aus:100 (annotated AU codes)"
    return " ".join(f"{name}:{'x'.join(map(str, shape))}" for name, shape in spec.input_shapes().items())


def model_table(n_classes: int | None = None) -> list[dict[str, object]]:
    """One row per model: name, kind, input (C x T x H x W per stream), classes, parameters (for ``n_classes``,
    default the seed's published class count, and the default input; counted on the meta device, so nothing is
    allocated), source, description."""
    from microexp.models.registry import get, names, parameter_count

    rows = []
    for name in names():
        spec = get(name)
        k = n_classes or spec.classes
        params = parameter_count(spec, k)
        if params is not None:
            params_text = f"{params:,}"
        else:
            est = spec.build(k)
            params_text = f"- ({est.n_features()} features)" if hasattr(est, "n_features") else "-"
        rows.append({"name": name, "kind": spec.kind, "input": _inputs(spec), "classes": k, "parameters": params,
                     "parameters_text": params_text, "source": spec.source, "description": spec.description})
    return rows


def handler(args: argparse.Namespace) -> int:
    if args.classes is not None and args.classes < 2:
        raise ConfigError(f"--classes={args.classes} must be >= 2")
    rows = model_table(args.classes)
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "parameters_text"} for r in rows], indent=2))
        return 0
    cols = (("name", "name"), ("input (C x T x H x W)", "input"), ("classes", "classes"),
            ("parameters", "parameters_text"), ("source", "source"))
    widths = [max(len(title), *(len(str(r[key])) for r in rows)) for title, key in cols[:-1]]
    print("  ".join(title.ljust(w) for (title, _), w in zip(cols[:-1], widths, strict=True)) + "  " + cols[-1][0])
    for r in rows:
        cells = [str(r[key]).ljust(w) if key not in ("parameters_text", "classes") else str(r[key]).rjust(w)
                 for (_, key), w in zip(cols[:-1], widths, strict=True)]
        print("  ".join(cells) + "  " + str(r["source"]))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="list the registered models (input, parameter count, source)",
                              description="List every registered model with its default input streams "
                                          "(from its preprocessing config), parameter count and seed system.")
    p.add_argument("--classes", type=int, default=None,
                   help="number of output classes for the count (default: each seed's published classes)")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.set_defaults(func=handler)
