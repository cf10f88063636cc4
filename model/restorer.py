"""The backbone-agnostic restorer: a registered backbone guided by the SGM and the CFE."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import create_backbone
from .cfe import CompactFeatureExtractor
from .features import FrozenFeatures, Pretrained
from .guidance import LevelGuidance


MAP_GUIDANCE = (None, "perceiver", "quality", "severity")
ORACLE_MAPS = {"quality": "qmap", "severity": "sev"}  # an oracle map_guidance -> the stored map kind (loader field suffix) it reads


class Restorer(nn.Module):
    """All-in-one restorer: `backbone` from `model.backbones`, plus two switchable modules.

    * SGM (`sgm=True`): features of the frozen timm network `semantic_model` (weights from
      `semantic_pretrained`: True for timm's hub, a local file, or None for random) at as many
      evenly spaced depths as the backbone has decoder levels, deepest to the lowest-resolution
      level, injected by FiLM and cross-attention (see `model.guidance`). The network sees the
      degraded image resized to `semantic_size`.
    * CFE (`cfe=True`): a `CompactFeatureExtractor` giving an `embed_dim` degradation code,
      fused into the guidance (by itself, FiLM and cross-attention on the code, when SGM is off).

    * map guidance (`map_guidance`): a per-pixel map added to the guidance tokens (see
      `model.guidance`): "perceiver", the predicted quality map of a frozen dense-head perceiver
      (the file `map_perceiver`, not part of this model's weights), computed from lq inside
      `forward`; or, for oracle ablations, "quality" (the measured quality map) or "severity" (the
      stored severity map), which the caller passes as `quality_map` (training and validation on
      a build made with `--maps`).

    Remaining keyword arguments configure the backbone. Inputs of any size are padded to the
    backbone's `size_multiple` and the output is cropped back; the output is not clamped.
    """

    def __init__(
        self,
        backbone: str = "restormer",
        sgm: bool = True,
        cfe: bool = True,
        semantic_model: str = "vit_small_patch14_dinov2",
        semantic_pretrained: Pretrained = None,
        *,
        semantic_size: int = 224,
        semantic_kwargs: dict[str, Any] | None = None,
        embed_dim: int = 128,
        map_guidance: str | None = None,
        map_perceiver: str | None = None,
        **backbone_kwargs: Any,
    ) -> None:
        super().__init__()
        if map_guidance not in MAP_GUIDANCE:
            raise ValueError(f"map_guidance must be one of {MAP_GUIDANCE}, got {map_guidance!r}")
        if (map_guidance == "perceiver") != bool(map_perceiver):
            raise ValueError("map_guidance='perceiver' needs map_perceiver (a dense-head perceiver file), and only it")
        self.map_guidance = map_guidance
        self._map_perceiver = None
        if map_guidance == "perceiver":
            from .perceiver import QualityPerceiver

            perceiver = QualityPerceiver.load(map_perceiver).eval().requires_grad_(False)
            if perceiver.dense is None:
                raise ValueError(f"{map_perceiver}: map_guidance='perceiver' needs a perceiver trained with dense_head=True")
            self.__dict__["_map_perceiver"] = perceiver  # not a submodule: a frozen provider, not this model's weights
        self.backbone = create_backbone(backbone, **backbone_kwargs)
        levels = self.backbone.decoder_channels
        self.semantic = (
            FrozenFeatures(semantic_model, semantic_pretrained, len(levels), semantic_size, **(semantic_kwargs or {}))
            if sgm
            else None
        )
        self.cfe = CompactFeatureExtractor(embed_dim) if cfe else None
        semantic_channels = self.semantic.channels[::-1] if sgm else [None] * len(levels)
        self.guidance = (
            nn.ModuleList(
                LevelGuidance(channels, semantic, embed_dim if cfe else None, quality_map=map_guidance is not None)
                for channels, semantic in zip(levels, semantic_channels)
            )
            if sgm or cfe or map_guidance
            else None
        )

    def forward(
        self, lq: torch.Tensor, return_aux: bool = False, positive: torch.Tensor | None = None,
        quality_map: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor | None]]:
        """Restore `lq` (B, 3, H, W) in [0, 1].

        With `return_aux`, also returns {"embedding": (B, embed_dim) degradation code, or None
        without CFE}; given `positive` (another crop of each lq image), the dict also holds
        its code as "positive_embedding", for InfoNCE inside the same (DDP-safe) forward.
        `quality_map` (B, 1, H, W): the oracle map of a restorer with map_guidance "quality" or
        "severity" (a perceiver-guided one computes its own).
        """
        quality_map = self.guidance_map(lq, quality_map)
        code = self.cfe(lq) if self.cfe is not None else None
        semantic: list[torch.Tensor | None] = [None] * len(self.backbone.decoder_channels)
        if self.semantic is not None:
            with torch.no_grad():
                semantic = self.semantic(lq)[::-1]

        def guide(level: int, features: torch.Tensor) -> torch.Tensor:
            return self.guidance[level](features, semantic[level], code, quality_map)

        height, width = lq.shape[-2:]
        padded = pad_to_multiple(lq, self.backbone.size_multiple)
        restored = self.backbone(padded, guide if self.guidance is not None else None)[..., :height, :width]
        if not return_aux:
            return restored
        aux = {"embedding": code}
        if positive is not None:
            aux["positive_embedding"] = self.embed(positive)
        return restored, aux

    def guidance_map(self, lq: torch.Tensor, given: torch.Tensor | None) -> torch.Tensor | None:
        """The map this restorer is guided by, (B, 1, H, W), or None when it is not map-guided."""
        if self.map_guidance is None:
            return None
        if self.map_guidance != "perceiver":
            if given is None:
                raise ValueError(
                    f"this restorer is guided by the stored {self.map_guidance} map (an oracle ablation): pass quality_map"
                )
            return given
        perceiver = self._map_perceiver
        if perceiver.tier_quality.device != lq.device:
            perceiver.to(lq.device)
        with torch.no_grad():
            return perceiver.quality_map(lq.float())[:, None]

    @property
    def trains_code(self) -> bool:
        """Whether a degradation code is trained (the CFE's), for the contrastive loss."""
        return self.cfe is not None

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The CFE's degradation code (B, embed_dim) for images in [0, 1]."""
        if self.cfe is None:
            raise RuntimeError("this Restorer was built with cfe=False")
        return self.cfe(images)


def pad_to_multiple(images: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad bottom and right to multiples of `multiple`: mirrored where the image is large enough, else repeated."""
    height, width = images.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if not pad_h and not pad_w:
        return images
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(images, (0, pad_w, 0, pad_h), mode=mode)
