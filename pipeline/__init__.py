"""Streaming loaders, distributed training, evaluation, reports and the `perceive-ir` CLI.

    data/    loaders over shards (catalog, epoch plan, workers, modes)
    eval/    metrics, the benchmark protocol, models on a shard split
    train/   training stages (a registry), the loop, configs, checkpoints, trained models at work
    report/  contact sheets, figures, the demo
    cli/     one module per `perceive-ir` command

Imports point down that list's flow: data <- eval <- train <- report <- cli.
Public names load on first use, so `import pipeline` (and the CLI) does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "make_loader": "pipeline.data",
    "StreamLoader": "pipeline.data",
    "ShardProblemWarning": "pipeline.data",
    "train": "pipeline.train",
    "get_stage": "pipeline.train",
    "load_restorer": "pipeline.train.restore",
    "restore": "pipeline.train.restore",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
