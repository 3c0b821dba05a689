"""``microexp compare RUN_A RUN_B``: headline metrics side by side and the configuration differences."""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from microexp.fileio import check_output_file
    from microexp.report.compare import compare_html, compare_runs, compare_text

    if args.html:
        check_output_file(args.html, "--html")
    c = compare_runs(args.run_a, args.run_b)
    print(compare_text(c))
    if args.html:
        print(f"written {compare_html(c, args.html)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare two run directories",
                       description="Print two runs' headline metrics (UF1, UAR, accuracy, shuffle control, chance, "
                                   "per dataset) side by side and the configuration keys that differ.")
    p.add_argument("run_a", type=Path, metavar="RUN_A")
    p.add_argument("run_b", type=Path, metavar="RUN_B")
    p.add_argument("--html", type=Path, metavar="FILE", help="also write the comparison as HTML")
    p.set_defaults(func=run)
