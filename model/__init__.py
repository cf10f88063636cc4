"""Perceive-IR's networks: the CLIP quality perceiver, the backbone-agnostic restorer, ClearAIR and their losses.

Imports nothing from the data packages. Float images in [0, 1], NCHW, RGB, at every boundary.
"""
from . import backbones, losses
from .cfe import CompactFeatureExtractor
from .clearair import ClearAIR
from .perceiver import TIERS, QualityPerceiver
from .restorer import Restorer
from .seeding import seeded_torch
from .weights import RandomWeightsWarning

__all__ = [
    "TIERS",
    "ClearAIR",
    "CompactFeatureExtractor",
    "QualityPerceiver",
    "RandomWeightsWarning",
    "Restorer",
    "backbones",
    "losses",
    "seeded_torch",
]
