"""Reproducible module initialisation without leaving global random state behind."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def seeded_torch(seed: int) -> Iterator[None]:
    """Seed torch's generator inside the block only: the caller's random state is restored after.

    Module initialisation draws from torch's global generator and takes no
    Generator argument; scoping the seed makes models reproducible from the
    config without leaving global state behind. (Training draws come from
    per-step generators; see `Task.loss`.)
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.random.manual_seed(seed)
        yield
