"""perceive-ir precompute: ClearAIR's quality and task provider outputs for a build, once, keyed by sample."""

from __future__ import annotations

import argparse

HELP = "compute ClearAIR's frozen provider outputs (quality, task) for every image of a build, with dask"
EXAMPLES = [
    "perceive-ir precompute shards/ --quality perceiver --quality-arg perceiver=runs/perceiver/perceiver.safetensors",
    "perceive-ir precompute data/shards --quality deqa --quality-arg load_in_4bit=true --device cuda --workers 1   # then: data.provider_cache=data/shards/providers",
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("build", help="a finished build")
    p.add_argument("--quality", metavar="NAME", help="a quality provider (perceiver, deqa, pyiqa), as model.clearair.quality")
    p.add_argument("--quality-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="one of its keyword arguments, as model.clearair.quality_kwargs (value read as YAML); repeatable")
    p.add_argument("--task", metavar="NAME", help="a task provider (daclip, or cfe with a trained CFE: --task-arg cfe=RUN)")
    p.add_argument("--task-arg", action="append", default=[], metavar="KEY=VALUE", help="as --quality-arg, for the task provider")
    p.add_argument("--tiers", default="lq,mq", help="the stored tiers to compute for (default lq,mq: the restorer's inputs)")
    p.add_argument("-o", "--out", help="output folder (default BUILD/providers), the restorer's data.provider_cache")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu", help="where the provider runs (cuda for DeQA-Score; with --workers 1)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, help="local worker processes (default: one per core; 1 for a model that fills the GPU)")
    where.add_argument("--scheduler", metavar="ADDR", help="address of an existing dask scheduler")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def keyword_arguments(pairs: list[str], option: str) -> dict:
    import yaml

    import degradations as D

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise D.UserError(f"{option} wants KEY=VALUE, got {pair!r}")
        out[key] = yaml.safe_load(value) if value else None
    return out


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline.precompute import ProviderSpec, precompute

    specs = []
    if args.quality:
        specs.append(ProviderSpec.of("quality", args.quality, _paths(keyword_arguments(args.quality_arg, "--quality-arg")), args.device))
    if args.task:
        specs.append(ProviderSpec.of("task", args.task, _paths(keyword_arguments(args.task_arg, "--task-arg")), args.device))
    result = precompute(args.build, specs, out=args.out, tiers=[t.strip() for t in args.tiers.split(",") if t.strip()],
                        workers=args.workers, scheduler=args.scheduler, batch_size=args.batch_size, progress=not args.quiet)
    print(result.summary())
    print(f"train with data.provider_cache={Path(args.out) if args.out else Path(args.build) / 'providers'}")
    return 0


def _paths(kwargs: dict) -> dict:
    """Local files named in the arguments made absolute, as the training config makes them (the
    cache's arguments must equal the model's)."""
    from pipeline.train.config import PROVIDER_PATH_ARGS, absolute_path

    return {k: absolute_path(v) if k in PROVIDER_PATH_ARGS else v for k, v in kwargs.items()}
