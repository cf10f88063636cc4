"""One dask task: make every sample of one shard, write its tar, then its parquet manifest.

The task holds one photo and one sample in memory at a time (members are
streamed into the tar) and returns only counts, so a worker's memory is
bounded by a shard whatever the build's size. The parquet is written after
the tar is in place: its presence marks the shard done.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from shards.codec import Codec
from shards.manifest import write_shard_manifest
from shards.plan import SampleSpec, ShardSpec
from shards.sample import SLOTS, Scorer, make_slots, patch_box
from shards.sources import BadImage
from shards.tarwriter import shard_writer


@dataclass(frozen=True)
class ShardJob:
    """What every shard task of a build shares (small: it is sent with each task)."""

    out: str
    patch: int
    patches_per_image: int
    layout: str
    max_pixels: int
    codec: Codec
    scorer: Scorer


@dataclass(frozen=True)
class ShardResult:
    name: str
    samples: int
    errors: int


class _PhotoCache:
    """The last photo loaded: a shard's samples are sorted by key, so one photo's patches are adjacent."""

    def __init__(self, max_pixels: int) -> None:
        self.max_pixels = max_pixels
        self._id: str | None = None
        self._value: np.ndarray | BadImage | None = None

    def get(self, spec: SampleSpec) -> np.ndarray:
        if spec.source.id != self._id:
            self._id = spec.source.id
            try:
                self._value = spec.source.load(self.max_pixels)
            except BadImage as err:
                self._value = err
        if isinstance(self._value, BadImage):
            raise self._value
        assert self._value is not None
        return self._value


def run_shard(spec: ShardSpec, job: ShardJob) -> ShardResult:
    """Build one shard into job.out; bad photos and unreachable tiers become error records, not failures."""
    cv2.setNumThreads(1)  # one worker process per core: OpenCV's own threads would only contend
    out = Path(job.out)
    (out / spec.tar).parent.mkdir(parents=True, exist_ok=True)
    photos = _PhotoCache(job.max_pixels)
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    with shard_writer(out / spec.tar) as add:
        for sample in spec.samples:
            try:
                members, sample_rows = _make_sample(photos.get(sample), sample, spec, job)
            except BadImage as err:  # the photo is unusable (unreadable, or smaller than the patch)
                errors.append(_error(sample, spec, str(err)))
                continue
            except ValueError as err:  # this patch under this type (SampleError: a tier out of reach)
                errors.append(_error(sample, spec, str(err), spec.type, sample.key, getattr(err, "tier", None)))
                continue
            for name, data in members:
                add(name, data)
            rows.extend(sample_rows)
    write_shard_manifest(rows, errors, out / spec.parquet)
    return ShardResult(spec.name, len(rows) // len(SLOTS), len(errors))


def _error(sample: SampleSpec, spec: ShardSpec, reason: str, type_name: str | None = None,
           key: str | None = None, tier: str | None = None) -> dict[str, Any]:
    return {"source": sample.source.id, "split": spec.split, "type": type_name, "key": key, "tier": tier, "reason": reason}


def _make_sample(image: np.ndarray, sample: SampleSpec, spec: ShardSpec, job: ShardJob) -> tuple[list[tuple[str, bytes]], list[dict[str, Any]]]:
    """Members (name, bytes) in tar order and manifest rows of one sample."""
    h, w = image.shape[:2]
    try:
        x, y, pw, ph = patch_box(h, w, job.patch, sample.patch_index, job.patches_per_image, job.layout, job.scorer.seed, sample.key)
    except ValueError as err:
        raise BadImage(str(err)) from None
    patch = np.ascontiguousarray(image[y : y + ph, x : x + pw])
    slots = make_slots(patch, spec.type, sample.key, job.scorer)
    members, rows = [], []
    record: dict[str, Any] = {
        "key": sample.key,
        "source": sample.source.id,
        "source_size": [w, h],
        "box": [x, y, pw, ph],
        "split": spec.split,
        "type": spec.type,
        "seed": job.scorer.seed,
        "metric": job.scorer.metric,
    }
    for slot in SLOTS:
        data = job.codec.encode(slots[slot].image)
        member = f"{sample.key}.{slot}.{job.codec.extension}"
        members.append((member, data))
        record[slot] = {**slots[slot].record, "member": member}
        r = slots[slot].record
        rows.append(
            {
                "key": sample.key, "split": spec.split, "type": spec.type, "tier": slot,
                "severity": r["severity"], "score": r["score"], "psnr": r["psnr"],
                "shard": spec.tar, "member": member, "width": pw, "height": ph,
                "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "source": sample.source.id,
            }
        )
    members.append((f"{sample.key}.json", json.dumps(record, sort_keys=True).encode()))
    return members, rows
