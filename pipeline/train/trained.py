"""Trained models at work: load one by its stage and evaluate it on benchmarks or a shard split."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import degradations as D
from pipeline.eval.benchmarks import benchmark_tasks, evaluate_tasks
from pipeline.eval.shards import split_loader
from pipeline.train.stages import get_stage


def evaluate_trained(
    stage: str, checkpoint: str | Path, *, benches: Sequence[str] = (), shards: str | Path | None = None,
    split: str = "val", crop: int | None = None, batch_size: int = 8, max_batches: int = 0, device: torch.device | None = None,
) -> dict[str, Any]:
    """Tables by name: "all_in_one" (the benchmark protocol on `benches`, restorers only) and
    "shards_SPLIT" (the stage's own evaluation on a shard split)."""
    device = device or torch.device("cpu")
    if stage == "perceiver" and benches:
        raise D.UserError("a perceiver is evaluated on shards, not on restoration benchmarks: give --shards DIR")
    if not benches and shards is None:
        raise D.UserError("give --bench NAME=DIR (repeatable) and/or --shards DIR")
    spec = get_stage(stage)
    tasks = benchmark_tasks(benches) if benches else {}  # checks the folders before the model loads
    model = spec.load_trained(checkpoint, device)
    tables: dict[str, Any] = {}
    if tasks:
        tables["all_in_one"] = evaluate_tasks(model, tasks, device)
    if shards is not None:
        with torch.no_grad():
            tables[f"shards_{split}"] = spec.evaluate(model, split_loader(shards, split, batch_size, crop), max_batches)
    return tables
