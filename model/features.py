"""Frozen timm networks read at several depths: the SGM's semantic features and the perceptual loss's features."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn

from .weights import warn_random_weights

Pretrained = bool | str | Path | None
"""True: timm's hub weights for the name; a path: a local weights file; None or False: random."""


def create_timm_model(name: str, pretrained: Pretrained, **kwargs) -> nn.Module:
    """A timm model by name, weights from timm's hub (True), a local file (path) or none (random, with a warning)."""
    if isinstance(pretrained, (str, Path)):
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(pretrained)), **kwargs)
    if not pretrained:
        warn_random_weights(f"timm model {name!r}", "pass pretrained=True (timm hub) or a local weights file")
    return timm.create_model(name, pretrained=bool(pretrained), **kwargs)


def evenly_spaced_depths(n_depths: int, n_taken: int) -> list[int]:
    """`n_taken` indices into `n_depths` feature depths, spread evenly and ending at the deepest."""
    if not 1 <= n_taken <= n_depths:
        raise ValueError(f"cannot take {n_taken} depths from a network with {n_depths}")
    return [round((i + 1) * n_depths / n_taken) - 1 for i in range(n_taken)]


class FrozenFeatures(nn.Module):
    """Feature maps of a frozen timm network at chosen depths.

    `depths` index the network's `feature_info` (a ViT's blocks, a CNN's stages), in
    increasing order; an int n takes n of them spread evenly up to the deepest. The module takes float RGB images in
    [0, 1], resizes them to `input_size` x `input_size` when given (networks with a fixed
    input size, such as ViTs, are set to it), normalises them with the network's own mean
    and std, and returns one NCHW map per depth, shallow to deep. It is differentiable with
    respect to the images (the perceptual loss needs that), but its parameters never train
    and it stays in eval mode.
    """

    def __init__(
        self,
        name: str,
        pretrained: Pretrained,
        depths: Sequence[int] | int,
        input_size: int | None = None,
        **timm_kwargs,
    ) -> None:
        super().__init__()
        net = create_timm_model(name, pretrained, **timm_kwargs)
        if input_size is not None and net.pretrained_cfg.get("fixed_input_size"):
            net.set_input_size(img_size=input_size)
        self.depths = evenly_spaced_depths(len(net.feature_info), depths) if isinstance(depths, int) else list(depths)
        if self.depths != sorted(set(self.depths)):
            raise ValueError(f"depths {self.depths} must increase: the features come out shallow to deep")
        self.channels = [net.feature_info[d]["num_chs"] for d in self.depths]
        net.prune_intermediate_layers(self.depths, prune_norm=True, prune_head=True)
        self.net = net.requires_grad_(False).eval()
        self.input_size = input_size
        config = net.pretrained_cfg
        self.register_buffer("mean", torch.tensor(config["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config["std"]).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> FrozenFeatures:
        return super().train(False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        if self.input_size is not None:
            images = F.interpolate(images, size=(self.input_size, self.input_size), mode="bilinear", antialias=True)
        images = (images - self.mean) / self.std
        return self.net.forward_intermediates(images, indices=self.depths, intermediates_only=True)
