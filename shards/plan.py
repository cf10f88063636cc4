"""The plan: which samples go into which shard, as a pure function of (sources, config).

Nothing here reads pixels, so planning a million files costs a directory
listing. Every choice is a hash of names, never of the process or the
order work happens to run in:

- a source's split is a hash of its id (its path relative to the source
  root), so a photo never lands in two splits and keeps its split when
  other photos are added or the seed changes;
- a sample is one patch (source, patch index) under one type; its key is
  built from the type, the source id and the patch index;
- within a (split, type) the samples are sorted by key and cut into shards
  of `samples_per_shard`.
Patch boxes need the image size, so the task that loads the image computes
them, from the key and the seed (see `shards.sample.patch_box`).
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass

import degradations as D
from shards.config import BuildConfig
from shards.format import shard_manifest, shard_stem, type_dir
from shards.sources import Source

_STEM_CHARS = 24  # of the source id kept in a key, for people; the digest makes it unique
_UNSAFE = re.compile(r"[^A-Za-z0-9]+")


@dataclass(frozen=True)
class SampleSpec:
    key: str
    source: Source
    patch_index: int


@dataclass(frozen=True)
class ShardSpec:
    split: str
    type: str
    index: int
    samples: tuple[SampleSpec, ...]

    @property
    def name(self) -> str:
        """Path of the shard relative to OUT, without suffix: train/noise/shard-000000."""
        return shard_stem(self.split, self.type, self.index)

    @property
    def tar(self) -> str:
        return self.name + ".tar"

    @property
    def parquet(self) -> str:
        return shard_manifest(self.tar)


def _digest(text: str, size: int) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=size).digest()


def split_of(source_id: str, splits: tuple[tuple[str, float], ...]) -> str:
    """The split of a source: a hash of its id read as a number in [0, 1), cut at the cumulative fractions."""
    u = int.from_bytes(_digest("split/" + source_id, 8), "big") / 2.0**64
    edge = 0.0
    for name, frac in splits:
        edge += frac
        if u < edge:
            return name
    return splits[-1][0]  # fractions that sum to 1 within rounding


def sample_key(type_name: str, source_id: str, patch_index: int) -> str:
    """`noise-photos_beach_0001-1f2e3d4c5b6a7988-002`: only [A-Za-z0-9_-], no dots, unique per sample."""
    stem = _UNSAFE.sub("_", posixpath.splitext(source_id)[0]).strip("_")
    if len(stem) > _STEM_CHARS:  # keep the end (the file name), from a word boundary when there is one
        stem = stem[-_STEM_CHARS:]
        stem = stem.split("_", 1)[1] if "_" in stem[:-1] else stem
    stem = stem or "x"
    return f"{type_dir(type_name)}-{stem}-{_digest(source_id, 8).hex()}-{patch_index:03d}"


def fold_of(key: str, folds: int) -> int:
    """The cross-fold fold (0 .. folds - 1) of the sample `key`: a hash of its type and photo (the
    key without its patch index), as the Perceive-IR authors hash task and path. Every patch of one
    photo under one type shares a fold, so a fold's model never saw another crop of that photo."""
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise D.UserError(f"folds must be an integer of at least 2, got {folds!r}")
    return int.from_bytes(_digest("fold/" + key.rsplit("-", 1)[0], 8), "big") % folds


def make_plan(sources: list[Source], config: BuildConfig) -> list[ShardSpec]:
    """Shards in a fixed order: by split (as configured), type (as configured), then index."""
    by_split: dict[str, list[Source]] = {name: [] for name, _ in config.splits}
    for src in sources:
        by_split[split_of(src.id, config.splits)].append(src)
    plan = []
    for split, _ in config.splits:
        for type_name in config.types:
            samples = sorted(
                (
                    SampleSpec(sample_key(type_name, src.id, i), src, i)
                    for src in by_split[split]
                    for i in range(config.patches_per_image)
                ),
                key=lambda s: s.key,
            )
            n = config.samples_per_shard
            for index, start in enumerate(range(0, len(samples), n)):
                plan.append(ShardSpec(split, type_name, index, tuple(samples[start : start + n])))
    keys = [s.key for shard in plan for s in shard.samples]
    if len(set(keys)) != len(keys):  # 64-bit digests: only two ids with equal hashes could do this
        raise D.UserError("two sources give the same sample key; rename one of them")
    return plan
