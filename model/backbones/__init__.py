"""Restoration backbones, registered by name: `create_backbone("restormer", **kwargs)`.

Importing a backbone module registers it; see `base` for the interface a backbone implements.
"""
from . import nafnet, restormer
from .base import Backbone, Guide, available, create_backbone, register_backbone

__all__ = ["Backbone", "Guide", "available", "create_backbone", "register_backbone", "nafnet", "restormer"]
