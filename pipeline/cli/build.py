"""perceive-ir build: tiered webdataset shards and a parquet manifest from a folder of photos."""

from __future__ import annotations

import argparse

HELP = "build tiered webdataset shards (hq / mq / lq per sample) and a parquet manifest with dask"
EXAMPLES = [
    "perceive-ir build --source builtin --out /tmp/shards",
    "perceive-ir build --source ~/photos --out data/shards --types noise,haze,rain,blur,low_light --patch 256 --workers 8",
    "perceive-ir build --source files.txt --out data/cdd_shards --types low_light+rain+haze --calibration my_calibration.json",
    "perceive-ir build --source ~/photos --out /shared/shards --scheduler tcp://scheduler:8786",
    "perceive-ir build --source ~/photos --out data/paper --tiers paper   # then: train medium, render-medium",
    "perceive-ir build --source builtin --out /tmp/maps --maps mixed   # severity and quality maps per image",
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", required=True, help="a folder of photos (recursive), a .txt/.parquet list of paths, or 'builtin'")
    p.add_argument("--out", required=True, help="output folder; rerunning the same command resumes an interrupted build")
    p.add_argument("--types", help="comma-separated degradation types, composites as a+b (default: noise,haze,rain,blur,low_light)")
    p.add_argument("--patch", type=int, default=256, help="square patch side in px; 0 keeps whole images (default: 256)")
    p.add_argument("--patches-per-image", type=int, help="patches cut from each photo (default: 4; 1 with --patch 0)")
    p.add_argument("--layout", choices=["random", "grid"], default="random", help="patch positions: random, or spread evenly (default: random)")
    p.add_argument("--samples-per-shard", type=int, default=256, help="samples per tar (default: 256)")
    p.add_argument("--splits", default="train=0.9,val=0.1", help="NAME=FRACTION,...; assigned per photo (default: %(default)s)")
    p.add_argument("--codec", default="png", help="png (default), webp (lossless) or jpeg:Q (lossy, recorded)")
    p.add_argument("--png-level", type=int, default=1, help="PNG zlib level 0-9 (default: 1; higher is slower for ~1%% smaller files)")
    p.add_argument("--tiers", choices=["bands", "paper"], default="bands",
                   help="bands: hq / mq / lq are bands of measured SSIM (default); paper: Perceive-IR's hq = clean, "
                        "lq = degraded, mq = a medium restorer's output, added by `perceive-ir render-medium`")
    p.add_argument("--maps", default="", metavar="GENERATOR",
                   help="spatially varying severity: smooth, gradient, depth, ellipse, regions, or mixed (one drawn per "
                        "image); stores each degraded image's severity map and measured quality map (default: off)")
    p.add_argument("--map-contrast", type=float, default=1.0,
                   help="with --maps, severity spans s(1 - c/2) to s(1 + c/2) around the searched s (default: 1.0)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default: 0)")
    p.add_argument("--calibration", metavar="FILE", help="calibration.json from `perceive-ir calibrate` (default: the shipped one)")
    p.add_argument("--max-pixels", type=int, help="photos above this many pixels are rejected as decompression bombs (default: 100M)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, help="local worker processes (default: one per core)")
    where.add_argument("--scheduler", metavar="ADDR", help="address of an existing dask scheduler, e.g. tcp://host:8786")
    p.add_argument("--overwrite", action="store_true", help="replace a build with a different config in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace):
    """BuildConfig from the command line (UserError for anything wrong, before any work)."""
    from pipeline.cli.args import items
    from shards import DEFAULT_TYPES, BuildConfig, parse_splits
    from shards.sources import DEFAULT_MAX_PIXELS

    per_image = args.patches_per_image if args.patches_per_image is not None else (1 if args.patch == 0 else 4)
    return BuildConfig(
        types=tuple(items(args.types)) or DEFAULT_TYPES,
        patch=args.patch,
        patches_per_image=per_image,
        layout=args.layout,
        samples_per_shard=args.samples_per_shard,
        splits=parse_splits(args.splits),
        codec=args.codec,
        png_level=args.png_level,
        seed=args.seed,
        max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS,
        tiers=args.tiers,
        maps=args.maps,
        map_contrast=args.map_contrast,
        calibration=args.calibration,
    )


def run(args: argparse.Namespace) -> int:
    import sys
    import warnings

    import shards

    config = config_from_args(args)
    with warnings.catch_warnings():
        # One line per warning (the lossy-codec notice), not Python's file:line format.
        warnings.showwarning = lambda message, *a, **k: print(f"perceive-ir build: warning: {message}", file=sys.stderr)
        try:
            result = shards.build(
                args.source, args.out, config, workers=args.workers, scheduler=args.scheduler,
                overwrite=args.overwrite, progress=not args.quiet,
            )
        except shards.BuildError as err:
            print(f"perceive-ir build: error: {err}", file=sys.stderr)
            return 1
    print(result.summary())
    return 0
