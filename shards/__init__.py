"""Tiered webdataset shards built by dask from any folder of photos."""

from shards.sources import BUILTIN, IMAGE_SUFFIXES, BadImage, Source, list_sources, load_image

__all__ = ["BUILTIN", "IMAGE_SUFFIXES", "BadImage", "Source", "list_sources", "load_image"]
