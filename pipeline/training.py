"""Run a training stage from a resolved config: distributed set-up, loaders, task, fit, export."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.distributed import barrier, init_distributed, shutdown
from pipeline.stages import PerceiverTask, RestorerTask, seeded_torch
from pipeline.trainer import fit

_MODES = {"perceiver": "tiers", "restorer": "triplets"}


def eval_loader(source: Any, split: str, batch_size: int, crop: int | None) -> Any:
    """Triplet batches of a whole split in a fixed order: one process, centre crops, no flips."""
    from pipeline import make_loader

    return make_loader(
        source, split=split, mode="triplets", batch_size=batch_size, crop=crop, num_workers=0,
        rank=0, world_size=1, augment=False,
    )


def make_loaders(stage: str, config: Mapping[str, Any], rank: int, world_size: int) -> tuple[Any, Any | None]:
    """Training loader for this rank, and a validation loader (rank 0 only; see `eval_loader`)."""
    from pipeline import make_loader

    data, seed = config["data"], int(config["seed"])
    train = make_loader(
        data["source"], split=data["split"], mode=_MODES[stage], batch_size=data["batch_size"], crop=data["crop"],
        types=data["types"], seed=seed, num_workers=data["num_workers"], rank=rank, world_size=world_size,
    )
    val = None
    if rank == 0 and data["val_split"]:
        val = eval_loader(data["source"], data["val_split"], data["batch_size"], data["crop"])
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
