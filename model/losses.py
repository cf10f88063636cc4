"""The restorer's training losses and the paper's default weights for them.

* `L1Loss` (torch's): reconstruction against the clean image; `PSNRLoss`, NAFNet's alternative.
* `QualityLoss`: 1 - p(hq | restored) under a frozen `QualityPerceiver`.
* `DifficultyAdaptivePerceptualLoss`: pull toward the clean image, push from the low- and
  medium-quality versions, in the feature space of a frozen timm network.
* `InfoNCE`: the CFE's contrastive loss, negatives gathered across ranks when distributed.
* `LossWeights`: 1 (reconstruction), 0.1 (contrastive), 0.05 (CLIP quality), 0.1 (perceptual).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.nn.functional import all_gather
from torch.nn import L1Loss

from .features import FrozenFeatures, Pretrained
from .perceiver import TIERS, QualityPerceiver

__all__ = ["L1Loss", "PSNRLoss", "QualityLoss", "DifficultyAdaptivePerceptualLoss", "InfoNCE", "LossWeights"]


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """Weights of the restorer's loss terms; the defaults are the paper's."""

    reconstruction: float = 1.0
    contrastive: float = 0.1
    quality: float = 0.05
    perceptual: float = 0.1

    def total(self, terms: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Weighted sum of the given terms, keyed by field name; absent terms count zero."""
        unknown = set(terms) - {field.name for field in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown loss terms {sorted(unknown)}")
        return sum(getattr(self, name) * value for name, value in terms.items())


class PSNRLoss(nn.Module):
    """Minus the mean per-image PSNR, in dB (images in [0, 1]): NAFNet's training loss.

    Each image counts by its own log-error, so a mildly degraded image's errors weigh as much as a
    badly degraded one's: under L1, the restorer of an all-in-one mix learns the large global
    corrections (haze, darkness) and leaves mild blur slightly worse than its input.
    """

    def forward(self, restored: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mse = (restored - target).pow(2).flatten(1).mean(1)
        return 10.0 * torch.log10(mse + 1e-8).mean()


class QualityLoss(nn.Module):
    """1 - p(hq | restored), averaged over the batch, under `perceiver`.

    The perceiver is frozen in place (no parameter requires grad, eval mode) so that only the
    restorer learns from this loss; gradients still flow to the restored images.
    """

    def __init__(self, perceiver: QualityPerceiver) -> None:
        super().__init__()
        self.perceiver = perceiver.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> QualityLoss:
        return super().train(False)

    def forward(self, restored: torch.Tensor) -> torch.Tensor:
        return 1 - self.perceiver(restored).softmax(dim=-1)[:, TIERS.index("hq")].mean()


class DifficultyAdaptivePerceptualLoss(nn.Module):
    """Contrastive perceptual loss with hardness-weighted medium-quality negatives.

    For each depth l of the frozen network phi (VGG16's relu1_2 .. relu5_3 by default, weighted
    1/32 .. 1 as in contrastive regularisation for dehazing) and each sample, with d the mean
    absolute difference of features:

        L_l = d(r, clean) / (d(r, lq) + sum_k a_k * d(r, mq_k))

    averaged over the batch and summed with the layer weights; r is the restored image. It is
    0 when r equals the clean image.

    Hardness: a medium negative is hard when it is already close to the clean image, which makes
    it hard to tell from the target. Per sample and layer, hardness_k = clamp(1 - d(mq_k, clean)
    / d(lq, clean), 0, 1), the fraction of the lq-to-clean feature distance that mq_k has
    covered; its weight is a_k = medium_weight * (1 + hardness_k), so between 1x and 2x
    `medium_weight`. Weights are computed without gradient.

    `pretrained` is True (timm hub weights for `feature_model`), a local file, or None (random
    weights, with a warning; such features still give a valid, if less perceptual, distance).
    """

    def __init__(
        self,
        feature_model: str = "vgg16",
        pretrained: Pretrained = None,
        depths: Sequence[int] = (0, 1, 2, 3, 4),
        layer_weights: Sequence[float] = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0),
        medium_weight: float = 0.5,
        eps: float = 1e-7,
        **timm_kwargs: Any,
    ) -> None:
        super().__init__()
        if len(depths) != len(layer_weights):
            raise ValueError(f"{len(depths)} depths but {len(layer_weights)} layer weights")
        self.features = FrozenFeatures(feature_model, pretrained, depths, **timm_kwargs)
        self.layer_weights = tuple(layer_weights)
        self.medium_weight = medium_weight
        self.eps = eps

    def forward(
        self, restored: torch.Tensor, clean: torch.Tensor, lq: torch.Tensor, medium: Sequence[torch.Tensor] = ()
    ) -> torch.Tensor:
        """restored, clean, lq: (B, 3, H, W) in [0, 1]; medium: K tensors of that shape (K may be 0)."""
        batch = len(restored)
        restored_features = self.features(restored)
        with torch.no_grad():
            reference_features = [f.split(batch) for f in self.features(torch.cat([clean, lq, *medium]))]
        loss = restored.new_zeros(())
        for weight, ours, (clean_f, lq_f, *medium_f) in zip(self.layer_weights, restored_features, reference_features):
            lq_to_clean = _distance(lq_f, clean_f)
            negatives = _distance(ours, lq_f)
            for mq_f in medium_f:
                hardness = (1 - _distance(mq_f, clean_f) / (lq_to_clean + self.eps)).clamp(0, 1)
                negatives = negatives + self.medium_weight * (1 + hardness) * _distance(ours, mq_f)
            loss = loss + weight * (_distance(ours, clean_f) / (negatives + self.eps)).mean()
        return loss


def _distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference per sample: (B, ...) x (B, ...) -> (B,)."""
    return (a - b).abs().flatten(1).mean(dim=1)


class InfoNCE(nn.Module):
    """Contrastive loss of the CFE: each anchor must pick its own positive among all positives.

    anchors, positives: (B, D) embeddings (normalised here), row i of both from the same
    degraded image (two crops). Every other positive is a negative, except those whose `groups`
    entry (e.g. degradation type id) equals the anchor's: same-type samples are not pushed
    apart. Under torch.distributed the positives and groups of all ranks join the negatives,
    gathered with autograd so gradients reach every rank; all ranks need the same batch size.
    """

    def __init__(self, temperature: float = 0.07) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(
        self, anchors: torch.Tensor, positives: torch.Tensor, groups: torch.Tensor | None = None
    ) -> torch.Tensor:
        anchors, positives = F.normalize(anchors, dim=-1), F.normalize(positives, dim=-1)
        all_positives = _gather_across_ranks(positives)
        rank = dist.get_rank() if _distributed() else 0
        targets = torch.arange(len(anchors), device=anchors.device) + rank * len(anchors)
        logits = anchors @ all_positives.T / self.temperature
        if groups is not None:
            same_group = groups[:, None] == _gather_across_ranks(groups)[None, :]
            same_group[torch.arange(len(anchors)), targets] = False
            logits = logits.masked_fill(same_group, float("-inf"))
        return F.cross_entropy(logits, targets)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _gather_across_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenation over ranks along dim 0 (rank order), differentiable; the tensor itself when not distributed."""
    if not _distributed():
        return tensor
    return torch.cat(all_gather(tensor), dim=0)
