"""Stage 1: the quality perceiver learns to tell the three tiers apart (cross-entropy over lq, mq, hq)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import degradations as D
from degradations.torch_engine import tier_index
from model import QualityPerceiver
from pipeline.eval.shards import evaluate_perceiver
from pipeline.train.stages import Stage, build_model, register_stage

EXPORT = "perceiver.safetensors"  # what the restorer stage's loss.perceiver names


class PerceiverTask:
    """Cross-entropy over (lq, mq, hq) on single tier images; validation: accuracy and rank correlation.

    With `model.dense_head`, also cross-entropy per patch against the tier of the measured quality
    map averaged over each patch's cell (weighted by `loss.dense`); its batches need the stored
    maps (`data.maps: true`, a build made with `--maps`).
    """

    def __init__(self, config: Mapping[str, Any], val_loader: Any | None) -> None:
        self.model = build_model(QualityPerceiver, config["model"])
        self.val_loader = val_loader
        self.val_batches = int(config["data"]["val_batches"])
        self.dense_weight = float(config.get("loss", {}).get("dense", 1.0))
        if self.model.dense is not None and not config["data"].get("maps"):
            raise D.UserError("model.dense_head learns from quality maps: set data.maps=true (a build made with `perceive-ir build --maps`)")

    def loss(self, model: nn.Module, batch: Mapping[str, Any], rng: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        images, tiers, quality = batch.get("image"), batch.get("tier"), batch.get("qmap")
        if images is None:  # triplets mode (data.mode=triplets): the three tiers of each sample, one crop and flip for all, as the authors
            images = torch.cat([batch[t] for t in D.TIERS])
            tiers = torch.arange(len(D.TIERS), device=images.device).repeat_interleave(len(batch["hq"]))
            if "lq_qmap" in batch:
                quality = torch.cat([batch["lq_qmap"], batch["mq_qmap"], torch.ones_like(batch["lq_qmap"])])
        if self.model.dense is None:
            logits = model(images)
            loss = F.cross_entropy(logits, tiers)
            return loss, {"accuracy": float((logits.argmax(dim=1) == tiers).float().mean())}
        logits, dense = model(images, dense=True)
        targets = patch_tiers(quality, dense.shape[-2:])
        dense_loss = F.cross_entropy(dense, targets)
        loss = F.cross_entropy(logits, tiers) + self.dense_weight * dense_loss
        return loss, {
            "accuracy": float((logits.argmax(dim=1) == tiers).float().mean()),
            "dense_loss": float(dense_loss.detach()),
            "patch_accuracy": float((dense.argmax(dim=1) == targets).float().mean()),
        }

    def validate(self, model: nn.Module) -> dict[str, float]:
        return evaluate_perceiver(model, self.val_loader, self.val_batches) if self.val_loader is not None else {}


def patch_tiers(quality: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The tier (0 lq, 1 mq, 2 hq) of each cell of `grid`: the measured quality map (B, 1, H, W)
    averaged over the cell, graded by the SSIM bands as a whole image's score is."""
    return tier_index(F.adaptive_avg_pool2d(quality, grid)[:, 0], D.DEFAULT_BANDS["ssim"])


@register_stage
class Perceiver(Stage):
    name = "perceiver"
    mode = "tiers"

    def task(self, config: Mapping[str, Any], val_loader: Any | None, device: torch.device) -> PerceiverTask:
        return PerceiverTask(config, val_loader)

    def evaluate(self, model: nn.Module, loader: Any, limit: int = 0) -> dict[str, float]:
        return evaluate_perceiver(model, loader, limit)

    def load_trained(self, path: str | Path, device: torch.device) -> nn.Module:
        path = Path(path)
        file = path / EXPORT if path.is_dir() else path
        if not file.is_file():
            raise D.InputNotFound(f"no trained perceiver at {file}: give {EXPORT} of a perceiver run, or its folder")
        return QualityPerceiver.load(file, device).eval()

    def export(self, model: nn.Module, out: Path, config: Mapping[str, Any]) -> None:
        model.save(out / EXPORT)  # type: ignore[operator]  (a QualityPerceiver)
