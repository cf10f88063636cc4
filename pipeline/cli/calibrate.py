"""perceive-ir calibrate: measure severity -> score curves and each tier's severity range."""

from __future__ import annotations

import argparse

HELP = "measure severity -> quality curves per type on a set of photos; write calibration.json"
EXAMPLES = [
    "perceive-ir calibrate --source builtin -o calibration.json",
    "perceive-ir calibrate --source ~/photos --types noise,haze,low_light+rain+haze --patch 256 -o my_calibration.json",
    "# the shipped default is exactly:  perceive-ir calibrate --source builtin -o degradations/calibration.json",
    "# move low light's tiers onto LOL's real inputs (its lq floor and its curve; the other types are kept):",
    "perceive-ir calibrate --match lol=data/LOL/eval15 --type low_light -o calibration.json",
    "perceive-ir calibrate --match rain100l=data/Rain100L --type rain --calibration calibration.json -o calibration.json",
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", default=None, help="folder, .txt/.parquet list of paths, or 'builtin' (default)")
    p.add_argument("-o", "--out", required=True, help="output calibration.json")
    p.add_argument("--types", help="comma-separated types, composites allowed (default: all registered)")
    p.add_argument("--patch", type=int, default=256, help="square crop side scored (0: whole images); default 256")
    p.add_argument("--patches-per-image", type=int, default=4)
    p.add_argument("--steps", type=int, default=21, help="severity grid points in [0, 1]; default 21")
    p.add_argument("--metric", default="ssim", choices=["ssim", "psnr"])
    p.add_argument("--max-images", type=int, default=200, help="use at most this many photos (the first, in path order)")
    p.add_argument("--seed", type=int, default=0)
    match = p.add_argument_group("matching a real benchmark")
    match.add_argument("--match", metavar="NAME=DIR", help="move one type's bands and curve onto this benchmark's real inputs")
    match.add_argument("--type", help="the type to match (with --match)")
    match.add_argument("--calibration", help="with --match: the calibration to start from (default: the shipped one)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np
    from tqdm import tqdm

    import degradations as D
    from pipeline.cli.args import items
    from shards import load_sources, output_folder

    if args.steps < 2:
        raise D.UserError("--steps must be at least 2")
    output_folder(Path(args.out).parent, "folder of --out")  # before minutes of measuring, not after
    severities = np.round(np.linspace(0.0, 1.0, args.steps), 4)
    if args.match or args.type or args.calibration:
        return _match(args, severities)
    images, unusable = load_sources(args.source or "builtin", args.max_images)
    for source_id, reason in unusable:
        print(f"skipping {source_id}: {reason}")
    types = items(args.types) or D.available()
    total = len(types) * len(images) * args.patches_per_image * len(severities)
    with tqdm(total=total, unit="img", desc="calibrate") as bar:
        cal = D.calibrate(
            images, types, severities=severities, patch=args.patch, patches_per_image=args.patches_per_image,
            seed=args.seed, metric=args.metric, progress=bar.update,
        )
    cal.save(args.out)
    print(f"{'type':<24} {'hq':>15} {'mq':>15} {'lq':>15}   ({cal.metric}; severity ranges)")
    for name, curve in cal.types.items():
        cells = [curve.range_text(t) for t in reversed(D.TIERS)]
        print(f"{name:<24} {cells[0]:>15} {cells[1]:>15} {cells[2]:>15}")
        for note in curve.notes:
            print(f"  note: {note}")
    print(f"wrote {args.out}")
    return 0


def _match(args: argparse.Namespace, severities) -> int:
    import degradations as D
    from pipeline.eval.matching import format_match, match_calibration

    if not (args.match and args.type):
        raise D.UserError("matching a benchmark takes both --match NAME=DIR and --type TYPE")
    if args.source or args.types or args.metric != "ssim":
        raise D.UserError("--match measures the benchmark's own images with the metric of the calibration it starts "
                          "from: leave out --source, --types and --metric")
    from tqdm import tqdm

    base = D.load_calibration(args.calibration) if args.calibration else D.default_calibration()
    with tqdm(unit="img", desc="calibrate") as bar:
        cal = match_calibration(
            base, args.match, args.type, max_images=args.max_images, patch=args.patch,
            patches_per_image=args.patches_per_image, severities=severities, seed=args.seed, progress=bar.update,
        )
    cal.save(args.out)
    print(format_match(cal, args.type))
    print(f"wrote {args.out}; pass it on with --calibration (build, train)")
    return 0
