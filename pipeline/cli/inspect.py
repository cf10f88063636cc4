"""perceive-ir inspect: what a built dataset holds."""

from __future__ import annotations

import argparse

HELP = "summarise a built dataset: counts per split, type and tier, severity and score histograms, errors"
EXAMPLES = [
    "perceive-ir inspect /tmp/shards",
    "perceive-ir inspect data/shards --by-type --max-errors 50",
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="a folder written by `perceive-ir build`")
    p.add_argument("--by-type", action="store_true", help="histograms per type instead of over all types")
    p.add_argument("--no-histograms", action="store_true", help="counts and errors only")
    p.add_argument("--max-errors", type=int, default=20, help="unusable photos listed (default: 20)")


def run(args: argparse.Namespace) -> int:
    import shards

    report = shards.inspect(args.out)
    print(report.text(histograms=not args.no_histograms, by_type=args.by_type, max_errors=args.max_errors))
    return 0
