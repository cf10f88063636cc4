"""The backbone interface and its registry.

A restoration backbone is a U-Net-like network. To take the Restorer's guidance modules
(SGM and CFE) unchanged, a backbone states two facts and honours one hook:

* `decoder_channels`: the channels of its decoder levels, deepest (lowest resolution) first;
* `size_multiple`: input height and width must be multiples of it (the Restorer pads);
* `forward(x, guide=None)`: at the start of decoder level `i`, once the skip connection is
  merged, it replaces its features `f` (B, decoder_channels[i], H_i, W_i) with
  `guide(i, f)`, which has the same shape. With `guide=None` it is a plain restorer.

Register a backbone with `@register_backbone("name")` on its class; `create_backbone(name,
**kwargs)` builds one and `available()` lists the names, as timm does for models.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

Guide = Callable[[int, torch.Tensor], torch.Tensor]
"""guide(level, features) -> features of the same shape; level 0 is the deepest decoder level."""


class Backbone(nn.Module):
    """Base class of registered backbones: see the module docstring for the contract."""

    decoder_channels: tuple[int, ...]
    size_multiple: int

    def forward(self, x: torch.Tensor, guide: Guide | None = None) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, features: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The U-Net's way down, for backbones with `encoders` and `downsamples`: the deepest
        features and the skip features of each level, shallowest first."""
        skips = []
        for encoder, downsample in zip(self.encoders, self.downsamples):  # type: ignore[attr-defined]
            features = encoder(features)
            skips.append(features)
            features = downsample(features)
        return features, skips

    @staticmethod
    def guided(guide: Guide | None, level: int, features: torch.Tensor) -> torch.Tensor:
        """What a backbone calls at each decoder level: the guide's output, or the features unchanged."""
        return features if guide is None else guide(level, features)


_REGISTRY: dict[str, type[Backbone]] = {}
BackboneClass = TypeVar("BackboneClass", bound=type[Backbone])


def register_backbone(name: str) -> Callable[[BackboneClass], BackboneClass]:
    """Class decorator adding a Backbone subclass to the registry under `name`."""

    def add(cls: BackboneClass) -> BackboneClass:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is already registered by {_REGISTRY[name].__qualname__}")
        _REGISTRY[name] = cls
        return cls

    return add


def available() -> list[str]:
    """Names of the registered backbones."""
    return sorted(_REGISTRY)


def create_backbone(name: str, **kwargs) -> Backbone:
    """Build the backbone registered as `name` with its constructor's keyword arguments."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown backbone {name!r}; available: {available()}")
    return _REGISTRY[name](**kwargs)
