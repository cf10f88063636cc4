"""NAFNet-style U-Net (Chen et al., ECCV 2022): a light, activation-free convolutional backbone for CPU work."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import Backbone, Guide, register_backbone
from .layers import ChannelLayerNorm, depthwise_conv3x3, residual_output


class SimpleGate(nn.Module):
    """Halves the channels by multiplying the two halves: NAFNet's replacement for a nonlinearity."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = x.chunk(2, dim=1)
        return first * second


class NAFBlock(nn.Module):
    """Depthwise-conv mixing with simple channel attention, then a gated feed-forward; each
    branch enters the residual through a learned per-channel scale that starts at zero."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mix = nn.Sequential(
            ChannelLayerNorm(channels),
            nn.Conv2d(channels, 2 * channels, 1),
            depthwise_conv3x3(2 * channels),
            SimpleGate(),
        )
        self.channel_attention = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, channels, 1))
        self.mix_out = nn.Conv2d(channels, channels, 1)
        self.ffn = nn.Sequential(
            ChannelLayerNorm(channels),
            nn.Conv2d(channels, 2 * channels, 1),
            SimpleGate(),
            nn.Conv2d(channels, channels, 1),
        )
        self.mix_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.ffn_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = self.mix(x)
        x = x + self.mix_scale * self.mix_out(mixed * self.channel_attention(mixed))
        return x + self.ffn_scale * self.ffn(x)


def _stage(channels: int, n_blocks: int) -> nn.Sequential:
    return nn.Sequential(*(NAFBlock(channels) for _ in range(n_blocks)))


@register_backbone("nafnet")
class NAFNet(Backbone):
    """Encoder-decoder of NAFBlocks; skips are added, not concatenated. The defaults are a light
    CPU configuration (width 16, one or two blocks per level, ~0.4 M parameters); NAFNet's
    paper model is width 32, encoder_blocks (2, 2, 4, 8), middle_blocks 12, decoder_blocks (2, 2, 2, 2).
    """

    def __init__(
        self,
        width: int = 16,
        encoder_blocks: Sequence[int] = (1, 1, 2),
        middle_blocks: int = 2,
        decoder_blocks: Sequence[int] = (1, 1, 1),
    ) -> None:
        super().__init__()
        if len(encoder_blocks) != len(decoder_blocks) or not encoder_blocks:
            raise ValueError("encoder_blocks and decoder_blocks need one entry per level")
        encoder_channels = [width * 2**i for i in range(len(encoder_blocks))]
        self.embed = nn.Conv2d(3, width, 3, padding=1)
        self.encoders = nn.ModuleList(_stage(c, n) for c, n in zip(encoder_channels, encoder_blocks))
        self.downsamples = nn.ModuleList(nn.Conv2d(c, 2 * c, 2, stride=2) for c in encoder_channels)
        self.middle = _stage(2 * encoder_channels[-1], middle_blocks)
        self.decoder_channels = tuple(reversed(encoder_channels))
        self.upsamples = nn.ModuleList(
            nn.Sequential(nn.Conv2d(2 * c, 4 * c, 1, bias=False), nn.PixelShuffle(2)) for c in self.decoder_channels
        )
        self.decoders = nn.ModuleList(_stage(c, n) for c, n in zip(self.decoder_channels, reversed(decoder_blocks)))
        self.output = residual_output(width)
        self.size_multiple = 2 ** len(encoder_blocks)

    def forward(self, x: torch.Tensor, guide: Guide | None = None) -> torch.Tensor:
        features, skips = self.encode(self.embed(x))
        features = self.middle(features)
        for level, (upsample, decoder) in enumerate(zip(self.upsamples, self.decoders)):
            features = upsample(features) + skips.pop()
            features = decoder(self.guided(guide, level, features))
        return self.output(features) + x
