"""perceive-ir preview: contact sheets to check degradations (or a built dataset) by eye."""

from __future__ import annotations

import argparse

HELP = "draw a contact sheet: an image under every type at 5 severities (or a shard dataset's tiers)"
EXAMPLES = [
    "perceive-ir preview builtin:astronaut -o grid.png",
    "perceive-ir preview photo.jpg --types noise,haze,low_light+rain -o grid.png",
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help="an image (or builtin:NAME)")
    p.add_argument("-o", "--out", required=True, help="output PNG")
    p.add_argument("--types", help="comma-separated types (default: all)")
    p.add_argument("--severities", default="0.2,0.4,0.6,0.8,1.0", help="comma-separated severities")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=192, help="tile side in px")


def severity_sheet(image, types, severities, seed: int, size: int):
    """Rows = types, columns = severities; each tile labelled with severity, SSIM and tier."""
    import degradations as D
    from pipeline.contact_sheet import grid, tile

    rows = []
    for name in types:
        row = []
        for s in severities:
            out, _ = D.degrade(image, name, s, seed=seed)
            score = D.ssim(image, out)
            row.append(tile(out, [f"s={s:.2f} ssim={score:.2f} {D.tier_of(score)}"], size))
        rows.append(row)
    return grid(rows, row_labels=list(types))


def run(args: argparse.Namespace) -> int:
    import degradations as D
    from pipeline.contact_sheet import save_png
    from shards.sources import load_image

    if args.target.startswith("builtin:"):
        image = D.builtin_photo(args.target.split(":", 1)[1])
    else:
        image = load_image(args.target)
    types = [t.strip() for t in args.types.split(",")] if args.types else D.available()
    severities = [float(s) for s in args.severities.split(",")]
    path = save_png(severity_sheet(image, types, severities, args.seed, args.size), args.out)
    print(f"wrote {path}: {len(types)} types x {len(severities)} severities")
    return 0
