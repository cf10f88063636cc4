"""The restorer's training losses and the paper's default weights for them.

* `L1Loss` (torch's): reconstruction against the clean image; `PSNRLoss`, NAFNet's alternative.
* `QualityLoss`: 1 - p(hq | restored) under a frozen `QualityPerceiver`.
* `DifficultyAdaptivePerceptualLoss`: pull toward the clean image, push from the low- and
  medium-quality versions, in the feature space of a frozen timm network.
* `PaperPerceptualLoss`, `difficulty_weights`: the Perceive-IR authors' form of that loss, with
  proxy restorations as the medium negatives, weighted by how hard each sample is.
* `InfoNCE`: the CFE's contrastive loss, negatives gathered across ranks when distributed.
* `InternalClueLoss`: ClearAIR's internal clue reuse, a strong augmentation of a weakly augmented
  output kept close to it.
* `LossWeights`: 1 (reconstruction), 0.1 (contrastive), 0.05 (CLIP quality), 0.1 (perceptual),
  0 (internal clue reuse; ClearAIR's is 0.25).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.distributed.nn.functional import all_gather
from torch.nn import L1Loss
from torchvision.transforms.v2 import functional as TF

from .features import FrozenFeatures, Pretrained
from .perceiver import TIERS, QualityPerceiver
from .weights import warn_random_weights

__all__ = [
    "DifficultyAdaptivePerceptualLoss",
    "InfoNCE",
    "L1Loss",
    "LossWeights",
    "PSNRLoss",
    "PaperPerceptualLoss",
    "QualityLoss",
    "difficulty_weights",
]


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """Weights of the restorer's loss terms; the defaults are the paper's."""

    reconstruction: float = 1.0
    contrastive: float = 0.1
    quality: float = 0.05
    perceptual: float = 0.1
    internal: float = 0.0

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

    `ceiling_db` bounds each image's PSNR softly: 10 log10(MSE + 10^(-ceiling/10)). An image's
    gradient scales with 1 / MSE, so without a bound one near-clean patch in a batch (a dark patch
    under mild haze is within 36 dB of its clean image) can outweigh the rest and, under gradient
    clipping, shrink every other image's step. The default, 80 dB, is NAFNet's form (1e-8).
    """

    def __init__(self, ceiling_db: float = 80.0) -> None:
        super().__init__()
        if ceiling_db <= 0:
            raise ValueError(f"ceiling_db must be positive, got {ceiling_db}")
        self.floor = 10.0 ** (-ceiling_db / 10.0)

    def forward(self, restored: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mse = (restored - target).pow(2).flatten(1).mean(1)
        return 10.0 * torch.log10(mse + self.floor).mean()


class QualityLoss(nn.Module):
    """1 - p(hq | restored), averaged over the batch, under `perceiver`.

    The perceiver is frozen in place (no parameter requires grad, eval mode) so that only the
    restorer learns from this loss; gradients still flow to the restored images.

    `logit_scale=False` takes the softmax over the raw cosine similarities, as the authors' code
    does: they span at most [-1, 1], so the probabilities stay near uniform and the loss is
    gentler than under CLIP's scale (about 100).
    """

    def __init__(self, perceiver: QualityPerceiver, logit_scale: bool = True) -> None:
        super().__init__()
        self.perceiver = perceiver.requires_grad_(False).eval()
        self.logit_scale = logit_scale

    def train(self, mode: bool = True) -> QualityLoss:
        return super().train(False)

    def forward(self, restored: torch.Tensor) -> torch.Tensor:
        logits = self.perceiver(restored) if self.logit_scale else self.perceiver.similarities(restored)
        return 1 - logits.softmax(dim=-1)[:, TIERS.index("hq")].mean()


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


class PaperPerceptualLoss(nn.Module):
    """The difficulty-adaptive perceptual loss in the form of the Perceive-IR authors' code.

    Per sample, with d the mean absolute difference of feature maps, r the restored image and
    P_k the proxy restorations (medium-quality negatives) with per-sample weights pw_k:

        sum_l w_l * d_l(r, clean) / max(2 * d_l(r, lq) + sum_k pw_k * d_l(r, P_k), floor)

    averaged over the batch. Unlike `DifficultyAdaptivePerceptualLoss` the low-quality input
    counts twice, the hardness comes from outside (`difficulty_weights` times a 0/1 task mask),
    and the floor is on the denominator, so a restoration equal to its input with no proxy
    gives a large but finite loss.

    Features: a frozen torchvision VGG16's `features`, run up to the last of `indices`, with the
    outputs after modules 3, 7, 11 and 15 weighted 1/12, 1/6, 1/3, 1. torchvision's ReLUs work
    in place, so the map after conv2_2 (index 7) is rectified by the ReLU at index 8: in effect
    relu1_2, relu2_2, relu3_1 and relu3_3, as in the authors' code, which taps the Sequential
    the same way.

    `weights`: None (random, with a warning), a `torchvision.models.VGG16_Weights` name such as
    "IMAGENET1K_V1", or a local state-dict file of the whole vgg16 or of its `features`.
    `features` replaces the VGG with any module mapping images to a list of feature maps, one
    per layer weight.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        indices: Sequence[int] = (3, 7, 11, 15),
        layer_weights: Sequence[float] = (1 / 12, 1 / 6, 1 / 3, 1.0),
        floor: float = 1e-6,
        features: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if features is None:
            if weights is None:
                warn_random_weights("torchvision vgg16", "pass weights='IMAGENET1K_V1' or a local state-dict file")
            if len(indices) != len(layer_weights):
                raise ValueError(f"{len(indices)} indices but {len(layer_weights)} layer weights")
            features = _Taps(_vgg16_features(weights), indices)
        elif weights is not None:
            raise ValueError("pass either weights or features, not both")
        self.features = features.requires_grad_(False).eval()
        self.layer_weights = tuple(layer_weights)
        self.floor = floor

    def train(self, mode: bool = True) -> PaperPerceptualLoss:
        return super().train(False)

    def forward(
        self,
        restored: torch.Tensor,
        clean: torch.Tensor,
        lq: torch.Tensor,
        proxies: Sequence[torch.Tensor] = (),
        proxy_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """restored, clean, lq and each of the K proxies: (B, 3, H, W) in [0, 1]; proxy_weights: (B, K).

        proxy_weights[b, k] is the proxy's difficulty weight times its mask (0 where proxy k does
        not cover sample b's task); None weighs every proxy 1.
        """
        batch = len(restored)
        if proxy_weights is None:
            proxy_weights = restored.new_ones(batch, len(proxies))
        if proxy_weights.shape != (batch, len(proxies)):
            raise ValueError(f"proxy_weights has shape {tuple(proxy_weights.shape)}, expected {(batch, len(proxies))}")
        restored_features = self.features(restored)
        with torch.no_grad():
            reference_features = [f.split(batch) for f in self.features(torch.cat([clean, lq, *proxies]))]
        loss = restored.new_zeros(batch)
        layers = zip(self.layer_weights, restored_features, reference_features, strict=True)
        for weight, ours, (clean_f, lq_f, *proxy_f) in layers:
            negatives = 2 * _distance(ours, lq_f)
            for k, proxy in enumerate(proxy_f):
                negatives = negatives + proxy_weights[:, k] * _distance(ours, proxy)
            loss = loss + weight * _distance(ours, clean_f) / negatives.clamp_min(self.floor)
        return loss.mean()


def difficulty_weights(proxy_psnr: torch.Tensor, tau: float | torch.Tensor, hard: float = 1.25, easy: float = 0.75) -> torch.Tensor:
    """Per-proxy weights for `PaperPerceptualLoss`: `hard` where proxy_psnr <= tau, else `easy` (same shape).

    tau is the current model's mean PSNR on a fixed probe set, re-measured each epoch. A proxy
    that restores a sample no better than the model does on average makes it a hard sample, so
    its push counts more; as the model improves, tau rises and more samples turn hard.
    """
    return proxy_psnr.new_full(proxy_psnr.shape, easy).masked_fill(proxy_psnr <= tau, hard)


_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class _Taps(nn.Module):
    """Runs a Sequential up to its last tapped index and returns the outputs of the tapped modules."""

    def __init__(self, layers: nn.Sequential, indices: Sequence[int]) -> None:
        super().__init__()
        if list(indices) != sorted(set(indices)):
            raise ValueError(f"indices {list(indices)} must increase: the features come out shallow to deep")
        self.layers = layers[: indices[-1] + 1]
        self.indices = frozenset(indices)
        # As the authors' code: images clamped to [0, 1], then ImageNet-normalised, as VGG16 was trained.
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x, taps = (images.clamp(0, 1) - self.mean) / self.std, []
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index in self.indices:
                taps.append(x)
        return taps


def _vgg16_features(weights: str | Path | None) -> nn.Sequential:
    """torchvision's VGG16 `features`: random (None), by `VGG16_Weights` name, or from a local state dict."""
    if isinstance(weights, str) and weights in torchvision.models.VGG16_Weights.__members__:
        return torchvision.models.vgg16(weights=torchvision.models.VGG16_Weights[weights]).features
    features = torchvision.models.vgg16(weights=None).features
    if weights is not None:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        prefix = "features."
        if any(key.startswith(prefix) for key in state):  # a whole vgg16: drop the classifier
            state = {key.removeprefix(prefix): value for key, value in state.items() if key.startswith(prefix)}
        features.load_state_dict(state)
    return features


class InternalClueLoss(nn.Module):
    """ClearAIR's internal clue reuse: `gamma * ||weak - strong||^2` (mean squared error), where weak
    is a random crop of 0.7 of each side of the restored output (clamped to [0, 1]; one crop per
    image) resized back, and strong is weak
    under colour jitter (brightness, contrast, saturation factors in 1 +- 0.4, one draw per image)
    and a 5 x 5 Gaussian blur of sigma 1: the authors' augmentations. Draws come from `rng`."""

    def __init__(self, gamma: float = 0.05, crop: float = 0.7, jitter: float = 0.4, sigma: float = 1.0) -> None:
        super().__init__()
        self.gamma, self.crop, self.jitter, self.sigma = gamma, crop, jitter, sigma

    def forward(self, restored: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        weak = self.weak(restored.clamp(0, 1), rng)
        return self.gamma * F.mse_loss(weak, self.strong(weak, rng))

    def weak(self, images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """Each image's own random crop, resized back to the full size."""
        h, w = images.shape[-2:]
        ch, cw = max(1, round(self.crop * h)), max(1, round(self.crop * w))
        corners = [(int(torch.randint(0, h - ch + 1, (1,), generator=rng)), int(torch.randint(0, w - cw + 1, (1,), generator=rng)))
                   for _ in range(len(images))]
        crops = torch.stack([image[:, y : y + ch, x : x + cw] for image, (y, x) in zip(images, corners)])
        return F.interpolate(crops, size=(h, w), mode="bilinear", align_corners=False)

    def strong(self, images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        # Written out rather than torchvision's adjust_* so that every image gets its own factors in
        # one batched op; the formulas are torchvision's (blend with black, grey mean, greyscale).
        b = len(images)
        factors = 1 + self.jitter * (2 * torch.rand(3, b, 1, 1, 1, generator=rng) - 1)
        brightness, contrast, saturation = factors.to(images.device, images.dtype)
        x = (images * brightness).clamp(0, 1)
        grey = TF.rgb_to_grayscale(x)
        x = ((x - grey.mean((1, 2, 3), keepdim=True)) * contrast + grey.mean((1, 2, 3), keepdim=True)).clamp(0, 1)
        grey = TF.rgb_to_grayscale(x)
        x = ((x - grey) * saturation + grey).clamp(0, 1)
        return TF.gaussian_blur(x, kernel_size=[5, 5], sigma=[self.sigma] * 2)


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
