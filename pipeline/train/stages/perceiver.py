"""Stage 1: the quality perceiver learns to tell the three tiers apart (cross-entropy over lq, mq, hq)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import degradations as D
from model import QualityPerceiver
from pipeline.eval.shards import evaluate_perceiver
from pipeline.train.stages import Stage, build_model, register_stage

EXPORT = "perceiver.safetensors"  # what the restorer stage's loss.perceiver names


class PerceiverTask:
    """Cross-entropy over (lq, mq, hq) on single tier images; validation: accuracy and rank correlation."""

    def __init__(self, config: Mapping[str, Any], val_loader: Any | None) -> None:
        self.model = build_model(QualityPerceiver, config["model"])
        self.val_loader = val_loader
        self.val_batches = int(config["data"]["val_batches"])

    def loss(self, model: nn.Module, batch: Mapping[str, Any], rng: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        images, tiers = batch.get("image"), batch.get("tier")
        if images is None:  # triplets mode (data.mode=triplets): the three tiers of each sample, one crop and flip for all, as the authors
            images = torch.cat([batch[t] for t in D.TIERS])
            tiers = torch.arange(len(D.TIERS), device=images.device).repeat_interleave(len(batch["hq"]))
        logits = model(images)
        loss = F.cross_entropy(logits, tiers)
        accuracy = (logits.argmax(dim=1) == tiers).float().mean()
        return loss, {"accuracy": float(accuracy)}

    def validate(self, model: nn.Module) -> dict[str, float]:
        return evaluate_perceiver(model, self.val_loader, self.val_batches) if self.val_loader is not None else {}


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
