"""Trained models at work: load one by its stage and evaluate it on benchmarks or a shard split."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

import degradations as D
from pipeline.eval.all_in_one import TABLE, evaluate_methods, model_method, model_size
from pipeline.eval.benchmarks import benchmark_tasks
from pipeline.eval.shards import split_loader
from pipeline.train.stages import get_stage
from shards import open_build


def evaluate_trained(
    stage: str, checkpoint: str | Path | Sequence[str | Path], *, benches: Sequence[str] = (),
    shards: str | Path | None = None, split: str = "val", crop: int | None = None, batch_size: int = 8,
    max_batches: int = 0, device: torch.device | None = None, protocol: str = "rgb", reference: bool = True,
) -> Iterator[tuple[str, Any]]:
    """(name, table) as each is done, so a caller can write one before the next starts: "all_in_one"
    (the benchmarks under `protocol`, beside the identity and, with `reference`, the classical
    methods; restorers only), then "shards_SPLIT" (the stage's own evaluation on a shard split).
    Several restorer runs (a Perceive-IR and a ClearAIR, say) share one table, a row each, with
    their parameter counts and seconds per image. Every input is checked before any model runs."""
    device = device or torch.device("cpu")
    spec = get_stage(stage)
    checkpoints = [checkpoint] if isinstance(checkpoint, (str, Path)) else list(checkpoint)
    if stage == "perceiver" and (benches or shards is None):
        raise D.UserError("a perceiver is evaluated on shards, not on restoration benchmarks: give --shards DIR (and no --bench)")
    if stage != "restorer" and len(checkpoints) != 1:
        raise D.UserError(f"a {stage} is evaluated one checkpoint at a time; several share a table for restorers only")
    if not benches and shards is None:
        raise D.UserError("give --bench NAME=DIR (repeatable) and/or --shards DIR")
    tasks = benchmark_tasks(benches) if benches else []
    # A build made with --maps is read with its maps: a dense perceiver is scored per pixel, an oracle-guided restorer gets its map.
    loader = split_loader(shards, split, batch_size, crop, maps=_has_maps(shards)) if shards is not None else None
    models = {name: spec.load_trained(path, device) for name, path in zip(method_names(checkpoints), checkpoints)}
    if tasks:
        methods = {name: model_method(model, device) for name, model in models.items()}
        sizes = {name: model_size(model) for name, model in models.items()}
        yield TABLE, evaluate_methods(tasks, methods, reference=reference, protocol=protocol, sizes=sizes)
    if loader is not None:
        with torch.no_grad():
            if len(models) == 1:
                yield f"shards_{split}", spec.evaluate(next(iter(models.values())), loader, max_batches)
            else:
                yield f"shards_{split}", [{"method": name, **row} for name, model in models.items()
                                          for row in spec.evaluate(model, loader, max_batches)]


def _has_maps(source: str | Path) -> bool:
    return Path(source).is_dir() and bool(open_build(source).config.get("maps"))


def method_names(checkpoints: Sequence[str | Path]) -> list[str]:
    """A table row name per run: its folder name, or its whole path where two folders share a name."""
    names = [Path(c).name or str(c) for c in checkpoints]
    return [n if names.count(n) == 1 else str(c) for n, c in zip(names, checkpoints)]
