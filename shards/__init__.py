"""Tiered webdataset shards built by dask from any folder of photos.

    import shards
    result = shards.build("photos/", "out/", shards.BuildConfig(types=("noise", "haze"), patch=256))
    print(result.summary())
    print(shards.inspect("out/").text())
"""

from shards.build import BuildError, BuildResult, build
from shards.codec import Codec, decode, parse_codec
from shards.config import DEFAULT_TYPES, BuildConfig, parse_splits, type_dir
from shards.plan import SampleSpec, ShardSpec, make_plan, sample_key, split_of
from shards.reader import read_samples
from shards.report import Report, inspect
from shards.sources import BUILTIN, IMAGE_SUFFIXES, BadImage, Source, image_files, list_sources, load_image, load_photo
from shards.tarwriter import atomic_output

__all__ = [
    "BUILTIN", "DEFAULT_TYPES", "IMAGE_SUFFIXES",
    "BadImage", "BuildConfig", "BuildError", "BuildResult", "Codec", "Report", "SampleSpec", "ShardSpec", "Source",
    "atomic_output", "build", "decode", "image_files", "inspect", "list_sources", "load_image", "load_photo", "make_plan", "parse_codec", "parse_splits",
    "read_samples", "sample_key", "split_of", "type_dir",
]
