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
    from pipeline.report.contact_sheet import save_png
    from shards import load_photo

    if args.list:
        print("\n".join(D.available()))
        return 0
    if not args.out:
        raise D.UserError("give -o OUT.png")
    image = load_photo(args.image)
    if args.replay:
        recipe = D.Recipe.from_dict(_json(Path(args.replay).read_text() if Path(args.replay).is_file() else None, args.replay))
        out = D.replay(image, recipe)
    else:
        if not args.type:
            raise D.UserError("give --type (or --replay RECIPE.json)")
        params = _json(args.params, "--params") if args.params else None
        out, recipe = D.degrade(image, args.type, args.severity, params=params, seed=args.seed)
    path = save_png(out, args.out)
    recipe_path = path.with_suffix(".json")
    record = recipe.to_dict()
    record["ssim"] = round(D.ssim(image, out), 5)
    record["tier"] = D.tier_of(record["ssim"])
    recipe_path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {path} and {recipe_path}: ssim {record['ssim']:.3f} ({record['tier']})")
    return 0


def _json(text: str | None, where: str) -> dict:
    import degradations as D

    if text is None:
        raise D.InputNotFound(f"{where} does not exist")
    try:
        value = json.loads(text)
    except ValueError as err:
        raise D.UserError(f"{where} is not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise D.UserError(f"{where} must be a JSON object, got {type(value).__name__}")
    return value
