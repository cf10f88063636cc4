"""Streaming loaders over perceive-ir shards: catalog -> epoch plan -> workers -> batches.

    from pipeline.data import make_loader
    loader = make_loader("out", mode="triplets", batch_size=8, crop=256)
"""

from pipeline.data.loader import ShardProblemWarning, StreamLoader, make_loader
from pipeline.data.modes import MODES, Mode, register_mode

__all__ = ["MODES", "Mode", "ShardProblemWarning", "StreamLoader", "make_loader", "register_mode"]
