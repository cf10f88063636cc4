"""What a loader reads: the shards of one split and their samples, from manifests alone.

A catalog is built once per process from a build's manifest (a build root,
opened with `shards.open_build`) or from the per-shard manifest beside each
tar (a list of shard URLs); no tar is opened. Everything the epoch plan needs (shards per type, samples
per shard in tar order) and the labels every batch carries (severity and
score per tier) come from it, so the plan costs no I/O and the same catalog
gives the same plan on every rank and worker.

Canonical order: shards sorted by their path relative to the build root
(the manifest's `shard` column), samples within a shard in manifest order,
which is tar order. The order in which URLs are given does not matter.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import degradations as D
from pipeline.data.tar_stream import open_url
from shards.format import check_version, companion_tar, open_build, shard_manifest, shard_version

_FETCHERS = 16  # per-shard manifests read at once from a list of URLs
_COLUMNS = ["key", "split", "type", "tier", "severity", "score", "shard", "width", "height", "sha256"]


@dataclass(frozen=True)
class Catalog:
    """Shards and samples of one split. Sample ids run shard by shard, in tar order."""

    split: str
    types: tuple[str, ...]  # sorted type names present in the split
    shard_paths: tuple[str, ...]  # relative to the build root, sorted; index = shard id
    shard_urls: tuple[str, ...]  # where each shard is read from
    shard_type: np.ndarray  # (S,) type id of each shard
    shard_start: np.ndarray  # (S + 1,) first sample id of each shard, then the total
    keys: np.ndarray  # (N,) object: sample key
    severity: np.ndarray  # (N, 3) float32, columns in D.TIERS order (lq, mq, hq)
    score: np.ndarray  # (N, 3) float32, same columns
    sizes: np.ndarray  # (N, 2) int: width, height of the sample's images
    # (N, 3) uint64, D.TIERS columns: the first 8 bytes of each member's SHA-256 as the manifest lists
    # it (0: no member), checked before decoding; 8 bytes tell a swapped or rewritten member apart
    # at 24 bytes a sample instead of 3 x 64 characters
    member_sha: np.ndarray | None = None
    # the calibration the build was tiered with; None for a URL list (no build record)
    calibration: D.Calibration | None = None
    # per shard, a digest of its manifest as read from a URL list ("" for a build root): names the
    # shard's content, so a local cache of a rebuilt shard at the same URL is not taken for it
    shard_versions: tuple[str, ...] = ()
    # per shard, where its companion of rendered mq images is read from ("" for none): a paper
    # build's mq lives beside its shards (shards.format.companion_tar), read in step with them
    shard_companions: tuple[str, ...] = ()
    # whether the build stored severity and quality maps (`build --maps`); None for a URL list,
    # where a sample without them is found out when it is read
    maps: bool | None = None

    @property
    def samples(self) -> int:
        return len(self.keys)

    def shard_count(self, shard: int) -> int:
        return int(self.shard_start[shard + 1] - self.shard_start[shard])

    def shard_of(self, sid: int) -> int:
        return int(np.searchsorted(self.shard_start, sid, side="right")) - 1

    def type_of(self, sid: int) -> str:
        return self.types[int(self.shard_type[self.shard_of(sid)])]

    def digest(self) -> str:
        """Identifies the data a loader state belongs to: shard paths and their sample counts."""
        h = hashlib.blake2b(digest_size=8)
        for path, n in zip(self.shard_paths, np.diff(self.shard_start)):
            h.update(f"{path}\t{int(n)}\n".encode())
        return h.hexdigest()


def _sha_prefix(hexdigest: object) -> int:
    return int(hexdigest[:16], 16) if isinstance(hexdigest, str) and len(hexdigest) >= 16 else 0


def member_sha_prefix(data: bytes) -> int:
    """What `Catalog.member_sha` holds for a member's bytes."""
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")


KeyFilter = Callable[[pd.Series], "np.ndarray | pd.Series"]  # sample keys -> which to keep


def load_catalog(source: str | Path | Sequence[str], split: str, where: KeyFilter | None = None) -> Catalog:
    """A catalog of `split` from a shard root (a directory) or a list of shard URLs; with `where`,
    only the samples whose keys it keeps (a cross-fold stage's training folds, a probe set)."""
    if isinstance(source, (str, Path)):
        build = open_build(source)
        frame = build.manifest(_COLUMNS, filters=[("split", "=", split)]).to_pandas()
        urls = {path: str(build.path(path)) for path in frame["shard"].unique()}
        companions = {}
        if build.tiers == "paper" and build.rendered:
            medium = build.medium(_COLUMNS, filters=[("split", "=", split)]).to_pandas()
            frame = pd.concat([frame, medium], ignore_index=True)  # main rows first: they place each sample
            companions = {p: str(build.path(companion_tar(p))) for p in urls if companion_tar(p) in set(medium["shard"])}
        if where is not None:
            frame = frame[np.asarray(where(frame["key"]), dtype=bool)]
        catalog = _catalog(frame, split, urls, str(build.root), build.calibration, companions=companions)
        return dataclasses.replace(catalog, maps=bool(build.config.get("maps")))
    urls = [str(u) for u in source]
    if not urls:
        raise D.UserError("the list of shard URLs is empty")
    repeated = sorted({u for u in urls if urls.count(u) > 1})
    if repeated:
        raise D.UserError(f"shard URL listed more than once: {repeated[0]}")
    with ThreadPoolExecutor(_FETCHERS) as pool:  # remote manifests: latency, not bandwidth, is the cost
        frames, digests = zip(*pool.map(_read_shard_manifest, urls))
    by_path: dict[str, str] = {}
    for url, frame in zip(urls, frames):
        for path in frame["shard"].unique():
            if path in by_path:
                # Shards are known by their path inside their build: two builds in one list would merge.
                raise D.UserError(
                    f"{by_path[path]} and {url} both hold shard {path}: a URL list must come from one build"
                )
            by_path[path] = url
    frame = pd.concat(frames, ignore_index=True)
    held = sorted(frame["split"].unique())
    frame = frame[frame["split"] == split]
    if where is not None:
        frame = frame[np.asarray(where(frame["key"]), dtype=bool)]
    if frame.empty:
        raise D.UserError(f"none of the {len(urls)} shards holds split {split!r} (they hold: {', '.join(held) or 'nothing'})")
    return _catalog(frame, split, by_path, f"{len(urls)} shard URLs", versions=dict(zip(urls, digests)))


def _read_shard_manifest(tar_url: str) -> tuple[pd.DataFrame, str]:
    """The shard's manifest rows, and a digest of its bytes."""
    url = shard_manifest(tar_url)
    try:
        with open_url(url) as stream:
            data = stream.read()
        table = pq.read_table(io.BytesIO(data), columns=_COLUMNS)
    except (OSError, ValueError, pa.ArrowException) as err:
        raise D.UserError(f"cannot read the manifest of shard {tar_url} at {url}: {err}") from err
    check_version(shard_version(table.schema), tar_url)
    return table.to_pandas(), hashlib.blake2b(data, digest_size=8).hexdigest()


def _catalog(
    frame: pd.DataFrame, split: str, urls: dict[str, str], where: str,
    calibration: D.Calibration | None = None, versions: dict[str, str] | None = None,
    companions: dict[str, str] | None = None,
) -> Catalog:
    if frame.empty:
        raise D.UserError(f"{where} holds no samples in split {split!r}")
    unknown = set(frame["tier"].unique()) - set(D.TIERS)
    if unknown:
        raise D.UserError(f"{where}: manifest rows with unknown tiers {sorted(unknown)}")
    # One row per sample in manifest order (first appearance of its key), then per-tier columns.
    first = frame.drop_duplicates("key")
    paths = sorted(first["shard"].unique())
    shard_code = pd.Categorical(first["shard"], categories=paths).codes
    order = np.argsort(shard_code, kind="stable")
    samples = first.iloc[order]
    keys = samples["key"].to_numpy(dtype=object)
    wide = frame.pivot(index="key", columns="tier", values=["severity", "score"]).reindex(index=keys)
    severity = np.stack([wide["severity"].get(t, pd.Series(np.nan, index=wide.index)) for t in D.TIERS], axis=1)
    score = np.stack([wide["score"].get(t, pd.Series(np.nan, index=wide.index)) for t in D.TIERS], axis=1)
    sha = frame.pivot(index="key", columns="tier", values="sha256").reindex(index=keys)
    member_sha = np.stack([sha[t].map(_sha_prefix).to_numpy(dtype=np.uint64) if t in sha else np.zeros(len(keys), np.uint64)
                           for t in D.TIERS], axis=1)

    shard_type_name = samples.groupby("shard", sort=True)["type"].first().reindex(paths)
    mixed = samples.groupby("shard")["type"].nunique()
    if (mixed > 1).any():
        raise D.UserError(f"{where}: shard {mixed[mixed > 1].index[0]} holds more than one type")
    types = tuple(sorted(shard_type_name.unique()))
    counts = np.bincount(shard_code[order], minlength=len(paths))
    return Catalog(
        split=split,
        types=types,
        shard_paths=tuple(paths),
        shard_urls=tuple(urls[p] for p in paths),
        shard_type=np.array([types.index(t) for t in shard_type_name], dtype=np.int64),
        shard_start=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        keys=keys,
        severity=severity.astype(np.float32),
        score=score.astype(np.float32),
        sizes=samples[["width", "height"]].to_numpy(dtype=np.int64),
        member_sha=member_sha,
        calibration=calibration,
        shard_versions=tuple((versions or {}).get(urls[p], "") for p in paths),
        shard_companions=tuple((companions or {}).get(p, "") for p in paths),
    )
