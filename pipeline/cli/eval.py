"""perceive-ir eval: the all-in-one table for a restorer; tier accuracy for a perceiver."""

from __future__ import annotations

import argparse

HELP = "evaluate a trained restorer (benchmarks or a shard split) or perceiver (a shard split)"
EXAMPLES = [
    "perceive-ir eval restorer runs/restorer --bench bsd68=data/BSD68 --bench rain100l=data/Rain100L "
    "--bench sots=data/SOTS/outdoor --bench gopro=data/GoPro/test --bench lol=data/LOL/eval15 -o results/",
    "perceive-ir eval restorer runs/restorer --shards shards/ --split val -o results/",
    "perceive-ir eval perceiver runs/perceiver/perceiver.safetensors --shards shards/ --split val",
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", metavar="STAGE", help="what the checkpoint holds: restorer or perceiver")
    p.add_argument("checkpoint", help="restorer: a run directory (config.yaml + last.pt); perceiver: perceiver.safetensors")
    p.add_argument("--bench", action="append", default=[], metavar="NAME=DIR",
                   help="bsd68=DIR (clean images, noised at sigma 15/25/50), NAME=DIR with degraded/clean "
                        "subfolders, or NAME=DEGRADED_DIR:CLEAN_DIR; repeat for several")
    p.add_argument("--shards", help="a shard root written by `perceive-ir build`")
    p.add_argument("--split", default="val")
    p.add_argument("--crop", type=int, default=0, help="centre crop of shard samples (default 0: whole patches)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-batches", type=int, default=0, help="stop after this many batches (0: the whole split)")
    p.add_argument("-o", "--out", default="eval_out", help="folder for the CSV and JSON tables")
    p.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline.eval.tables import format_table, write_table
    from pipeline.train import evaluate_trained
    from pipeline.train.distributed import pick_device

    tables = evaluate_trained(
        args.what, args.checkpoint, benches=args.bench, shards=args.shards, split=args.split, crop=args.crop or None,
        batch_size=args.batch_size, max_batches=args.max_batches, device=pick_device(args.device),
    )
    for name, rows in tables:  # each table is written as soon as it is done
        rows = rows if isinstance(rows, list) else [{"split": args.split, **rows}]
        print(format_table(rows))
        print("wrote", *write_table(rows, Path(args.out), name if args.what == "restorer" else args.what))
    return 0
