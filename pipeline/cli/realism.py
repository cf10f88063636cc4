"""perceive-ir realism: a synthetic degradation type measured against a real benchmark's degraded images."""

from __future__ import annotations

import argparse

HELP = "compare a synthetic degradation type with a real benchmark: matched severity, statistics, two-sample test"
EXAMPLES = [
    "perceive-ir realism --bench rain100l=data/Rain100L --type rain -o realism/rain",
    "perceive-ir realism --bench lol=data/LOL/eval15 --type low_light -o realism/low_light",
    "perceive-ir realism --bench cbsd68=data/CBSD68 --type noise --sigma 50 -o realism/noise",
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bench", required=True, metavar="NAME=DIR", help="one benchmark folder, as for `perceive-ir eval`")
    p.add_argument("--type", required=True, help="the synthetic degradation type (a composite may be a+b)")
    p.add_argument("--sigma", type=int, default=25, help="noise sets: the sigma of the real protocol to match (default: 25)")
    p.add_argument("--max-images", type=int, default=None, help="use the first N pairs only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--out", default="realism_out", help="folder for realism.json and side_by_side.png")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from pipeline.eval.realism import realism
    from pipeline.report.sheets import realism_sheet
    from shards import atomic_output, output_folder

    out = output_folder(Path(args.out), "realism folder")  # before minutes of work, not after
    report, triplets = realism(args.bench, args.type, sigma=args.sigma, seed=args.seed, max_images=args.max_images)
    with atomic_output(out / "realism.json") as tmp:
        tmp.write_text(json.dumps(report.to_record(), indent=1) + "\n")
    sheet = realism_sheet(triplets, report, out / "side_by_side.png")
    print(report.format())
    print("wrote", out / "realism.json", sheet)
    return 0
