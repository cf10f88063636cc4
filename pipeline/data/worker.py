"""What one loader worker does: read the samples of its batches, decode them, fill the batches.

Worker w of W makes batches start + w, start + w + W, ... of the rank's
epoch plan; torch's DataLoader takes batch i from worker i % W in order, so
the stream is the same for any W. Every worker reads the rank's shards
(bytes are cheap; remote shards are downloaded once per machine when the
loader has a cache directory) but decodes only the samples of its own
batches (decoding is what costs).

Reading is forward only: one reader per degradation type walks that type's
visits in reading order and keeps the member bytes it met before they were
due (at most about a shuffle window). A sample that cannot be had (a
truncated or unreadable shard, a member that does not decode) is replaced by
the nearest good sample of the same batch (so the substitute does not depend
on the number of workers or on where a resumed run started; only a batch with
no good sample at all takes the worker's last good one), and batch sizes and
counts stay equal on every rank; the batch says how many it replaced and why.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import numpy as np

from pipeline.data.catalog import Catalog
from pipeline.data.epoch_plan import EpochPlan
from pipeline.data.samples import SampleMaker, UnusableSample, collate
from pipeline.data.tar_stream import READ_ERRORS, read_samples

# Keys of the side channel a batch carries to the loader, which removes them.
REPLACED, PROBLEMS = "_replaced", "_problems"


class _TypeReader:
    """Forward-only reader of one type's visits, for the positions one worker needs."""

    def __init__(
        self, catalog: Catalog, plan: EpochPlan, positions: np.ndarray, suffixes: tuple[str, ...],
        problems: list[tuple[str, str]], cache_dir: str | None,
    ) -> None:
        self.catalog, self.plan, self.suffixes, self.problems, self.cache_dir = catalog, plan, suffixes, problems, cache_dir
        self.queue = positions[np.argsort(plan.read_order[positions], kind="stable")].tolist()
        self.next = 0
        self.by_visit: dict[int, list[int]] = {}
        for i in self.queue:
            self.by_visit.setdefault(int(plan.visit[i]), []).append(i)
        self.stash: dict[int, dict[str, bytes] | None] = {}
        # Every position ever stashed, fetched or not: a lost visit resolves positions the walk
        # through the queue has not reached yet, and they may be fetched before it gets there.
        self.resolved: set[int] = set()
        self.visit = -1
        self.samples: Generator[tuple[str, dict[str, bytes]], None, None] | None = None
        self.wanted: dict[str, int] = {}

    def fetch(self, i: int) -> dict[str, bytes] | None:
        """The members of position i, or None when they could not be read."""
        while i not in self.stash:
            k = self.queue[self.next]
            self.next += 1
            if k not in self.resolved:
                self._read(k)
        return self.stash.pop(i)

    def close(self) -> None:
        if self.samples is not None:
            self.samples.close()
            self.samples = None

    def _read(self, k: int) -> None:
        visit = int(self.plan.visit[k])
        if visit != self.visit:
            self._open(visit)
        while k not in self.resolved:
            try:
                key, members = next(self.samples)  # type: ignore[arg-type]  (open while wanted)
            except StopIteration:
                self._lose("ends early: truncated or incomplete")
            except READ_ERRORS as err:
                self._lose(f"cannot be read: {err}")
            else:
                pos = self.wanted.pop(key, None)
                if pos is not None:
                    self._resolve(pos, members)

    def _open(self, visit: int) -> None:
        self.close()
        self.visit = visit
        keys = self.catalog.keys
        self.wanted = {keys[self.plan.sample[i]]: i for i in self.by_visit[visit] if i not in self.resolved}
        shard = int(self.plan.visit_shard[visit])
        version = self.catalog.shard_versions[shard]
        self.samples = read_samples(self.catalog.shard_urls[shard], self.wanted, self.suffixes, self.cache_dir, version)
        companion = self.catalog.shard_companions[shard] if self.catalog.shard_companions else ""
        if companion and "mq" in self.suffixes:
            self.samples = _with_companion(self.samples, read_samples(companion, self.wanted, ("mq",), self.cache_dir, version))

    def _lose(self, reason: str) -> None:
        url = self.catalog.shard_urls[int(self.plan.visit_shard[self.visit])]
        self.problems.append((url, f"{reason} ({len(self.wanted)} samples missing)"))
        for i in self.wanted.values():
            self._resolve(i, None)
        self.wanted = {}
        self.close()

    def _resolve(self, i: int, members: dict[str, bytes] | None) -> None:
        self.stash[i] = members
        self.resolved.add(i)


def _with_companion(
    main: Generator[tuple[str, dict[str, bytes]], None, None], companion: Generator[tuple[str, dict[str, bytes]], None, None],
) -> Generator[tuple[str, dict[str, bytes]], None, None]:
    """A shard's samples with the members of its companion added. Both list their samples in key
    order (the companion was written in the shard's order), so one forward pass over each suffices;
    a sample the companion lacks comes without them, and the loader reports it as unusable."""
    try:
        pending = next(companion, None)
        for key, members in main:
            while pending is not None and pending[0] < key:
                pending = next(companion, None)
            if pending is not None and pending[0] == key:
                members = {**members, **pending[1]}
                pending = next(companion, None)
            yield key, members
    finally:
        main.close()
        companion.close()


class BatchProducer:
    """The batches of one worker, in order, as dicts ready for the DataLoader."""

    def __init__(
        self, catalog: Catalog, plan: EpochPlan, maker: SampleMaker, start: int, worker: int, workers: int,
        cache_dir: str | None = None,
    ) -> None:
        self.catalog, self.plan, self.maker = catalog, plan, maker
        self.batches = range(start + worker, plan.batches, workers)
        self.problems: list[tuple[str, str]] = []
        self.last_good: dict[str, Any] | None = None  # for a batch of which nothing could be read
        mine = np.concatenate([np.asarray(plan.batch(b)) for b in self.batches] or [np.empty(0, np.int64)])
        shard_type = catalog.shard_type[plan.visit_shard[plan.visit[mine]]] if len(mine) else np.empty(0, np.int64)
        suffixes = maker.reads
        self.readers = {int(t): _TypeReader(catalog, plan, mine[shard_type == t], suffixes, self.problems, cache_dir) for t in np.unique(shard_type)}

    def __iter__(self) -> Iterator[dict[str, object]]:
        try:
            for b in self.batches:
                yield self._batch(b)
        finally:
            for reader in self.readers.values():
                reader.close()

    def _batch(self, b: int) -> dict[str, object]:
        plan, catalog = self.plan, self.catalog
        draws = self.maker.mode.draws(self.maker.seed, plan, b)
        samples: list[dict[str, Any] | None] = []
        for n, i in enumerate(plan.batch(b)):
            sid = int(plan.sample[i])
            shard = int(plan.visit_shard[plan.visit[i]])
            members = self.readers[int(catalog.shard_type[shard])].fetch(i)
            sample = None
            if members is not None:
                try:
                    sample = self.maker.make(sid, members, plan.epoch, int(plan.repeat[i]), None if draws is None else int(draws[n]))
                except UnusableSample as err:
                    self.problems.append((catalog.shard_urls[shard], f"sample {catalog.keys[sid]} cannot be used: {err}"))
            samples.append(sample)
        filled, replaced = self._fill(samples, b)
        batch = collate(filled)
        batch[REPLACED] = replaced
        batch[PROBLEMS], self.problems[:] = list(self.problems), []
        return batch

    def _fill(self, samples: list[dict[str, Any] | None], b: int) -> tuple[list[dict[str, Any]], int]:
        """Missing samples become the good one before them in the batch (or the batch's first good one)."""
        replaced = sum(s is None for s in samples)
        last = next((s for s in samples if s is not None), None) or self.last_good
        if last is None:
            reasons = "; ".join(f"{url}: {why}" for url, why in self.problems[:3]) or "no reason recorded"
            raise RuntimeError(f"batch {b} of epoch {self.plan.epoch}: no sample could be read ({reasons})")
        filled = []
        for s in samples:
            last = s if s is not None else last
            filled.append(last)
        self.last_good = last
        return filled, replaced

