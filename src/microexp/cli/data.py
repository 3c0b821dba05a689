"""``microexp data``: dataset utilities. ``data check`` verifies a dataset tree against its annotation;
``data list`` names the datasets and class protocols."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="check dataset trees; list datasets and class protocols")
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    check = sub.add_parser("check", help="report clips per class/subject and every problem of a dataset tree "
                                         "(exit 0 clean, 1 problems found)")
    check.add_argument("--dataset", required=True, help="dataset name (see `microexp data list`)")
    check.add_argument("--root", required=True, type=Path, help="the dataset release folder as delivered")
    check.add_argument("--annotation", type=Path, default=None,
                       help="annotation file (default: found in the standard place of the release)")
    check.add_argument("--labels", default=None,
                       help="comma-separated labels the annotation may use (default: the release's own; the plain "
                            "layout has none, so declare yours to catch a typo such as 'joyful')")
    check.add_argument("--no-images", action="store_true", help="do not decode every frame (faster)")
    check.add_argument("--limit", type=int, default=50, help="problems listed in full (default 50)")
    check.set_defaults(func=_check)
    listing = sub.add_parser("list", help="datasets and class protocols")
    listing.set_defaults(func=_list)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _check(args: argparse.Namespace) -> int:
    from microexp.data.check import check_dataset

    report = check_dataset(args.dataset, args.root, args.annotation, read_images=not args.no_images,
                           labels=args.labels)
    print(report.text(limit=args.limit))
    return 0 if report.ok else 1


def _list(args: argparse.Namespace) -> int:
    from microexp.data import classes
    from microexp.data.registry import dataset_names, get_dataset

    print("datasets:")
    for name in dataset_names():
        spec = get_dataset(name)
        print(f"  {name:10s} default classes {spec.default_classes or 'all'}: {spec.description}")
    print("class protocols:")
    width = max(map(len, classes.names()))
    for name in classes.names():
        print(f"  {name:{width}s} {', '.join(classes.get(name).classes)}")
    print(f"  {'all':{width}s} every annotated label is a class (the default of plain and synthetic)")
    return 0
