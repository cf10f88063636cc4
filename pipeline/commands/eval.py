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
    p.add_argument("what", choices=["restorer", "perceiver"])
    p.add_argument("checkpoint", help="restorer: a run directory (config.yaml + last.pt); perceiver: perceiver.safetensors")
    p.add_argument("--bench", action="append", default=[], metavar="NAME=DIR",
                   help="bsd68=DIR (clean images, noised at sigma 15/25/50), NAME=DIR with degraded/clean "
                        "subfolders, or NAME=DEGRADED_DIR:CLEAN_DIR; repeat for several")
    p.add_argument("--shards", help="a shard root written by `perceive-ir build`")
    p.add_argument("--split", default="val")
    p.add_argument("--crop", type=int, default=256, help="centre crop of shard samples (0: whole)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-batches", type=int, default=0, help="stop after this many batches (0: the whole split)")
    p.add_argument("-o", "--out", default="eval_out", help="folder for the CSV and JSON tables")
    p.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from pipeline.distributed import pick_device
    from pipeline.evaluate import benchmark_tasks, evaluate_tasks, format_table, write_table

    device = pick_device(args.device)
    out = Path(args.out)
    if args.what == "perceiver":
        from model import QualityPerceiver
        from pipeline.stages import evaluate_perceiver

        if not args.shards:
            raise ValueError("a perceiver is evaluated on shards: give --shards DIR")
        model = QualityPerceiver.load(args.checkpoint, device).eval()
        with torch.no_grad():
            result = evaluate_perceiver(model, _loader(args), args.max_batches)
        rows = [{"split": args.split, **result}]
        print(format_table(rows))
        print("wrote", *write_table(rows, out, "perceiver"))
        return 0

    from pipeline.stages import evaluate_restorer, load_trained_restorer

    if not args.bench and not args.shards:
        raise ValueError("give --bench NAME=DIR (repeatable) and/or --shards DIR")
    model = load_trained_restorer(args.checkpoint, device)
    if args.bench:
        rows = evaluate_tasks(model, benchmark_tasks(args.bench), device)
        print(format_table(rows))
        print("wrote", *write_table(rows, out, "all_in_one"))
    if args.shards:
        with torch.no_grad():
            rows = evaluate_restorer(model, _loader(args), args.max_batches)
        print(format_table(rows))
        print("wrote", *write_table(rows, out, f"shards_{args.split}"))
    return 0


def _loader(args: argparse.Namespace):
    from pipeline.training import eval_loader

    return eval_loader(args.shards, args.split, args.batch_size, args.crop or None)
