"""Streaming loaders, distributed training, evaluation and the `perceive-ir` CLI.

Public names load on first use, so `import pipeline` (and the CLI) does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "make_loader": "pipeline.loader",
    "StreamLoader": "pipeline.loader",
    "ShardProblemWarning": "pipeline.loader",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
