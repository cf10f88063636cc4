"""perceive-ir eval: the all-in-one table for a restorer (or the reference methods alone); tier accuracy for a perceiver."""

from __future__ import annotations

import argparse

HELP = "evaluate a trained restorer (benchmarks or a shard split), the reference methods alone, or a perceiver"
EXAMPLES = [
    ("perceive-ir eval restorer runs/restorer --bench cbsd68=data/CBSD68 --bench rain100l=data/Rain100L "
     "--bench sots=data/SOTS/outdoor --bench gopro=data/GoPro/test --bench lol=data/LOL/eval15 -o results/"),
    "perceive-ir eval reference --bench rain100l=data/Rain100L --protocol y -o results/      # identity + classical, no model",
    "perceive-ir eval restorer runs/restorer --shards shards/ --split val -o results/",
    "perceive-ir eval restorer runs/restorer runs/clearair --bench rain100l=data/Rain100L -o results/   # side by side",
    "perceive-ir eval perceiver runs/perceiver/perceiver.safetensors --shards shards/ --split val",
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    from pipeline.eval.benchmarks import BENCHMARKS
    from pipeline.eval.protocols import DEFAULT_PROTOCOL, PROTOCOLS

    p.add_argument("what", metavar="STAGE", choices=("restorer", "perceiver", "reference"),
                   help="restorer, perceiver, or reference (the identity and classical methods alone, no checkpoint)")
    p.add_argument("checkpoint", nargs="*",
                   help="restorer: a run directory (config.yaml + last.pt), or several (a Perceive-IR and a ClearAIR run, "
                        "say) side by side in one table; perceiver: perceiver.safetensors")
    p.add_argument("--bench", action="append", default=[], metavar="NAME=DIR",
                   help=f"a benchmark folder as its distributors ship it, the layout found by itself for {', '.join(BENCHMARKS)}; "
                        "noise sets (cbsd68, kodak24, ...) are clean images, noised at sigma 15/25/50; any other NAME=DIR "
                        "with degraded/clean subfolders, or NAME=DEGRADED_DIR:CLEAN_DIR; repeat for several")
    p.add_argument("--protocol", default=DEFAULT_PROTOCOL, choices=list(PROTOCOLS),
                   help="; ".join(f"{k}: {v.description}" for k, v in PROTOCOLS.items()) + f" (default: {DEFAULT_PROTOCOL})")
    p.add_argument("--no-reference", dest="reference", action="store_false",
                   help="leave out the classical method rows (the identity row stays)")
    p.add_argument("--shards", help="a shard root written by `perceive-ir build`")
    p.add_argument("--split", default="val")
    p.add_argument("--crop", type=int, default=0, help="centre crop of shard samples (default 0: whole patches)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-batches", type=int, default=0, help="stop after this many batches (0: the whole split)")
    p.add_argument("-o", "--out", default="eval_out", help="folder for the tables (all_in_one.json / .csv, shards_SPLIT.*)")
    p.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import degradations as D
    from pipeline.eval.all_in_one import TABLE, evaluate_methods, format_all_in_one, write_all_in_one
    from pipeline.eval.benchmarks import benchmark_tasks
    from pipeline.eval.tables import format_table, write_table

    if args.what == "reference":
        if args.checkpoint or args.shards or not args.bench or not args.reference:
            raise D.UserError("`eval reference` takes benchmarks only: --bench NAME=DIR (repeatable), no checkpoint, "
                              "no --shards, no --no-reference")
        tables = [(TABLE, evaluate_methods(benchmark_tasks(args.bench), reference=True, protocol=args.protocol))]
    else:
        from pipeline.train import evaluate_trained
        from pipeline.train.distributed import pick_device

        if not args.checkpoint:
            raise D.UserError(f"give the {args.what}'s checkpoint: perceive-ir eval {args.what} CHECKPOINT ...")
        tables = evaluate_trained(
            args.what, args.checkpoint, benches=args.bench, shards=args.shards, split=args.split, crop=args.crop or None,
            batch_size=args.batch_size, max_batches=args.max_batches, device=pick_device(args.device),
            protocol=args.protocol, reference=args.reference,
        )
    for name, rows in tables:  # each table is written as soon as it is done
        if name == TABLE:
            print(format_all_in_one(rows))
            print("wrote", *write_all_in_one(rows, args.out))
            continue
        rows = rows if isinstance(rows, list) else [{"split": args.split, **rows}]
        print(format_table(rows))
        print("wrote", *write_table(rows, Path(args.out), name if args.what == "restorer" else args.what))
    return 0
