"""Evaluation: image-quality metrics, the benchmark protocol, models on a shard split, result tables."""
