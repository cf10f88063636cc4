"""Restormer-style U-Net (Zamir et al., CVPR 2022): transformer blocks with channel attention at every scale."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import Backbone, Guide, register_backbone
from .layers import ChannelLayerNorm, depthwise_conv3x3, residual_output


class ChannelAttention(nn.Module):
    """MDTA: multi-head attention across channels (a C/heads x C/heads map per head), so its cost
    grows linearly with the pixel count. Queries, keys and values mix locally through a
    depthwise 3x3 conv; queries and keys are L2-normalised over pixels and scaled by a learned
    temperature per head."""

    def __init__(self, channels: int, heads: int, bias: bool) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels do not split into {heads} heads")
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Sequential(nn.Conv2d(channels, 3 * channels, 1, bias=bias), depthwise_conv3x3(3 * channels, bias))
        self.project = nn.Conv2d(channels, channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = (t.reshape(b, self.heads, c // self.heads, h * w) for t in self.qkv(x).chunk(3, dim=1))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attention = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)
        return self.project((attention @ v).reshape(b, c, h, w))


class GatedFeedForward(nn.Module):
    """GDFN: two depthwise-conv branches, one gating the other through GELU."""

    def __init__(self, channels: int, expansion: float, bias: bool) -> None:
        super().__init__()
        hidden = int(channels * expansion)
        self.expand = nn.Sequential(nn.Conv2d(channels, 2 * hidden, 1, bias=bias), depthwise_conv3x3(2 * hidden, bias))
        self.project = nn.Conv2d(hidden, channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.expand(x).chunk(2, dim=1)
        return self.project(F.gelu(gate) * value)


class TransformerBlock(nn.Module):
    def __init__(self, channels: int, heads: int, ffn_expansion: float, bias: bool) -> None:
        super().__init__()
        self.attention_norm = ChannelLayerNorm(channels)
        self.attention = ChannelAttention(channels, heads, bias)
        self.ffn_norm = ChannelLayerNorm(channels)
        self.ffn = GatedFeedForward(channels, ffn_expansion, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x))
        return x + self.ffn(self.ffn_norm(x))


def _stage(channels: int, n_blocks: int, heads: int, ffn_expansion: float, bias: bool) -> nn.Sequential:
    return nn.Sequential(*(TransformerBlock(channels, heads, ffn_expansion, bias) for _ in range(n_blocks)))


@register_backbone("restormer")
class Restormer(Backbone):
    """Encoder-decoder of transformer blocks; the scale halves and the channels double at each level.

    The defaults are the paper's size (~26 M parameters): width 48, blocks (4, 6, 6, 8) and
    heads (1, 2, 4, 8) from the top level to the latent, 4 refinement blocks. A tiny CPU
    configuration is e.g. width=8, blocks=(1, 1, 1, 1), heads=(1, 1, 2, 2), refinement_blocks=1.
    As in Restormer, the top decoder level keeps twice the width after merging its skip.
    """

    def __init__(
        self,
        width: int = 48,
        blocks: Sequence[int] = (4, 6, 6, 8),
        heads: Sequence[int] = (1, 2, 4, 8),
        refinement_blocks: int = 4,
        ffn_expansion: float = 2.66,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if len(blocks) != len(heads) or len(blocks) < 2:
            raise ValueError(f"blocks {blocks} and heads {heads} need one entry per level, at least two levels")
        n_skips = len(blocks) - 1
        encoder_channels = [width * 2**i for i in range(n_skips)]

        def stage(channels: int, level: int) -> nn.Sequential:
            return _stage(channels, blocks[level], heads[level], ffn_expansion, bias)

        self.embed = nn.Conv2d(3, width, 3, padding=1, bias=bias)
        self.encoders = nn.ModuleList(stage(c, i) for i, c in enumerate(encoder_channels))
        self.downsamples = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, c // 2, 3, padding=1, bias=bias), nn.PixelUnshuffle(2)) for c in encoder_channels
        )
        self.latent = stage(width * 2**n_skips, n_skips)

        skip_levels = list(reversed(range(n_skips)))  # decoder level j merges encoder level skip_levels[j]
        self.decoder_channels = tuple(encoder_channels[i] if i else 2 * width for i in skip_levels)
        self.upsamples = nn.ModuleList(
            nn.Sequential(nn.Conv2d(2 * c, 4 * c, 3, padding=1, bias=bias), nn.PixelShuffle(2))
            for c in (encoder_channels[i] for i in skip_levels)
        )
        self.merges = nn.ModuleList(
            nn.Conv2d(2 * encoder_channels[i], encoder_channels[i], 1, bias=bias) if i else nn.Identity()
            for i in skip_levels
        )
        self.decoders = nn.ModuleList(stage(c, i) for c, i in zip(self.decoder_channels, skip_levels))
        self.refinement = _stage(2 * width, refinement_blocks, heads[0], ffn_expansion, bias)
        self.output = residual_output(2 * width, bias)
        self.size_multiple = 2**n_skips

    def forward(self, x: torch.Tensor, guide: Guide | None = None) -> torch.Tensor:
        features, skips = self.encode(self.embed(x))
        features = self.latent(features)
        for level, (upsample, merge, decoder) in enumerate(zip(self.upsamples, self.merges, self.decoders)):
            features = merge(torch.cat([upsample(features), skips.pop()], dim=1))
            features = decoder(self.guided(guide, level, features))
        return self.output(self.refinement(features)) + x
