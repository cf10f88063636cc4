"""Run a training stage from a resolved config: distributed set-up, loaders, task, fit, export."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.distributed import barrier, init_distributed, shutdown
from pipeline.stages import PerceiverTask, RestorerTask, seeded_torch
from pipeline.trainer import fit

_MODES = {"perceiver": "tiers", "restorer": "triplets"}


def make_loaders(stage: str, config: Mapping[str, Any], rank: int, world_size: int) -> tuple[Any, Any | None]:
    """Training loader for this rank, and a validation loader (rank 0 only, whole split, no augmentation)."""
    from pipeline import make_loader

    data, seed = config["data"], int(config["seed"])
    common = dict(mode=_MODES[stage], crop=data["crop"], types=data["types"], seed=seed)
    train = make_loader(
        data["source"], split=data["split"], batch_size=data["batch_size"], num_workers=data["num_workers"],
        rank=rank, world_size=world_size, **common,
    )
    val = None
    if rank == 0 and data["val_split"]:
        val = make_loader(
            data["source"], split=data["val_split"], batch_size=data["batch_size"], num_workers=0,
            rank=0, world_size=1, augment=False, **common,
        )
    return train, val


def train(stage: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """Train `stage` ("perceiver" or "restorer"); returns the last logged metrics and validation."""
    env = init_distributed(config["run"]["device"])
    try:
        loader, val_loader = make_loaders(stage, config, env.rank, env.world_size)
        with seeded_torch(int(config["seed"])):
            task = PerceiverTask(config, val_loader) if stage == "perceiver" else RestorerTask(config, val_loader, env.device)
            result = fit(task, loader, config, env)
            if val_loader is not None:
                task.model.eval()
                import torch

                with torch.no_grad():
                    result.update(task.validate(task.model))
        if env.is_main and stage == "perceiver":
            task.model.save(Path(config["run"]["out"]) / "perceiver.safetensors")
        barrier()
        return result
    finally:
        shutdown()
