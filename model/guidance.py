"""Guidance injected into one decoder level of a backbone: the SGM's FiLM and cross-attention.

Shapes, for a decoder level with features f of shape (B, C, H, W):

* guidance tokens g, (B, N, C): the level's semantic map (B, D, h, w) from the frozen timm
  network, flattened to N = h * w tokens, layer-normed and projected to C, plus the
  projected degradation code (B, C) added to every token (the fusion). Without semantics the
  code alone is one token (N = 1, a 1 x 1 grid); without a code the semantic tokens stand alone.
  A quality (or severity) map (B, 1, H0, W0), when the restorer is map-guided, is averaged over
  the token grid (MAP_GRID without semantics) and each cell's value embedded by a small MLP and
  added to its token: guidance that says where the image is bad.
* FiLM: (gamma, beta), each (B, C), from the mean guidance token; f <- f * (1 + gamma) + beta.
* cross-attention: queries from g (B, N, C); keys and values from the layer-normed decoder
  pixels (B, H * W, C); the result (B, N, C) is laid out on the h x w guidance grid,
  upsampled bilinearly to H x W, projected by a 1x1 conv and added to f.

FiLM's head and the attention's output conv start at zero, so an untrained module passes the
backbone's features through unchanged and training starts from the plain backbone.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HEAD_CHANNELS = 32
MAP_GRID = (8, 8)  # the token grid of a map when no semantic grid gives one


def attention_heads(channels: int) -> int:
    """About one head per HEAD_CHANNELS channels, and a count that divides `channels`."""
    heads = max(1, channels // HEAD_CHANNELS)
    while channels % heads:
        heads -= 1
    return heads


class LevelGuidance(nn.Module):
    """Semantic and/or degradation guidance for one decoder level (see the module docstring)."""

    def __init__(self, channels: int, semantic_channels: int | None, code_channels: int | None, quality_map: bool = False) -> None:
        super().__init__()
        if semantic_channels is None and code_channels is None and not quality_map:
            raise ValueError("guidance needs semantic features, a degradation code, a quality map, or several")
        self.map_embedding = nn.Sequential(nn.Linear(1, channels), nn.GELU(), nn.Linear(channels, channels)) if quality_map else None
        self.semantic_projection = (
            nn.Sequential(nn.LayerNorm(semantic_channels), nn.Linear(semantic_channels, channels))
            if semantic_channels is not None
            else None
        )
        self.code_projection = nn.Linear(code_channels, channels) if code_channels is not None else None
        self.film = nn.Linear(channels, 2 * channels)
        self.heads = attention_heads(channels)
        self.query = nn.Linear(channels, channels)
        self.feature_norm = nn.LayerNorm(channels)
        self.key_value = nn.Linear(channels, 2 * channels)
        self.attention_out = nn.Conv2d(channels, channels, 1)
        for zero_start in (self.film, self.attention_out):
            nn.init.zeros_(zero_start.weight)
            nn.init.zeros_(zero_start.bias)

    def guidance_tokens(
        self, semantic: torch.Tensor | None, code: torch.Tensor | None, quality_map: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """Guidance tokens (B, N, C) and the (h, w) grid they lie on."""
        tokens, grid = None, (1, 1)
        if semantic is not None:
            tokens, grid = self.semantic_projection(semantic.flatten(2).transpose(1, 2)), tuple(semantic.shape[-2:])
        if quality_map is not None:
            grid = grid if semantic is not None else MAP_GRID
            cells = F.adaptive_avg_pool2d(quality_map, grid).flatten(2).transpose(1, 2)  # (B, N, 1)
            embedded = self.map_embedding(cells)
            tokens = embedded if tokens is None else tokens + embedded
        if code is not None:
            projected = self.code_projection(code)[:, None]
            tokens = projected if tokens is None else tokens + projected
        return tokens, grid

    def forward(
        self, features: torch.Tensor, semantic: torch.Tensor | None, code: torch.Tensor | None, quality_map: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """features (B, C, H, W), semantic (B, D, h, w) or None, code (B, E) or None, quality_map
        (B, 1, H0, W0) or None -> (B, C, H, W)."""
        tokens, grid = self.guidance_tokens(semantic, code, quality_map)
        gamma, beta = self.film(tokens.mean(dim=1))[..., None, None].chunk(2, dim=1)
        features = features * (1 + gamma) + beta

        b, c, h, w = features.shape
        pixels = self.feature_norm(features.flatten(2).transpose(1, 2))
        keys, values = self.key_value(pixels).chunk(2, dim=-1)
        queries, keys, values = (split_heads(x, self.heads) for x in (self.query(tokens), keys, values))
        attended = F.scaled_dot_product_attention(queries, keys, values)  # (B, heads, N, C / heads)
        attended = attended.transpose(1, 2).flatten(2).transpose(1, 2).reshape(b, c, *grid)
        attended = F.interpolate(attended, size=(h, w), mode="bilinear", align_corners=False)
        return features + self.attention_out(attended)


def split_heads(tokens: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, L, C) -> (B, heads, L, C / heads)."""
    return tokens.unflatten(-1, (heads, tokens.shape[-1] // heads)).transpose(1, 2)
