"""Run a training stage from a resolved config: distributed set-up, loaders, task, fit, export."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import degradations as D
from pipeline.data import StreamLoader, make_loader
from pipeline.eval.shards import split_loader
from pipeline.train.config import absolute_paths
from pipeline.train.distributed import barrier, init_distributed, shutdown
from pipeline.train.stages import Stage, get_stage, seeded_torch
from pipeline.train.trainer import fit


def make_loaders(stage: Stage, config: Mapping[str, Any], rank: int, world_size: int) -> tuple[StreamLoader, StreamLoader | None]:
    """Training loader for this rank, and a validation loader (rank 0 only; see `split_loader`)."""
    data, seed = config["data"], int(config["seed"])
    train = make_loader(
        data["source"], split=data["split"], mode=data.get("mode") or stage.mode, batch_size=data["batch_size"], crop=data["crop"],
        types=data["types"], seed=seed, num_workers=data["num_workers"], rank=rank, world_size=world_size,
        where=stage.where(config), maps=bool(data.get("maps")), synth_device=bool(data.get("synth_device")),
    )
    val = None
    if rank == 0 and data["val_split"]:
        try:
            val = split_loader(
                data["source"], data["val_split"], data["batch_size"], data["crop"], stage.validation_mode(config), maps=bool(data.get("maps")),
            )
        except D.UserError as err:
            raise D.UserError(f"validation split: {err} (data.val_split=null trains without validation)") from err
    return train, val


def train(stage: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """Train `stage` (a name in the stage registry); returns the last logged metrics and the final
    validation (of the last run, when the stage makes several: one per fold)."""
    spec = get_stage(stage)
    config = absolute_paths(config)  # the saved config.yaml then works from any directory (a resume, a SLURM job)
    env = init_distributed(config["run"]["device"])
    try:
        for run in spec.runs(config):
            loader, val_loader = make_loaders(spec, run, env.rank, env.world_size)
            with seeded_torch(int(run["seed"])):
                task = spec.task(run, val_loader, env.device)
                result = fit(task, loader, run, env)
            if env.is_main:
                spec.export(task.model, Path(run["run"]["out"]), run)
            barrier()
        return result
    finally:
        shutdown()
