"""One dask task: make every sample of one shard, write its tar, then its parquet manifest.

The task holds one sample in memory at a time (members are streamed into
the tar) and returns only counts; with the worker's bounded cache of recent
photos, a worker's memory is bounded whatever the build's size. The parquet is written after
the tar is in place: its presence marks the shard done.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

import degradations as D
from shards.codec import Codec
from shards.files import shard_writer
from shards.format import MAP_KINDS, map_kind, member_name, member_tiers, record_member
from shards.manifest import write_shard_manifest
from shards.plan import SampleSpec, ShardSpec
from shards.sample import SampleError, Scorer, make_slots, paper_slots, patch_box
from shards.sources import BadImage, Source

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


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
    tiers: str = "bands"  # the tier scheme (BuildConfig.tiers)


@dataclass(frozen=True)
class ShardResult:
    name: str
    samples: int
    errors: int
    disk_full: str = ""  # the OSError, when the disk filled: returned, not raised, so dask does not retry it


class _PhotoCache:
    """Photos this worker process loaded lately, most recent last, up to `budget` bytes (at least one).

    A shard's samples are sorted by key, so one photo's patches are adjacent,
    and the build submits shard k of every type one after the other: they cut
    patches from the same photos, which are then decoded once per worker
    rather than once per type. Process-wide because each shard is its own
    task; keyed by the file's path, size and mtime, so a long-lived worker
    never serves an edited photo, or another build's photo of the same name.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._photos: OrderedDict[tuple[Any, ...], np.ndarray | str] = OrderedDict()  # str: why it is unusable
        self._lock = threading.Lock()  # a foreign cluster may run several tasks per worker process

    def get(self, source: Source, max_pixels: int) -> np.ndarray:
        key = (source.id if source.path is None else source.path, _stamp(source.path), max_pixels)
        with self._lock:
            value = self._photos.get(key)
            if value is not None:
                self._photos.move_to_end(key)
        if value is None:
            try:
                value = source.load(max_pixels)
                value.flags.writeable = False  # shared by every task that cuts patches from it
            except BadImage as err:
                value = str(err)  # the reason; a fresh BadImage is raised each time
            with self._lock:
                self._photos[key] = value
                self._trim()
        if isinstance(value, str):
            raise BadImage(value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._photos.clear()

    def _trim(self) -> None:
        held = sum(v.nbytes for v in self._photos.values() if isinstance(v, np.ndarray))
        while held > self.budget and len(self._photos) > 1:
            _, old = self._photos.popitem(last=False)
            held -= old.nbytes if isinstance(old, np.ndarray) else 0


def _stamp(path: str | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None  # load reports it
    return st.st_size, st.st_mtime_ns


_PHOTOS = _PhotoCache(256 * 2**20)


def forget_photos() -> None:
    """Free this process's photo cache (run on every worker when a build ends)."""
    _PHOTOS.clear()


def run_shard(spec: ShardSpec, job: ShardJob) -> ShardResult:
    """Build one shard into job.out; unusable photos and unreachable tiers become error rows, not failures."""
    try:
        return _run_shard(spec, job)
    except OSError as err:
        if err.errno not in DISK_FULL:
            raise
        return ShardResult(spec.name, 0, 0, disk_full=str(err))


def _run_shard(spec: ShardSpec, job: ShardJob) -> ShardResult:
    cv2.setNumThreads(1)  # one worker process per core: OpenCV's own threads would only contend
    out = Path(job.out)
    (out / spec.tar).parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    samples = 0
    with shard_writer(out / spec.tar) as add:
        for sample in spec.samples:
            # Only these two are recorded: anything else is a bug, and fails the shard (then the build).
            try:
                members, sample_rows = _make_sample(_PHOTOS.get(sample.source, job.max_pixels), sample, spec, job)
            except BadImage as err:  # the photo is unusable (unreadable, or smaller than the patch)
                errors.append(_error(sample, spec, str(err)))
                continue
            except SampleError as err:  # this patch under this type: a tier out of reach
                errors.append(_error(sample, spec, str(err), spec.type, sample.key, err.tier))
                continue
            for name, data in members:
                add(name, data)
            rows.extend(sample_rows)
            samples += 1
    write_shard_manifest(rows, errors, out / spec.parquet)
    return ShardResult(spec.name, samples, len(errors))


def encode_map(values: np.ndarray, level: int | None) -> bytes:
    """An H x W map in [0, 1] as 8-bit greyscale PNG (0-255)."""
    grey = np.clip(np.rint(values * np.float32(255)), 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".png", grey, [cv2.IMWRITE_PNG_COMPRESSION, 1 if level is None else int(level)])
    if not ok:
        raise RuntimeError("PNG encoding of a map failed")
    return data.tobytes()


def _map_columns(stats: dict[str, Any] | None) -> dict[str, float]:
    """The manifest's map columns of one image (none without maps: they stay null)."""
    if stats is None:
        return {}
    columns = {f"map_{k}": v for k, v in stats["severity"].items()}
    columns.update({f"quality_{k}": v for k, v in stats["quality"].items()})
    columns.update({f"area_{k}": v for k, v in stats["areas"].items()})
    return columns


def _error(sample: SampleSpec, spec: ShardSpec, reason: str, type_name: str | None = None,
           key: str | None = None, tier: str | None = None) -> dict[str, Any]:
    return {"source": sample.source.id, "split": spec.split, "type": type_name, "key": key, "tier": tier, "reason": reason}


def _make_sample(image: np.ndarray, sample: SampleSpec, spec: ShardSpec, job: ShardJob) -> tuple[list[tuple[str, bytes]], list[dict[str, Any]]]:
    """Members (name, bytes) in tar order and manifest rows of one sample."""
    h, w = image.shape[:2]
    x, y, pw, ph = patch_box(h, w, job.patch, sample.patch_index, job.patches_per_image, job.layout, job.scorer.seed, sample.key)
    need = max(D.SCORE_MIN_SIDE, D.get(spec.type).min_size)
    if min(pw, ph) < need:  # only whole images (--patch 0) can be: BuildConfig checks patch sides
        raise SampleError(f"image is {pw}x{ph}, smaller than {need} px, the least {spec.type} and its scoring need")
    patch = np.ascontiguousarray(image[y : y + ph, x : x + pw])
    slots = (make_slots if job.tiers == "bands" else paper_slots)(patch, spec.type, sample.key, job.scorer)
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
        "tiers": job.tiers,
    }
    for slot in member_tiers(job.tiers):
        data = job.codec.encode(slots[slot].image)
        member = member_name(sample.key, slot, job.codec.extension)
        members.append((member, data))
        record[slot] = {**slots[slot].record, "member": member}
        r = slots[slot].record
        rows.append(
            {
                "key": sample.key, "split": spec.split, "type": spec.type, "tier": slot,
                "severity": r["severity"], "score": r["score"], "psnr": r["psnr"],
                "shard": spec.tar, "member": member, "width": pw, "height": ph,
                "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "source": sample.source.id,
                **_map_columns(r.get("maps")),
            }
        )
        if slots[slot].maps is not None:
            for kind, values in zip(MAP_KINDS, slots[slot].maps):
                name = member_name(sample.key, map_kind(slot, kind), "png")
                members.append((name, encode_map(values, job.codec.level)))
                record[slot][kind] = name
    members.append((record_member(sample.key), json.dumps(record, sort_keys=True).encode()))
    return members, rows
