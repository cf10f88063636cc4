"""perceive-ir benchmarks: the registered test sets, and a check of a benchmark folder before evaluation."""

from __future__ import annotations

import argparse

HELP = "list the known restoration test sets, or check a benchmark folder (pairs, sizes, formats, duplicates)"
EXAMPLES = [
    "perceive-ir benchmarks list",
    "perceive-ir benchmarks check rain100l data/Rain100L",
    "perceive-ir benchmarks check sots data/SOTS/outdoor/hazy:data/SOTS/outdoor/gt      # two folders named",
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("list", "check"), help="list: the registry; check: one folder")
    p.add_argument("name", nargs="?", help="the benchmark's name (see `list`); any other name checks a generic pair folder")
    p.add_argument("folder", nargs="?", help="its folder as distributed, or DEGRADED_DIR:CLEAN_DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import degradations as D
    from pipeline.eval.benchmarks import ALIASES, BENCHMARKS

    if args.action == "list":
        aliases: dict[str, list[str]] = {}
        for alias, name in ALIASES.items():
            aliases.setdefault(name, []).append(alias)
        print(f"{'name':<14} {'task':<10} {'size':>6}  layouts (degraded + clean)")
        for b in BENCHMARKS.values():
            layouts = "clean images only" if b.clean_only else ", ".join(f"{x.degraded}/+{x.clean}/" for x in b.layouts[:3])
            also = f"  (also: {', '.join(aliases[b.name])})" if b.name in aliases else ""
            print(f"{b.name:<14} {b.task:<10} {b.size or '?':>6}  {layouts}{also}")
        return 0
    if not args.name or not args.folder:
        raise D.UserError("give the benchmark's name and its folder: perceive-ir benchmarks check NAME DIR")
    from pipeline.eval.check import check_benchmark

    check = check_benchmark(f"{args.name}={args.folder}", progress=not args.quiet)
    print(check.format())
    return 0 if check.usable else 1
