"""Building blocks shared by the backbones."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of each pixel of an NCHW map."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.weight.shape, self.weight, self.bias)
        return x.permute(0, 3, 1, 2)


def depthwise_conv3x3(channels: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=bias)


def residual_output(in_channels: int, bias: bool = True) -> nn.Conv2d:
    """The 3x3 conv to the RGB residual, zero-initialised: an untrained backbone returns its
    input exactly, so training starts from the identity rather than from random damage."""
    conv = nn.Conv2d(in_channels, 3, 3, padding=1, bias=bias)
    nn.init.zeros_(conv.weight)
    if bias:
        nn.init.zeros_(conv.bias)
    return conv
