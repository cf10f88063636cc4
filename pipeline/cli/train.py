"""perceive-ir train perceiver|restorer: one process, or several under torchrun."""

from __future__ import annotations

import argparse

HELP = "train the quality perceiver (stage 1), the medium restorer (paper tiers) or the restorer (stage 2) on built shards"
EXAMPLES = [
    "perceive-ir train medium --data.source data/paper -o runs/medium                 # 2 folds, then: render-medium",
    "perceive-ir train perceiver --data.source shards/ -o runs/perceiver",
    "perceive-ir train restorer --config perceive-ir-3task data.source=shards/ loss.perceiver=runs/perceiver/perceiver.safetensors -o runs/3task",
    "perceive-ir train restorer --config restorer.yaml loss.perceiver=runs/perceiver/perceiver.safetensors",
    "perceive-ir train restorer --config clearair data.source=shards/ -o runs/clearair        # ClearAIR, the paper's recipe",
    "perceive-ir train restorer --config restorer.yaml run.resume=true      # continue after a stop or SIGTERM",
    "torchrun --nproc-per-node 4 -m pipeline.cli train restorer --config restorer.yaml data.source=shards/ -o runs/restorer_ddp",
    "torchrun --nproc-per-node 4 -m pipeline.cli train restorer --config restorer.yaml -o runs/restorer_ddp run.resume=true  # as many processes as before",
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    # No `choices`: the stage registry imports torch, and --help should not; an unknown stage is a clear error.
    p.add_argument("stage", help="the stage to train: perceiver (stage 1), medium (the paper tiers' mq) or restorer (stage 2)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. optim.lr=1e-4 data.batch_size=16")
    p.add_argument("--config", help="YAML file over the stage's defaults, or a shipped preset: perceive-ir-3task, "
                   "perceive-ir-5task (restorer), perceive-ir-perceiver, perceive-ir-medium (see --print-config)")
    p.add_argument("--data.source", dest="source", help="shard root written by `perceive-ir build` (= data.source=...)")
    p.add_argument("-o", "--out", help="run directory (= run.out=...)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt (= run.resume=true)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run(args: argparse.Namespace) -> int:
    import signal
    import sys

    import yaml

    import degradations as D
    from pipeline.train import get_stage, resolve, train
    from pipeline.train.trainer import TrainingStopped

    overrides = list(args.overrides)
    if args.source:
        overrides.append(f"data.source={args.source}")
    if args.out:
        overrides.append(f"run.out={args.out}")
    if args.resume:
        overrides.append("run.resume=true")
    config = resolve(get_stage(args.stage).defaults(), args.config, overrides, stage=args.stage)
    if args.print_config:
        print(yaml.safe_dump(config, sort_keys=False))
        return 0
    if not config["data"]["source"]:
        raise D.UserError("give the shards: --data.source DIR (a root written by `perceive-ir build`)")
    try:
        result = train(args.stage, config)
    except TrainingStopped as stop:  # a scheduler's SIGTERM: not a finished run, so not exit 0
        print(f"perceive-ir train: {stop}", file=sys.stderr)
        return 128 + signal.SIGTERM
    # The averages; per type and tier ("val_psnr/noise/lq") they are in the run's logs.
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items() if "/" not in k))
    return 0
