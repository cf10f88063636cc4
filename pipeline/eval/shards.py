"""Models on a shard split: tier accuracy of a perceiver, PSNR / SSIM of a restorer per type and tier.

Both read triplet batches of a whole split in a fixed order (`split_loader`),
the first `limit` batches (0: all) of epoch 0; a loader with `rewind` is
rewound first, so every validation pass during training sees the same batches.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

import degradations as D
from pipeline.data import StreamLoader, make_loader
from pipeline.eval.metrics import RestorationScores, spearman


def split_loader(source: str | Path, split: str, batch_size: int, crop: int | None, mode: str = "triplets") -> StreamLoader:
    """Triplet (or `mode`) batches of a whole split in a fixed order, every sample exactly once
    whatever the batch size: one process, centre crops (None: whole patches), no flips."""
    return make_loader(
        source, split=split, mode=mode, batch_size=batch_size, crop=crop, num_workers=0,
        rank=0, world_size=1, augment=False, drop_last=False,
    )


def first_batches(loader: Any, limit: int) -> Iterator[Mapping[str, Any]]:
    """The first `limit` batches (0: all) of epoch 0, rewinding a loader that has `rewind`."""
    if hasattr(loader, "rewind"):
        loader.rewind(0)
    return itertools.islice(loader, limit or None)


@torch.no_grad()
def evaluate_perceiver(model: nn.Module, loader: Any, limit: int = 0) -> dict[str, float]:
    """Tier accuracy over every image of triplet batches (lq, mq and hq of each sample), and the
    Spearman correlation of the predicted quality with -severity (clean images count as
    severity 0; higher is better, 1 is a perfect ranking)."""
    device = next(model.parameters()).device
    correct = total = 0
    scores, severities = [], []
    quality = torch.linspace(0.0, 1.0, len(D.TIERS), device=device)  # the expected quality of each class
    for batch in first_batches(loader, limit):
        severity = {"lq": batch["severity"], "mq": batch["severity_mq"], "hq": torch.zeros(len(batch["hq"]))}
        for label, tier in enumerate(D.TIERS):
            logits = model(batch[tier].to(device))
            correct += int((logits.argmax(dim=1) == label).sum())
            total += len(logits)
            scores += (logits.softmax(dim=1) @ quality).tolist()
            severities += [-float(s) for s in severity[tier]]
    return {"tier_accuracy": correct / max(total, 1), "srocc_quality_vs_severity": spearman(scores, severities), "n": total}


@torch.no_grad()
def evaluate_restorer(model: nn.Module, loader: Any, limit: int = 0) -> list[dict[str, float | str]]:
    """PSNR / SSIM per type and tier of restored mq and lq inputs (triplet batches) against hq."""
    device = next(model.parameters()).device
    scores = RestorationScores()
    for batch in first_batches(loader, limit):
        hq = batch["hq"].to(device)
        for tier in reversed(D.DEGRADED_TIERS):
            if tier in batch:
                degraded = batch[tier].to(device)
                scores.add(model(degraded), degraded, hq, batch["type"], tier)
    return scores.table()
