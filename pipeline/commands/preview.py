"""perceive-ir preview: contact sheets to check degradations, or a built dataset, by eye."""

from __future__ import annotations

import argparse

HELP = "draw a contact sheet: an image under every type at 5 severities (or a shard dataset's tiers)"
EXAMPLES = [
    "perceive-ir preview builtin:astronaut -o grid.png",
    "perceive-ir preview photo.jpg --types noise,haze,low_light+rain -o grid.png",
    "perceive-ir preview /tmp/shards -o grid.png          # a built dataset: hq / mq / lq per type",
    "perceive-ir preview /tmp/shards --split val --samples 4 --types haze,rain -o grid.png",
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help="an image (or builtin:NAME), or a folder written by `perceive-ir build`")
    p.add_argument("-o", "--out", required=True, help="output PNG")
    p.add_argument("--types", help="comma-separated types (default: all; for a dataset, all it holds)")
    p.add_argument("--severities", default="0.2,0.4,0.6,0.8,1.0", help="comma-separated severities (image mode)")
    p.add_argument("--seed", type=int, default=0, help="degradation seed (image mode)")
    p.add_argument("--samples", type=int, default=3, help="samples per type (dataset mode; default: 3)")
    p.add_argument("--split", help="split to draw from (dataset mode; default: the first)")
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


def dataset_sheet(out, types, split: str | None, samples: int, size: int):
    """Rows = types; per sample three tiles, hq / mq / lq, labelled with tier, severity and score."""
    import numpy as np
    import pyarrow.parquet as pq

    import shards
    from pipeline.contact_sheet import grid, tile

    report = shards.inspect(out)  # raises with a clear message if the build is unfinished
    config = report.dataset["config"]
    metric = report.dataset["calibration"]["metric"]
    split = split or next(iter(config["splits"]))
    if split not in config["splits"]:
        raise ValueError(f"split {split!r} is not in {out} (splits: {', '.join(config['splits'])})")
    types = types or config["types"]
    rows = pq.read_table(out / "manifest.parquet", columns=["key", "type"], filters=[("split", "=", split), ("tier", "=", "hq")])
    keys_by_type = rows.to_pandas().groupby("type")["key"].apply(sorted).to_dict()
    chosen = {}
    for name in types:
        keys = keys_by_type.get(name, [])
        if not keys:
            raise ValueError(f"{out} holds no {name!r} samples in split {split!r} (types: {', '.join(config['types'])})")
        # Spread over the sorted keys, so the tiles come from different photos where there are several.
        picks = np.unique(np.linspace(0, len(keys) - 1, min(samples, len(keys))).round().astype(int))
        chosen[name] = [keys[i] for i in picks]
    images = shards.read_samples(out, [k for keys in chosen.values() for k in keys])
    grid_rows = []
    for name in types:
        row = []
        for key in chosen[name]:
            record = images[key]["json"]
            for slot in ("hq", "mq", "lq"):
                r = record[slot]
                row.append(tile(images[key][slot], [f"{slot} s={r['severity']:.2f} {metric}={r['score']:.2f}"], size))
        grid_rows.append(row)
    return grid(grid_rows, row_labels=list(types))


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import degradations as D
    from pipeline.contact_sheet import save_png
    from shards import load_photo

    if Path(args.target).is_dir():
        if not (Path(args.target) / "dataset.json").is_file():
            raise ValueError(f"{args.target} is a folder without dataset.json: give an image, or a folder written by `perceive-ir build`")
        types = [D.canonical_name(t.strip()) for t in args.types.split(",")] if args.types else None
        if args.samples < 1:
            raise ValueError("--samples must be at least 1")
        sheet = dataset_sheet(Path(args.target), types, args.split, args.samples, args.size)
        path = save_png(sheet, args.out)
        print(f"wrote {path}: {sheet.shape[1]}x{sheet.shape[0]} px, hq / mq / lq per sample")
        return 0
    image = load_photo(args.target)
    types = [t.strip() for t in args.types.split(",")] if args.types else D.available()
    severities = [float(s) for s in args.severities.split(",")]
    path = save_png(severity_sheet(image, types, severities, args.seed, args.size), args.out)
    print(f"wrote {path}: {len(types)} types x {len(severities)} severities")
    return 0
