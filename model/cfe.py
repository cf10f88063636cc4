"""Compact Feature Extraction: a small convolutional encoder from a degraded image to its degradation code."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class CompactFeatureExtractor(nn.Module):
    """Strided 3x3 convs, global average pooling and a two-layer head to an L2-normalised
    `embed_dim` vector that describes how the image is degraded (trained with InfoNCE)."""

    def __init__(self, embed_dim: int = 128, widths: Sequence[int] = (32, 64, 128, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for in_channels, out_channels in zip((3, *widths), widths):
            layers += [nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1), nn.LeakyReLU(0.1)]
        self.encoder = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(widths[-1], embed_dim), nn.LeakyReLU(0.1), nn.Linear(embed_dim, embed_dim))
        self.embed_dim = embed_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images in [0, 1] -> (B, embed_dim) unit vectors."""
        return F.normalize(self.head(self.encoder(images)), dim=-1)
