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
from degradations.torch_engine import tier_index
from model.restorer import ORACLE_MAPS
from pipeline.data import StreamLoader, make_loader
from pipeline.eval.metrics import RestorationScores, spearman


def split_loader(
    source: str | Path, split: str, batch_size: int, crop: int | None, mode: str = "triplets", maps: bool = False,
) -> StreamLoader:
    """Triplet (or `mode`) batches of a whole split in a fixed order, every sample exactly once
    whatever the batch size: one process, centre crops (None: whole patches), no flips; with `maps`,
    the stored severity and quality maps too."""
    return make_loader(
        source, split=split, mode=mode, batch_size=batch_size, crop=crop, num_workers=0,
        rank=0, world_size=1, augment=False, drop_last=False, maps=maps,
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
    dense = DenseScores()
    quality = torch.linspace(0.0, 1.0, len(D.TIERS), device=device)  # the expected quality of each class
    for batch in first_batches(loader, limit):
        severity = {"lq": batch["severity"], "mq": batch["severity_mq"], "hq": torch.zeros(len(batch["hq"]))}
        per_pixel = getattr(model, "dense", None) is not None and "lq_qmap" in batch
        for label, tier in enumerate(D.TIERS):
            images = batch[tier].to(device)
            if per_pixel:  # one pass through the tower gives both heads' logits
                logits, dense_logits = model.forward_dense(images)
                dense.add(model, images, _measured_map(batch, tier), logits, dense_logits)
            else:
                logits = model(images)
            correct += int((logits.argmax(dim=1) == label).sum())
            total += len(logits)
            scores += (logits.softmax(dim=1) @ quality).tolist()
            severities += [-float(s) for s in severity[tier]]
    metrics = {"tier_accuracy": correct / max(total, 1), "srocc_quality_vs_severity": spearman(scores, severities), "n": total}
    return {**metrics, **dense.metrics()}


class DenseScores:
    """The dense head on a split, per pixel of every lq, mq and hq image: tier accuracy against the
    tiers of the measured quality map, and the Pearson correlation of the predicted quality map with
    the measured one; `flat_*` is the same correlation for the global head's score spread over the
    image, the baseline a map must beat to say *where* an image is bad."""

    def __init__(self) -> None:
        self.correct = self.pixels = 0
        self.predicted: list[torch.Tensor] = []
        self.flat: list[torch.Tensor] = []
        self.measured: list[torch.Tensor] = []

    def add(self, model: nn.Module, images: torch.Tensor, measured: torch.Tensor, logits: torch.Tensor,
            dense_logits: torch.Tensor) -> None:
        """One tier's images, their measured quality maps (B, H, W) and the model's global and
        per-patch logits (`forward_dense`)."""
        size = images.shape[-2:]
        upsampled = torch.nn.functional.interpolate(dense_logits, size=size, mode="bilinear", align_corners=False)
        truth = tier_index(measured, D.DEFAULT_BANDS["ssim"])
        self.correct += int((upsampled.argmax(dim=1).cpu() == truth).sum())
        self.pixels += truth.numel()
        self.predicted.append(model.quality_map(images, dense_logits).cpu().flatten())
        score = logits.softmax(dim=1) @ model.tier_quality
        self.flat.append(score[:, None].expand(-1, size[0] * size[1]).cpu().flatten())
        self.measured.append(measured.flatten())

    def metrics(self) -> dict[str, float]:
        if not self.pixels:
            return {}
        measured = torch.cat(self.measured)
        return {
            "dense_pixel_accuracy": self.correct / self.pixels,
            "dense_quality_corr": _pearson(torch.cat(self.predicted), measured),
            "flat_quality_corr": _pearson(torch.cat(self.flat), measured),
        }


def _measured_map(batch: Mapping[str, Any], tier: str) -> torch.Tensor:
    """A tier's measured quality maps (B, H, W); hq's, which no build stores, are 1 everywhere."""
    if tier == "hq":
        return torch.ones(len(batch["hq"]), *batch["hq"].shape[-2:])
    return batch[f"{tier}_qmap"][:, 0]


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    denominator = float(a.norm() * b.norm())
    return float((a @ b) / denominator) if denominator > 0 else 0.0


@torch.no_grad()
def evaluate_restorer(model: nn.Module, loader: Any, limit: int = 0) -> list[dict[str, float | str]]:
    """PSNR / SSIM per type and tier of restored mq and lq inputs (triplet batches) against hq."""
    device = next(model.parameters()).device
    scores = RestorationScores()
    oracle = ORACLE_MAPS.get(getattr(model, "map_guidance", None))
    for batch in first_batches(loader, limit):
        hq = batch["hq"].to(device)
        for tier in reversed(D.DEGRADED_TIERS):
            if tier in batch:
                degraded = batch[tier].to(device)
                given = {"quality_map": batch[f"{tier}_{oracle}"].to(device)} if oracle else {}
                scores.add(model(degraded, **given), degraded, hq, batch["type"], tier)
    return scores.table()
