"""ClearAIR (AAAI 2026): a Restormer-style U-Net whose decoder levels apply QGM -> SCA -> DAM."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..backbones import create_backbone
from ..restorer import pad_to_multiple
from .modules import DegradationAware, QualityAdapter, QualityGuidance, SemanticCrossAttention, TaskIdentifier
from .providers import create_provider

MASK_DROPOUT = 0.2  # the authors' probability of merging a region mask into the background in training


class ClearAIR(nn.Module):
    """All-in-one restorer guided coarse to fine: how (quality), where (regions), what (task).

    Same calling convention as `model.Restorer`: `forward(lq)` restores, `forward(lq,
    return_aux=True)` also returns {"embedding": the degradation code when the task provider trains
    with the restorer (perceive-ir's CFE), else None}. The backbone is the registered "restormer"
    at the paper's size by default (blocks 3/5/6/8, widths 48/96/192/384); `qgm`, `sca` and `dam`
    switch the modules (a switched-off module builds no provider). Providers are named as in
    `model.clearair.providers` with their keyword arguments; `forward` may be given their outputs
    precomputed (`quality`, `regions`, `task` = (content, degradation)) instead, and takes the
    training step's generator as `rng` for mask dropout (none without it, as in evaluation).
    """

    def __init__(
        self,
        width: int = 48,
        blocks: Sequence[int] = (3, 5, 6, 8),
        heads: Sequence[int] = (1, 2, 4, 8),
        refinement_blocks: int = 4,
        ffn_expansion: float = 2.66,
        *,
        qgm: bool = True,
        sca: bool = True,
        dam: bool = True,
        quality: str = "perceiver",
        quality_kwargs: dict[str, Any] | None = None,
        regions: str = "superpixels",
        regions_kwargs: dict[str, Any] | None = None,
        task: str = "cfe",
        task_kwargs: dict[str, Any] | None = None,
        mask_dropout: float = MASK_DROPOUT,
    ) -> None:
        super().__init__()
        self.backbone = create_backbone(
            "restormer", width=width, blocks=tuple(blocks), heads=tuple(heads),
            refinement_blocks=refinement_blocks, ffn_expansion=ffn_expansion,
        )
        levels = self.backbone.decoder_channels
        self.quality_provider = create_provider("quality", quality, **(quality_kwargs or {})) if qgm else None
        self.region_provider = create_provider("regions", regions, **(regions_kwargs or {})) if sca else None
        self.task_provider = create_provider("task", task, **(task_kwargs or {})) if dam else None
        quality_source, task_source = (getattr(p, "source", None) for p in (self.quality_provider, self.task_provider))
        if quality_source is not None and quality_source == task_source:
            # The default providers read the same perceiver: held once (memory, checkpoint size).
            self.task_provider.perceiver = self.quality_provider.perceiver
        self.adapter = QualityAdapter(self.quality_provider.dim) if qgm else None
        self.qgm = nn.ModuleList(QualityGuidance(c) for c in levels) if qgm else None
        self.sca = nn.ModuleList(SemanticCrossAttention(c) for c in levels) if sca else None
        if dam:
            self.task_identifier = TaskIdentifier(self.task_provider.degradation_dim)
            self.dam = nn.ModuleList(DegradationAware(c, self.task_provider.content_dim) for c in levels)
        else:
            self.task_identifier, self.dam = None, None
        self.mask_dropout = mask_dropout

    @classmethod
    def tiny(cls, **kwargs: Any) -> ClearAIR:
        """A CPU-sized ClearAIR (width 8, one block per level) with the offline providers."""
        sizes = dict(width=8, blocks=(1, 1, 1, 1), heads=(1, 1, 2, 2), refinement_blocks=1)
        return cls(**{**sizes, **kwargs})

    def provide(self, lq: torch.Tensor) -> dict[str, Any]:
        """Every switched-on provider's output for `lq`: what `forward` would compute."""
        return {
            "quality": self.quality_provider(lq) if self.quality_provider is not None else None,
            "regions": self.region_provider(lq) if self.region_provider is not None else None,
            "task": self.task_provider(lq) if self.task_provider is not None else None,
        }

    def drop_masks(self, regions: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """Mask dropout: each mask merges into the background with probability `mask_dropout`."""
        keep = torch.rand(regions.shape[:2], generator=rng) >= self.mask_dropout
        return regions * keep.to(regions.device, regions.dtype)[..., None, None]

    def forward(
        self,
        lq: torch.Tensor,
        return_aux: bool = False,
        positive: torch.Tensor | None = None,
        *,
        rng: torch.Generator | None = None,
        quality: torch.Tensor | None = None,
        regions: torch.Tensor | None = None,
        task: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor | None]]:
        """Restore `lq` (B, 3, H, W) in [0, 1]; see the class docstring for the rest."""
        height, width = lq.shape[-2:]
        padded = pad_to_multiple(lq, self.backbone.size_multiple)
        if self.qgm is not None:
            code = self.adapter(quality if quality is not None else self.quality_provider(lq))
        if self.sca is not None:
            masks = regions if regions is not None else self.region_provider(lq)
            masks = pad_to_multiple(masks, self.backbone.size_multiple)
            if self.training and rng is not None and self.mask_dropout:
                masks = self.drop_masks(masks, rng)
        degradation = None
        if self.dam is not None:
            content, degradation = task if task is not None else self.task_provider(lq)
            prompt = self.task_identifier(degradation)

        def guide(level: int, features: torch.Tensor) -> torch.Tensor:
            if self.qgm is not None:
                features = self.qgm[level](features, code)
            if self.sca is not None:
                features = self.sca[level](features, masks)
            if self.dam is not None:
                features = self.dam[level](features, prompt, content)
            return features

        restored = self.backbone(padded, guide)[..., :height, :width]
        if not return_aux:
            return restored
        aux = {"embedding": degradation if self.trains_code else None}
        if positive is not None and self.trains_code:
            aux["positive_embedding"] = self.embed(positive)
        return restored, aux

    @property
    def trains_code(self) -> bool:
        """Whether a degradation code trains with this model (the task provider's own CFE)."""
        return self.task_provider is not None and self.task_provider.trainable

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The trainable task provider's degradation code (B, D) (perceive-ir's CFE)."""
        if not self.trains_code:
            raise RuntimeError("this ClearAIR has no trainable degradation code (task provider frozen or dam=False)")
        return self.task_provider(images)[1]
