"""Tiered webdataset shards built by dask from any folder of photos.

    import shards
    result = shards.build("photos/", "out/", shards.BuildConfig(types=("noise", "haze"), patch=256))
    print(result.summary())
    print(shards.inspect("out/").text())
    build = shards.open_build("out/")        # the build record, its calibration and its tables
"""

from shards.build import BuildError, BuildResult, ShardTask, build, dask_client, run_shard_tasks
from shards.codec import Codec, decode, image_size, parse_codec
from shards.config import DEFAULT_TYPES, BuildConfig, parse_splits
from shards.files import atomic_output, output_folder
from shards.format import FORMAT_VERSION, MEMBER_TIERS, Build, FormatError, open_build, type_dir
from shards.plan import SampleSpec, ShardSpec, fold_of, make_plan, sample_key, split_of
from shards.reader import read_samples
from shards.report import Report, inspect
from shards.sources import BUILTIN, IMAGE_SUFFIXES, BadImage, Source, image_files, list_sources, load_image, load_photo, load_sources

__all__ = [
    "BUILTIN", "DEFAULT_TYPES", "FORMAT_VERSION", "IMAGE_SUFFIXES", "MEMBER_TIERS",
    "BadImage", "Build", "BuildConfig", "BuildError", "BuildResult", "Codec", "FormatError", "Report", "SampleSpec", "ShardSpec", "ShardTask",
    "Source", "atomic_output", "output_folder", "build", "dask_client", "decode", "fold_of", "image_files", "inspect", "list_sources", "load_image", "load_photo", "load_sources",
    "image_size", "make_plan", "open_build", "parse_codec", "parse_splits", "read_samples", "run_shard_tasks", "sample_key", "split_of", "type_dir",
]
