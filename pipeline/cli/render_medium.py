"""perceive-ir render-medium: a paper-scheme build's mq tier, from medium restorers, beside its shards."""

from __future__ import annotations

import argparse

HELP = "render a --tiers paper build's mq images (a medium restorer's output on lq), cross-fold, with dask"
EXAMPLES = [
    "perceive-ir render-medium data/paper --from runs/medium            # the fold runs of `perceive-ir train medium`",
    "perceive-ir render-medium data/paper --restorer runs/restorer --overwrite   # one restorer for every sample (not cross-fold)",
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("build", help="a finished build made with --tiers paper")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="runs", metavar="RUNS", help="the -o folder of `perceive-ir train medium` (RUNS/fold-K)")
    source.add_argument("--restorer", metavar="RUN", help="a restorer run folder applied to every sample (no cross-fold guarantee)")
    source.add_argument("--folder", metavar="DIR", help="restored images named by sample key (KEY.png, KEY.jpg, ...)")
    p.add_argument("--tile", type=int, default=512, help="tile side in px for large images (default: 512, as the authors)")
    p.add_argument("--overlap", type=int, default=32, help="tile overlap in px (default: 32)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, help="local worker processes (default: one per core)")
    where.add_argument("--scheduler", metavar="ADDR", help="address of an existing dask scheduler")
    p.add_argument("--overwrite", action="store_true", help="replace mq images rendered from another source")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pipeline.render import render_medium

    result = render_medium(
        args.build, runs=args.runs, restorer=args.restorer, folder=args.folder, workers=args.workers,
        scheduler=args.scheduler, tile=args.tile, overlap=args.overlap, overwrite=args.overwrite, progress=not args.quiet,
    )
    print(result.summary())
    return 0
