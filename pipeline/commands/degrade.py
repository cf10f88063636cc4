"""perceive-ir degrade: one image, one degradation, a recipe beside the output."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "degrade one image by a type and severity (or explicit params); writes OUT.png and OUT.json"
EXAMPLES = [
    "perceive-ir degrade photo.jpg --type haze --severity 0.6 --seed 1 -o hazy.png",
    "perceive-ir degrade photo.jpg --type noise --params '{\"sigma\": 25}' -o sigma25.png",
    "perceive-ir degrade photo.jpg --type low_light+rain+haze --severity 0.5 -o cdd.png",
    "perceive-ir degrade photo.jpg --replay hazy.json -o again.png",
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="input photo (or 'builtin:NAME', e.g. builtin:astronaut)")
    p.add_argument("--type", help="degradation type; `a+b` chains types (see --list)")
    p.add_argument("--severity", type=float, help="strength in [0, 1]")
    p.add_argument("--params", help="explicit params as JSON instead of --severity")
    p.add_argument("--replay", metavar="RECIPE.json", help="apply a recipe written by an earlier run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--out", help="output PNG; the recipe goes to the same name with .json")
    p.add_argument("--list", action="store_true", help="list the available types and exit")


def run(args: argparse.Namespace) -> int:
    import degradations as D
    from pipeline.contact_sheet import save_png
    from shards import load_photo

    if args.list:
        print("\n".join(D.available()))
        return 0
    if not args.out:
        raise ValueError("give -o OUT.png")
    image = load_photo(args.image)
    if args.replay:
        recipe = D.Recipe.from_dict(json.loads(Path(args.replay).read_text()))
        out = D.replay(image, recipe)
    else:
        if not args.type:
            raise ValueError("give --type (or --replay RECIPE.json)")
        params = json.loads(args.params) if args.params else None
        out, recipe = D.degrade(image, args.type, args.severity, params=params, seed=args.seed)
    path = save_png(out, args.out)
    recipe_path = path.with_suffix(".json")
    record = recipe.to_dict()
    record["ssim"] = round(D.ssim(image, out), 5)
    record["tier"] = D.tier_of(record["ssim"])
    recipe_path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {path} and {recipe_path}: ssim {record['ssim']:.3f} ({record['tier']})")
    return 0
