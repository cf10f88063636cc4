"""The epoch plan: which samples a rank yields in an epoch, in which order, read from where.

A pure function of (catalog counts, seed, epoch, rank, world size, batch
size, window, type weights): no I/O, the same on every rank, worker and
machine, so ranks agree on their split without talking to each other.

1. Shard order: per type, the type's shards are permuted by
   rng(seed, epoch, "shards", type) and their samples concatenated (tar order
   inside a shard). The permutation is taken before the rank split and is
   identical on every rank; it changes every epoch.
2. Rank split: each type's sequence is cut into `world_size` contiguous
   parts, so a rank reads few shards, sequentially. Sizes differ by at most
   one; the ranks that take the extra sample rotate from type to type, so
   rank totals differ by at most one as well.
3. Mixing: without weights, a random interleave of the rank's per-type
   parts (each sample once). With weights (repeat factors, as PromptIR's
   "rain x120"), i.i.d. picks of a type with probability proportional to
   weight x samples; a part that runs out is read again with its pieces in a
   fresh order. `resampled` reads shards drawn with replacement per rank.
4. Length: every rank yields floor(N / (world_size * batch_size)) batches
   (with `drop_last` off, for one-process evaluation: every sample once, the
   last batch partial),
   N the samples of the selected types. Without weights or resampling the
   tail of each rank's interleave is cut to that length: at most one batch
   of samples per rank goes unread in an epoch, a different set each epoch.
5. Shuffle: positions are permuted within consecutive windows of
   `shuffle_window` samples (a multiple of the batch size) by
   rng(seed, epoch, rank, "window", k); batches are consecutive runs.

A *visit* is one pass of a reader over part of one shard (a contiguous run
of its samples); readers open each visit once and go forward only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import degradations as D
from pipeline.data.catalog import Catalog


@dataclass(frozen=True)
class PlanSpec:
    """Everything but the epoch and rank that shapes a plan."""

    seed: int
    world_size: int
    batch_size: int
    shuffle_window: int  # samples, a multiple of batch_size; 0 keeps the mixed order
    types: tuple[str, ...]  # the selected types, sorted
    weights: tuple[float, ...] | None = None  # repeat factor per selected type; None: every sample once
    resampled: bool = False
    drop_last: bool = True  # False (one rank, no weights): every sample once, the last batch partial


@dataclass(frozen=True)
class EpochPlan:
    """One rank's epoch: position i of the epoch is sample `sample[i]`; batch b is positions [bB, (b+1)B)."""

    epoch: int
    rank: int
    batch_size: int
    sample: np.ndarray  # (L,) sample id
    visit: np.ndarray  # (L,) the visit that reads it
    read_order: np.ndarray  # (L,) rank in the reading order, before the window shuffle
    repeat: np.ndarray  # (L,) earlier occurrences of the sample in this rank's epoch
    visit_shard: np.ndarray  # (V,) shard of each visit

    @property
    def batches(self) -> int:
        return -(-len(self.sample) // self.batch_size)  # the length is a multiple of batch_size unless drop_last is off

    def batch(self, b: int) -> range:
        return range(b * self.batch_size, min((b + 1) * self.batch_size, len(self.sample)))


def type_sizes(catalog: Catalog, types: tuple[str, ...]) -> np.ndarray:
    """Samples per selected type."""
    per_shard = np.diff(catalog.shard_start)
    return np.array([per_shard[catalog.shard_type == catalog.types.index(t)].sum() for t in types], dtype=np.int64)


def batches_per_epoch(catalog: Catalog, spec: PlanSpec) -> int:
    samples = int(type_sizes(catalog, spec.types).sum())
    if not spec.drop_last:
        return -(-samples // spec.batch_size)
    return samples // (spec.world_size * spec.batch_size)


def samples_per_epoch(catalog: Catalog, spec: PlanSpec) -> int:
    """Positions in one rank's epoch."""
    if not spec.drop_last:
        return int(type_sizes(catalog, spec.types).sum())
    return batches_per_epoch(catalog, spec) * spec.batch_size


def check_spec(catalog: Catalog, spec: PlanSpec) -> None:
    """Raise UserError for a spec that cannot give every rank the same, non-empty epoch."""
    sizes = type_sizes(catalog, spec.types)
    if not spec.drop_last and (spec.world_size > 1 or spec.weights is not None or spec.resampled):
        raise D.UserError("drop_last=False reads every sample once in one process: it takes no ranks, type weights or resampling")
    need = spec.world_size * spec.batch_size if spec.drop_last else 1
    if sizes.sum() < need:
        raise D.UserError(
            f"split {catalog.split!r} has {int(sizes.sum())} samples of types {', '.join(spec.types)}: fewer than "
            f"batch_size x world_size = {spec.batch_size} x {spec.world_size} = {need}, so no rank gets a batch"
        )
    if spec.weights is not None and not spec.resampled:
        short = [f"{t} ({n})" for t, n, w in zip(spec.types, sizes, spec.weights) if w > 0 and n < spec.world_size]
        if short:
            raise D.UserError(
                f"types {', '.join(short)} have fewer samples than the {spec.world_size} ranks, so some rank has none "
                "to oversample; drop them from `types` or use resampled=True"
            )


def plan_epoch(catalog: Catalog, spec: PlanSpec, epoch: int, rank: int) -> EpochPlan:
    if not 0 <= rank < spec.world_size:
        raise ValueError(f"rank {rank} is outside world size {spec.world_size}")
    length = samples_per_epoch(catalog, spec)
    sizes = type_sizes(catalog, spec.types)
    mix = D.rng(spec.seed, epoch, rank, "mix")
    if spec.resampled:
        streams = [_resampled(catalog, spec, t, epoch, rank) for t in spec.types]
        labels = _weighted_labels(mix, sizes, spec.weights, length)
    else:
        parts = _rank_parts(catalog, spec, epoch, rank)
        if spec.weights is None:
            labels = mix.permutation(np.repeat(np.arange(len(spec.types)), [p.length for p in parts]))[:length]
        else:
            labels = _weighted_labels(mix, sizes, spec.weights, length)
        streams = [_Stream.passes(part, spec, t, epoch, rank) for part, t in zip(parts, spec.types)]

    sample = np.empty(length, dtype=np.int64)
    visit = np.empty(length, dtype=np.int64)
    visit_shard, visit_repeat, first_visit = [], [], 0
    for t, stream in enumerate(streams):
        where = np.flatnonzero(labels == t)
        s, v = stream.take(catalog, len(where))
        sample[where], visit[where] = s, v + first_visit
        visit_shard.extend(stream.shard)
        visit_repeat.extend(stream.repeat)
        first_visit += len(stream.shard)

    order = _window_order(length, spec, epoch, rank)
    visit_repeat_arr = np.asarray(visit_repeat, dtype=np.int64)
    return EpochPlan(
        epoch=epoch,
        rank=rank,
        batch_size=spec.batch_size,
        sample=sample[order],
        visit=visit[order],
        read_order=order,
        repeat=visit_repeat_arr[visit[order]],
        visit_shard=np.asarray(visit_shard, dtype=np.int64),
    )


class _Stream:
    """A type's reading order on one rank: visits (shard, first and stop offset in the shard), in order."""

    def __init__(self, refill: Callable[[_Stream], None] | None = None) -> None:
        self.shard: list[int] = []
        self.lo: list[int] = []
        self.hi: list[int] = []
        self.repeat: list[int] = []  # which pass over this data the visit is (0 the first)
        self.length = 0
        self.refill = refill  # adds visits to a stream that may run out (weighted, resampled)

    def add(self, shard: int, lo: int, hi: int, repeat: int) -> None:
        self.shard.append(shard)
        self.lo.append(lo)
        self.hi.append(hi)
        self.repeat.append(repeat)
        self.length += hi - lo

    def take(self, catalog: Catalog, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample ids and visit indices of the first n positions of the stream."""
        while self.length < n:
            if self.refill is None:
                raise AssertionError("a stream without refills ran out")  # the plan's length rules this out
            self.refill(self)
        if n == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        lo = np.asarray(self.lo)
        lens = np.asarray(self.hi) - lo
        ends = np.cumsum(lens)
        j = np.arange(n)
        v = np.searchsorted(ends, j, side="right")
        return catalog.shard_start[np.asarray(self.shard)[v]] + lo[v] + j - (ends[v] - lens[v]), v

    @classmethod
    def passes(cls, part: _Stream, spec: PlanSpec, type_name: str, epoch: int, rank: int) -> _Stream:
        """The rank's part, then (weighted mode) further passes over its visits in fresh orders."""

        def refill(s: _Stream) -> None:
            k = s.repeat[-1] + 1
            for i in D.rng(spec.seed, epoch, rank, "pass", type_name, k).permutation(len(part.shard)):
                s.add(part.shard[i], part.lo[i], part.hi[i], k)

        stream = cls(refill if spec.weights is not None else None)
        for visit in zip(part.shard, part.lo, part.hi, part.repeat):
            stream.add(*visit)
        return stream


def _rank_parts(catalog: Catalog, spec: PlanSpec, epoch: int, rank: int) -> list[_Stream]:
    """Per selected type, this rank's contiguous part of the epoch's shard-permuted sequence."""
    w = spec.world_size
    parts, carry = [], 0
    for name in spec.types:
        shards = np.flatnonzero(catalog.shard_type == catalog.types.index(name))
        shards = shards[D.rng(spec.seed, epoch, "shards", name).permutation(len(shards))]
        counts = np.diff(catalog.shard_start)[shards]
        base, rem = divmod(int(counts.sum()), w)
        extra = [(r - carry) % w < rem for r in range(w)]
        carry += rem
        start = rank * base + sum(extra[:rank])
        stop = start + base + extra[rank]
        part, first = _Stream(), 0
        for shard, n in zip(shards, counts):
            lo, hi = max(start - first, 0), min(stop - first, int(n))
            if lo < hi:
                part.add(int(shard), lo, hi, 0)
            first += int(n)
        parts.append(part)
    return parts


def _resampled(catalog: Catalog, spec: PlanSpec, type_name: str, epoch: int, rank: int) -> _Stream:
    """Whole shards of the type drawn with replacement, as many as the epoch needs."""
    shards = np.flatnonzero(catalog.shard_type == catalog.types.index(type_name))
    draws = D.rng(spec.seed, epoch, rank, "resample", type_name)
    seen: dict[int, int] = {}

    def refill(s: _Stream) -> None:
        shard = int(shards[draws.integers(len(shards))])
        s.add(shard, 0, catalog.shard_count(shard), seen.get(shard, 0))
        seen[shard] = seen.get(shard, 0) + 1

    return _Stream(refill)


def _weighted_labels(mix: np.random.Generator, sizes: np.ndarray, weights: tuple[float, ...] | None, length: int) -> np.ndarray:
    """i.i.d. type picks, P(type) proportional to weight x samples (weights default to 1)."""
    mass = sizes * (np.ones(len(sizes)) if weights is None else np.asarray(weights, dtype=np.float64))
    return mix.choice(len(sizes), size=length, p=mass / mass.sum())


def _window_order(length: int, spec: PlanSpec, epoch: int, rank: int) -> np.ndarray:
    """Positions permuted within consecutive windows of `shuffle_window`."""
    size = spec.shuffle_window
    if size == 0:
        return np.arange(length)
    return np.concatenate(
        [k * size + D.rng(spec.seed, epoch, rank, "window", k).permutation(min(size, length - k * size)) for k in range(-(-length // size))]
        or [np.empty(0, np.int64)]
    )
