"""ClearAIR: quality, region and task guidance of a Restormer U-Net, its frozen helpers as providers."""
from .network import ClearAIR
from .providers import (
    DEFAULTS,
    KINDS,
    MissingProvider,
    QualityProvider,
    RegionProvider,
    TaskProvider,
    available,
    create_provider,
    register_provider,
)

__all__ = [
    "DEFAULTS",
    "KINDS",
    "ClearAIR",
    "MissingProvider",
    "QualityProvider",
    "RegionProvider",
    "TaskProvider",
    "available",
    "create_provider",
    "register_provider",
]
