"""perceive-ir restore: a trained restorer applied to an image or a folder of images."""

from __future__ import annotations

import argparse

HELP = "restore one image, or every image under a folder, with a trained restorer (large images in tiles)"
EXAMPLES = [
    "perceive-ir restore runs/restorer hazy.jpg -o restored.jpg",
    "perceive-ir restore runs/restorer/last.pt photos/ -o restored/ --device cuda",
    "perceive-ir restore runs/restorer big.png -o out.png --tile 256 --overlap 32      # less memory",
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a restorer run folder (config.yaml + last.pt), or its last.pt")
    p.add_argument("input", help="an image, or a folder of images (recursive)")
    p.add_argument("-o", "--out", required=True, help="output image (its suffix picks the format), or a folder for a folder")
    p.add_argument("--tile", type=int, default=512, help="tile side in px for large images (default: 512)")
    p.add_argument("--overlap", type=int, default=32, help="overlap of neighbouring tiles in px (default: 32)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: a GPU when there is one)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import sys

    from pipeline.train.distributed import pick_device
    from pipeline.train.restore import restore_files

    written, unusable = restore_files(
        args.checkpoint, args.input, args.out, device=pick_device(args.device), tile=args.tile, overlap=args.overlap,
        progress=not args.quiet,
    )
    for path, reason in unusable:
        print(f"perceive-ir restore: skipped {path}: {reason}", file=sys.stderr)
    print(f"wrote {len(written)} image{'s' if len(written) != 1 else ''}" + (f": {written[0]}" if len(written) == 1 else f" under {args.out}"))
    return 1 if unusable else 0
