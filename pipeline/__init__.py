"""Streaming loaders, distributed training, evaluation and the `perceive-ir` CLI."""
