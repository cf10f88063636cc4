"""Trained models at work: load one by its stage and evaluate it on benchmarks or a shard split."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

import degradations as D
from pipeline.eval.all_in_one import TABLE, evaluate_methods, model_method
from pipeline.eval.benchmarks import benchmark_tasks
from pipeline.eval.shards import split_loader
from pipeline.train.stages import get_stage


def evaluate_trained(
    stage: str, checkpoint: str | Path, *, benches: Sequence[str] = (), shards: str | Path | None = None,
    split: str = "val", crop: int | None = None, batch_size: int = 8, max_batches: int = 0, device: torch.device | None = None,
    protocol: str = "rgb", reference: bool = True,
) -> Iterator[tuple[str, Any]]:
    """(name, table) as each is done, so a caller can write one before the next starts: "all_in_one"
    (the benchmarks under `protocol`, beside the identity and, with `reference`, the classical
    methods; restorers only), then "shards_SPLIT" (the stage's own evaluation on a shard split).
    Every input is checked before any model runs."""
    device = device or torch.device("cpu")
    spec = get_stage(stage)
    if stage == "perceiver" and (benches or shards is None):
        raise D.UserError("a perceiver is evaluated on shards, not on restoration benchmarks: give --shards DIR (and no --bench)")
    if not benches and shards is None:
        raise D.UserError("give --bench NAME=DIR (repeatable) and/or --shards DIR")
    tasks = benchmark_tasks(benches) if benches else []
    loader = split_loader(shards, split, batch_size, crop) if shards is not None else None
    model = spec.load_trained(checkpoint, device)
    if tasks:
        name = Path(checkpoint).name or "restorer"
        yield TABLE, evaluate_methods(tasks, {name: model_method(model, device)}, reference=reference, protocol=protocol)
    if loader is not None:
        with torch.no_grad():
            yield f"shards_{split}", spec.evaluate(model, loader, max_batches)
