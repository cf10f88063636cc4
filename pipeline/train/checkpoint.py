"""Checkpoints that resume exactly: model, optimiser, scheduler, step, RNG and loader state.

Written by rank 0 to a temporary name and renamed, so a crash never leaves a
half-written `last.pt`; read with `torch.load(weights_only=True)`, which
refuses anything but tensors and plain containers (no pickled code).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from degradations import InputNotFound
from shards import atomic_output


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: str | Path, state: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        torch.save(state, tmp)
    return path


def load(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InputNotFound(f"no checkpoint at {path}")
    return torch.load(path, map_location=device, weights_only=True)
