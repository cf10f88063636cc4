"""perceive-ir preview: contact sheets to check degradations, or a built dataset, by eye."""

from __future__ import annotations

import argparse

HELP = "draw a contact sheet: an image under every type at 5 severities (or a shard dataset's tiers)"
EXAMPLES = [
    "perceive-ir preview builtin:astronaut -o grid.png",
    "perceive-ir preview photo.jpg --types noise,haze,low_light+rain -o grid.png",
    "perceive-ir preview /tmp/shards -o grid.png          # a built dataset: hq / mq / lq per type",
    "perceive-ir preview /tmp/shards --split val --samples 4 --types haze,rain -o grid.png",
    "perceive-ir preview builtin:astronaut --map depth --types haze,blur -o maps.png   # severity varying in space",
    "perceive-ir preview /tmp/maps -o grid.png   # a build made with --maps: severity and quality maps beside each image",
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help="an image (or builtin:NAME), or a folder written by `perceive-ir build`")
    p.add_argument("-o", "--out", required=True, help="output PNG")
    p.add_argument("--types", help="comma-separated types (default: all; for a dataset, all it holds)")
    p.add_argument("--severities", default="0.2,0.4,0.6,0.8,1.0", help="comma-separated severities (image mode)")
    p.add_argument("--seed", type=int, default=0, help="degradation seed (image mode)")
    p.add_argument("--map", metavar="GENERATOR", help="image mode: severity varying over the image from 0 to each severity, "
                   "drawn by a severity map generator (smooth, gradient, depth, ellipse, regions); rows end with the maps")
    p.add_argument("--samples", type=int, default=3, help="samples per type (dataset mode; default: 3)")
    p.add_argument("--split", help="split to draw from (dataset mode; default: the first)")
    p.add_argument("--size", type=int, default=192, help="tile side in px")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import degradations as D
    from pipeline.cli.args import items, numbers
    from pipeline.report.contact_sheet import save_png
    from pipeline.report.sheets import build_sheet, severity_sheet
    from shards import load_photo

    if Path(args.target).is_dir():
        sheet = build_sheet(args.target, items(args.types) or None, args.split, args.samples, args.size)
        path = save_png(sheet, args.out)
        print(f"wrote {path}: {sheet.shape[1]}x{sheet.shape[0]} px, hq / mq / lq per sample")
        return 0
    image = load_photo(args.target)
    types = items(args.types) or D.available()
    severities = numbers(args.severities, float, "--severities")
    path = save_png(severity_sheet(image, types, severities, args.seed, args.size, args.map), args.out)
    maps = f", severity map {args.map} and quality map per row" if args.map else ""
    print(f"wrote {path}: {len(types)} types x {len(severities)} severities{maps}")
    return 0
