"""ClearAIR's three guidance modules, applied in this order at each decoder level: how, where, what.

Shapes, for a decoder level with features f of shape (B, C, H, W):

* QGM (quality guidance): the provider's quality embedding q (B, Dq) passes a shared adapter
  (LayerNorm, Dq -> 256 -> 192, then a 192 -> 192 layer: the authors' sizes, their MLP to 192 as
  two layers) and one linear per level to (gamma, beta), each (B, C);
  f <- norm(f) * (1 + gamma) + beta, the authors' affine modulation.
* SCA (semantic cross-attention): region masks (B, M, H0, W0), resized to H x W, plus their
  background (what no mask covers) give M + 1 region tokens (B, M + 1, C) by mask average pooling
  of norm(f); every pixel queries the tokens of its own image. Attention maps are
  (B, heads, H * W, M + 1): memory linear in H x W, where the authors' pixel-to-pixel attention
  is quadratic. Empty regions are masked out of the softmax.
* DAM (degradation-aware module): a learnable prompt set (5 x 192) is weighted by softmax(MLP(d))
  of the degradation embedding d; per level the weighted prompt p (B, C) gives a sigmoid
  degradation mask sigmoid(conv1x1(norm(f) * p)), and the pixels attend to two tokens (the content
  embedding and p); a 1x1 conv fuses [f * mask, attended] and is added to f.

The output convs of SCA and DAM start at zero, so an untrained module adds nothing.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.layers import ChannelLayerNorm
from ..guidance import attention_heads, split_heads

ADAPTER_HIDDEN, ADAPTER_OUT = 256, 192  # QGM's adapter, as in the authors' code
PROMPTS, PROMPT_DIM = 5, 192  # the task identifier's prompt set, as in the authors' code


def _zero(module: nn.Module) -> nn.Module:
    nn.init.zeros_(module.weight)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module


def _heads_attention(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, heads: int,
                     mask: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-head attention of (B, L, C) queries over (B, N, C) keys / values -> (B, L, C)."""
    queries, keys, values = (split_heads(x, heads) for x in (queries, keys, values))
    out = F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask)
    return out.transpose(1, 2).flatten(2)


class QualityAdapter(nn.Module):
    """The trainable bridge from a frozen IQA embedding to the 192-d code every QGM reads."""

    def __init__(self, quality_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(quality_dim), nn.Linear(quality_dim, ADAPTER_HIDDEN), nn.GELU(),
            nn.Linear(ADAPTER_HIDDEN, ADAPTER_OUT), nn.GELU(), nn.Linear(ADAPTER_OUT, ADAPTER_OUT),
        )

    def forward(self, quality: torch.Tensor) -> torch.Tensor:
        return self.net(quality.float())


class QualityGuidance(nn.Module):
    """QGM for one level: norm, then the affine transform predicted from the adapted quality code."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = ChannelLayerNorm(channels)
        self.affine = _zero(nn.Linear(ADAPTER_OUT, 2 * channels))

    def forward(self, features: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.affine(code)[..., None, None].chunk(2, dim=1)
        return self.norm(features) * (1 + gamma) + beta


def region_tokens(features: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask average pooling: (B, C, H, W) features and (B, M, H, W) masks -> tokens (B, M + 1, C)
    (the last one the background) and which of them are non-empty (B, M + 1)."""
    background = (1 - masks.sum(1, keepdim=True)).clamp_min(0)
    masks = torch.cat([masks, background], dim=1)
    area = masks.sum((2, 3))
    tokens = torch.einsum("bmhw,bchw->bmc", masks, features) / area.clamp_min(1)[..., None]
    return tokens, area > 0


class SemanticCrossAttention(nn.Module):
    """SCA for one level: pixels attend to their image's region tokens (see the module docstring)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.heads = attention_heads(channels)
        self.norm = ChannelLayerNorm(channels)
        self.query = nn.Linear(channels, channels)
        self.key_value = nn.Linear(channels, 2 * channels)
        self.out = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        b, c, h, w = features.shape
        masks = F.interpolate(masks.to(features.dtype), size=(h, w), mode="nearest")
        normed = self.norm(features)
        tokens, present = region_tokens(normed, masks)
        keys, values = self.key_value(tokens).chunk(2, dim=-1)
        pixels = self.query(normed.flatten(2).transpose(1, 2))  # (B, H * W, C)
        attended = _heads_attention(pixels, keys, values, self.heads, present[:, None, None, :])
        return features + self.out(attended.transpose(1, 2).reshape(b, c, h, w))


class TaskIdentifier(nn.Module):
    """The prompt set weighted by softmax(MLP(degradation embedding)): one (B, 192) prompt per image."""

    def __init__(self, degradation_dim: int) -> None:
        super().__init__()
        self.prompts = nn.Parameter(torch.randn(PROMPTS, PROMPT_DIM) * 0.02)
        self.weights = nn.Sequential(nn.Linear(degradation_dim, PROMPT_DIM), nn.GELU(), nn.Linear(PROMPT_DIM, PROMPTS))

    def forward(self, degradation: torch.Tensor) -> torch.Tensor:
        return self.weights(degradation.float()).softmax(dim=-1) @ self.prompts


class DegradationAware(nn.Module):
    """DAM for one level: a sigmoid degradation mask and cross-attention to the content and prompt."""

    def __init__(self, channels: int, content_dim: int) -> None:
        super().__init__()
        self.heads = attention_heads(channels)
        self.norm = ChannelLayerNorm(channels)
        self.prompt = nn.Linear(PROMPT_DIM, channels)
        self.content = nn.Linear(content_dim, channels)
        self.mask = nn.Conv2d(channels, channels, 1)
        self.query = nn.Linear(channels, channels)
        self.key_value = nn.Linear(channels, 2 * channels)
        self.fuse = _zero(nn.Conv2d(2 * channels, channels, 1))

    def forward(self, features: torch.Tensor, prompt: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        b, c, h, w = features.shape
        normed = self.norm(features)
        p = self.prompt(prompt)
        mask = torch.sigmoid(self.mask(normed * p[..., None, None]))
        tokens = torch.stack([self.content(content.float()), p], dim=1)  # (B, 2, C)
        keys, values = self.key_value(tokens).chunk(2, dim=-1)
        attended = _heads_attention(self.query(normed.flatten(2).transpose(1, 2)), keys, values, self.heads)
        attended = attended.transpose(1, 2).reshape(b, c, h, w)
        return features + self.fuse(torch.cat([features * mask, attended], dim=1))
