"""Streaming loaders: balanced, deterministic, resumable batches from perceive-ir shards.

    loader = make_loader("out", mode="triplets", batch_size=8, crop=256)   # rank from torchrun
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for batch in loader:            # batch["lq"], ["mq"], ["hq"]: B x 3 x H x W float32 in [0, 1]
            ...
        checkpoint["loader"] = loader.state_dict()

The epoch plan (pipeline.data.epoch_plan) fixes every rank's batches from the
manifest counts alone; workers (pipeline.data.worker) fill them. What a batch
holds does not depend on the number of workers, and a loader restored from
a state taken at a batch boundary goes on with exactly the batches the
uninterrupted one would have yielded.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

import degradations as D
from pipeline.data.catalog import Catalog, KeyFilter, load_catalog
from pipeline.data.epoch_plan import PlanSpec, batches_per_epoch, check_spec, plan_epoch
from pipeline.data.modes import Mode, mode_class
from pipeline.data.samples import SampleMaker
from pipeline.data.worker import PROBLEMS, REPLACED, BatchProducer

DEFAULT_WINDOW = 256  # samples; rounded up to a multiple of the batch size


class ShardProblemWarning(UserWarning):
    """A shard with a truncated, unreadable or corrupt sample; its samples were replaced."""


@dataclass(frozen=True)
class LoaderConfig:
    """What must match for a saved loader state to apply (the rank need not: states agree across ranks)."""

    dataset: str  # catalog digest
    split: str
    mode: str
    batch_size: int
    crop: int | None
    types: tuple[str, ...]
    weights: tuple[float, ...] | None
    seed: int
    world_size: int
    resampled: bool
    shuffle_window: int
    augment: bool
    drop_last: bool = True


class _RankStream(IterableDataset):
    """The rank's batches from a start position on, epoch after epoch, without end.

    The DataLoader's workers are started once and kept (persistent): they read
    where to start from `start`, a shared (epoch, batch) pair the loader sets
    before it (re)starts them, and go on into the next epoch by themselves, so
    no epoch waits for workers to start or to fill up again. Worker w of W
    makes the batches w, w + W, ... counted from the start across epoch ends,
    which is the order the DataLoader takes them in.
    """

    def __init__(self, catalog: Catalog, spec: PlanSpec, rank: int, maker: SampleMaker, cache_dir: str | None) -> None:
        super().__init__()
        self.catalog, self.spec, self.rank, self.maker, self.cache_dir = catalog, spec, rank, maker, cache_dir
        self.start = torch.zeros(2, dtype=torch.int64).share_memory_()

    def __iter__(self) -> Iterator[dict[str, object]]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        epoch, batch = (int(v) for v in self.start.tolist())
        made = 0  # batches of the stream before this epoch's first
        while True:
            plan = plan_epoch(self.catalog, self.spec, epoch, self.rank)
            yield from BatchProducer(
                self.catalog, plan, self.maker, batch, (worker - made) % workers, workers, self.cache_dir
            )
            made += plan.batches - batch
            epoch, batch = epoch + 1, 0


class StreamLoader:
    """Dict batches of one rank, epoch by epoch; see `make_loader`.

    `len()` is the number of batches of an epoch, the same on every rank.
    Iterating yields the current epoch from `batches_done` on; a completed
    epoch moves the loader to the next one. `skipped` counts samples replaced
    because they could not be read, `problems` maps each such shard to what
    was wrong with it (each is warned about once).
    """

    def __init__(
        self, catalog: Catalog, config: LoaderConfig, mode: Mode, rank: int, num_workers: int, pin_memory: bool, epoch: int,
        cache_dir: str | None = None, verify: bool = True, maps: bool = False,
    ) -> None:
        self.catalog, self.config, self.rank = catalog, config, rank
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.spec = PlanSpec(
            config.seed, config.world_size, config.batch_size, config.shuffle_window, config.types, config.weights, config.resampled,
            config.drop_last,
        )
        check_spec(catalog, self.spec)
        self.maker = SampleMaker(catalog, mode, config.seed, config.crop, config.augment, verify, maps)
        self.epoch, self.batches_done = _non_negative("epoch", epoch), 0
        self.skipped = 0
        self.problems: dict[str, str] = {}
        self._stream = _RankStream(catalog, self.spec, rank, self.maker, cache_dir)
        self._workers: DataLoader | None = None
        self._batches: Iterator[dict[str, Any]] | None = None  # the workers' stream, at (epoch, batches_done)

    def __len__(self) -> int:
        return batches_per_epoch(self.catalog, self.spec)

    def finish(self, batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
        """The batch made whole on `device`: degraded there in synth mode with synth_device=True
        (see make_loader), as it is otherwise."""
        mode = self.maker.mode
        return mode.finish(batch, device) if getattr(mode, "on_device", False) else batch

    def set_epoch(self, epoch: int) -> None:
        """Start `epoch` from its first batch; the current epoch keeps its position (so a restored loader resumes)."""
        if _non_negative("epoch", epoch) != self.epoch:
            self.epoch, self.batches_done, self._batches = epoch, 0, None

    def rewind(self, epoch: int = 0) -> None:
        """Go to the first batch of `epoch`, wherever the loader stands (validation passes start alike)."""
        self.epoch, self.batches_done, self._batches = _non_negative("epoch", epoch), 0, None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self._batches is not None and not self._workers_alive():
            self._drop_workers()  # one died while the caller held a batch (torch raised it there)
            self._batches = None
        batches = self._batches if self._batches is not None else self._restart()
        self._batches = None  # until this epoch's batches are all taken or the caller stops between two
        for _ in range(len(self) - self.batches_done):
            try:
                batch = next(batches)
            except BaseException as err:
                died = isinstance(err, Exception) and not self._workers_alive(timeout=1.0)
                self._drop_workers()  # a worker died or raised: the next iteration starts fresh ones
                if died and not isinstance(err, RuntimeError):
                    # Fetching a dead worker's batch fails in the pipe (EOFError, ConnectionResetError).
                    raise RuntimeError(
                        f"a loader worker process died ({type(err).__name__}: {err}); "
                        "iterate again to go on from this batch with new workers"
                    ) from err
                raise
            self._note(batch.pop(REPLACED), batch.pop(PROBLEMS))
            self.batches_done += 1
            self._batches = batches
            yield batch
            self._batches = None
        self.epoch, self.batches_done = self.epoch + 1, 0
        self._batches = batches

    def _restart(self) -> Iterator[dict[str, Any]]:
        """The stream from (epoch, batches_done): this process's own, or the workers' (started once, then reset)."""
        self._stream.start[:] = torch.tensor([self.epoch, self.batches_done])
        if self.num_workers == 0:
            return iter(self._stream)
        if self._workers is None:
            self._workers = DataLoader(
                self._stream,
                batch_size=None,
                num_workers=self.num_workers,
                pin_memory=self.pin_memory,
                persistent_workers=True,  # a later iter() resets them to the new start; see _RankStream
                in_order=True,  # batch i comes from worker i % W: the order does not depend on W
                # Not fork: a child forked while OpenCV's thread pool holds a lock hangs on its
                # first OpenCV call (seen here). Forkserver children fork from a clean server.
                multiprocessing_context=_worker_context(),
                worker_init_fn=functools.partial(_init_worker, os.getpid()),
                generator=torch.Generator(),  # leave the caller's global RNG alone
            )
        # Workers need nothing of the calling script unless its own mode class travels to them.
        own_code = type(self.maker.mode).__module__ == "__main__"
        with contextlib.nullcontext() if own_code else _main_script_hidden():
            return iter(self._workers)

    def _workers_alive(self, timeout: float = 0.0) -> bool:
        """False once a kept worker has exited; waits up to `timeout` s for the news (a forkserver
        child's exit reaches us through the server, a moment after the pipes to it break)."""
        from multiprocessing.connection import wait

        processes = getattr(getattr(self._workers, "_iterator", None), "_workers", None) or []
        return not processes or not wait([p.sentinel for p in processes], timeout=timeout)

    def _drop_workers(self) -> None:
        """Shut the kept workers down. torch's reset of a persistent pool waits forever for a
        worker that died (killed for memory, a crash in native code), so a failed pool is replaced."""
        workers, self._workers = self._workers, None
        iterator = getattr(workers, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()

    def state_dict(self) -> dict[str, Any]:
        """The position in the stream; the same on every rank, so rank 0's copy restores them all."""
        return {"epoch": self.epoch, "batches_done": self.batches_done, "config": asdict(self.config)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = dict(state.get("config", {}))
        ours = asdict(self.config)
        saved = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()}
        defaults = {f.name: f.default for f in fields(LoaderConfig)}  # what a state saved before a field existed meant
        diff = [f"{k}: saved {saved.get(k, defaults[k])!r}, now {v!r}" for k, v in ours.items() if saved.get(k, defaults[k]) != v]
        if diff:
            raise D.UserError("the loader state belongs to another configuration; " + "; ".join(diff))
        epoch, done = int(state["epoch"]), int(state["batches_done"])
        if not 0 <= done <= len(self):
            raise D.UserError(f"the loader state says {done} batches done of an epoch of {len(self)}")
        self.epoch, self.batches_done, self._batches = _non_negative("epoch", epoch), done, None

    def _note(self, replaced: int, problems: list[tuple[str, str]]) -> None:
        self.skipped += replaced
        for url, reason in problems:
            if url not in self.problems:
                self.problems[url] = reason
                warnings.warn(f"shard {url}: {reason}; its missing samples are replaced by repeats", ShardProblemWarning, stacklevel=3)


@contextlib.contextmanager
def _main_script_hidden() -> Iterator[None]:
    """While workers start, hide the `__main__` script from multiprocessing's preparation data.

    A forkserver (like a spawned) child imports the parent's main script before it runs, so a
    script that makes a loader at its top level, without `if __name__ == "__main__":`, would
    run again in every worker and fail there. Nothing a worker runs comes from the script
    (the loader's own classes are pickled by reference to this package), so the workers start
    without it: plain scripts, notebooks and torchrun scripts work guarded or not.
    """
    main = sys.modules["__main__"]
    saved = {name: main.__dict__[name] for name in ("__file__", "__spec__") if name in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def _worker_context() -> Any:
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "cv2", "pipeline.data.worker"])  # imported once, by the server
    return context


def _init_worker(owner: int, worker: int) -> None:
    """Worker processes share the cores: OpenCV's own thread pool would only contend. And a
    worker ends with the process that owns the loader (`_exit_with`)."""
    cv2.setNumThreads(1)
    _exit_with(owner)


def _exit_with(pid: int) -> None:
    """End this process as soon as process `pid` has ended, however it ended.

    A forkserver worker's parent is the server, not the training process, and every worker holds
    the server's liveness pipe: after a SIGKILL of the training process, torch's watchdog (which
    watches the parent) would keep the workers waiting and they would keep the server alive,
    about 1.4 GB left running for good. A thread waits on a pidfd of the owner (Linux 5.3; else it
    polls once a second) and exits the worker; the server then sees its pipe close and exits too.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None

    def watch() -> None:
        if pidfd is not None:
            poller = select.poll()  # not select(): it fails for descriptors above 1023
            poller.register(pidfd, select.POLLIN)
            poller.poll()
        else:
            while True:
                time.sleep(1.0)
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                except PermissionError:
                    continue
        os._exit(1)

    threading.Thread(target=watch, name=f"exit-with-{pid}", daemon=True).start()


def make_loader(
    source: str | Path | Sequence[str],
    split: str = "train",
    mode: str = "pairs",
    batch_size: int = 8,
    crop: int | None = 128,
    types: Sequence[str] | Mapping[str, float] | None = None,
    seed: int = 0,
    num_workers: int = 2,
    rank: int | None = None,
    world_size: int | None = None,
    resampled: bool = False,
    shuffle_window: int | None = None,
    epoch: int = 0,
    augment: bool = True,
    pin_memory: bool = False,
    cache_dir: str | Path | None = None,
    drop_last: bool = True,
    verify: bool = True,
    where: KeyFilter | None = None,
    maps: bool = False,
    synth_device: bool = False,
) -> StreamLoader:
    """A loader over the shards of `split` for this rank.

    source: a build root (the folder `perceive-ir build` wrote) or shard URLs
        (each with its parquet manifest beside it: same URL, `.parquet`).
    mode: pairs (lq, hq) | triplets (lq, mq, hq) | tiers (image, tier) |
        synth (hq degraded on the fly into lq, with its measured tier).
    crop: square crop side (None: whole patches, which must share one size).
    types: the degradation types to use (default all), or {type: weight}
        repeat factors that oversample types by mixing per-type streams.
    rank, world_size: default from torch.distributed, else torchrun's
        RANK / WORLD_SIZE, else 0 / 1.
    resampled: shards drawn with replacement per rank, for any shard count.
    shuffle_window: samples shuffled together (a multiple of batch_size;
        0 turns shuffling off); default 256 rounded up to the batch size.
    augment: random crop boxes and flips; False gives the centre box.
    drop_last: False reads every sample exactly once, the last batch partial
        (evaluation, in one process: no ranks, weights or resampling).
    verify: check each member's bytes against the SHA-256 its manifest lists before decoding (a
        swapped or rewritten member is replaced and reported like a damaged one); about 1 % of a
        member's decode time. A member whose header claims another size than the manifest's is
        refused either way, before it is decoded.
    where: keep only the samples whose keys it selects (keys -> boolean mask):
        a cross-fold stage's training folds (`shards.fold_of`), a probe set.
    synth_device: synth mode only: the workers draw each entry's severity and seed, and
        `loader.finish(batch, device)` degrades the collated batch on the training step's device
        with the batched torch engine (D.degrade_batch), then scores and grades it there; the
        training loop calls it. The same batch for a given seed and device.
    maps: also yield the stored severity and quality maps of each degraded image (a build made
        with `--maps`), cropped and flipped exactly like their images, as B x 1 x H x W float32 in
        [0, 1]: `lq_sev`, `lq_qmap` (and `mq_...` in triplets mode); in tiers mode `sev` and
        `qmap` of the image shown (an hq image: severity 0, quality 1 everywhere).
    cache_dir: remote shards are downloaded there once per machine and read
        from disk, instead of being streamed by every worker of every rank
        (local shards are read in place). Never evicted; Unix file locks.

    Workers start once, from a forkserver (fork could hang in OpenCV), and
    are kept across epochs. They do not import the calling script, so a
    plain script, a notebook or a torchrun script needs no
    `if __name__ == "__main__":` guard, unless it defines its own mode class.
    """
    _positive("batch_size", batch_size)
    if crop is not None:
        _positive("crop", crop)
    _non_negative("seed", seed)
    _non_negative("num_workers", num_workers)
    rank, world_size = resolve_rank(rank, world_size)
    window = -(-DEFAULT_WINDOW // batch_size) * batch_size if shuffle_window is None else _non_negative("shuffle_window", shuffle_window)
    if window % batch_size:
        raise D.UserError(f"shuffle_window {window} must be a multiple of batch_size {batch_size}")

    kind = mode_class(mode)  # before any manifest is read (over a URL list, that is many requests)
    catalog = load_catalog(source, split, where)
    if "mq" in kind.reads and np.isnan(catalog.score[:, D.TIERS.index("mq")]).all():
        raise D.UserError(
            f"{mode} mode reads mq images, and split {split!r} has none: a paper-scheme build gets them from "
            "`perceive-ir render-medium BUILD --from RUNS` (after `perceive-ir train medium`); pairs mode needs none"
        )
    names, weights = _select_types(catalog, types)
    shards = int(np.isin(catalog.shard_type, [catalog.types.index(t) for t in names]).sum())
    readers = world_size * max(num_workers, 1)
    if shards < readers and not resampled:
        raise D.UserError(
            f"split {split!r} has {shards} shards for {world_size} ranks x {max(num_workers, 1)} workers = {readers} "
            "readers; build with smaller --samples-per-shard, use fewer workers, or pass resampled=True"
        )
    if mode == "synth" and catalog.calibration is None:
        warnings.warn(
            "synth mode over shard URLs: without the build record, severities and tiers come from the calibration "
            "shipped with the engine (SSIM bands); give the build root to use the build's own",
            stacklevel=2,
        )
    if maps and mode == "synth":
        raise D.UserError("maps=True reads stored maps; synth mode degrades afresh and stores none: use pairs, triplets or tiers")
    if maps and catalog.maps is False:
        raise D.UserError(f"maps=True, but {source} was built without severity maps: rebuild it with `perceive-ir build --maps mixed`")
    made = kind.create(catalog, names)
    if synth_device:
        if mode != "synth":
            raise D.UserError(f"synth_device=True degrades on the device in synth mode; mode {mode!r} reads stored images")
        made = replace(made, on_device=True)
    _check_sizes(catalog, crop, made, names)
    config = LoaderConfig(catalog.digest(), split, mode, batch_size, crop, names, weights, seed, world_size, resampled, window, augment, drop_last)
    return StreamLoader(
        catalog, config, made, rank, num_workers, pin_memory, epoch, None if cache_dir is None else str(cache_dir), verify, maps,
    )


def resolve_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """(rank, world size): as given, else from torch.distributed, else torchrun's environment, else (0, 1)."""
    if (rank is None) != (world_size is None):
        raise D.UserError("give both rank and world_size, or neither")
    if rank is None or world_size is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
        else:
            rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    _positive("world_size", world_size)
    if not 0 <= rank < world_size:
        raise D.UserError(f"rank {rank} is outside world size {world_size}")
    return rank, world_size


def _select_types(catalog: Catalog, types: Sequence[str] | Mapping[str, float] | None) -> tuple[tuple[str, ...], tuple[float, ...] | None]:
    if types is None:
        return catalog.types, None
    if isinstance(types, str):
        types = [types]
    pairs = types.items() if isinstance(types, Mapping) else ((t, 1.0) for t in types)
    asked = {D.canonical_name(t): w for t, w in pairs}
    unknown = sorted(set(asked) - set(catalog.types))
    if unknown:
        raise D.UserError(f"split {catalog.split!r} has no samples of {', '.join(unknown)}; it has {', '.join(catalog.types)}")
    if isinstance(types, Mapping):
        bad = [f"{t}={w}" for t, w in asked.items() if not (isinstance(w, (int, float)) and w >= 0)]
        if bad or not any(w > 0 for w in asked.values()):
            raise D.UserError(f"type weights must be non-negative numbers, at least one positive; got {dict(types)}")
        names = tuple(sorted(t for t, w in asked.items() if w > 0))
        return names, tuple(float(asked[t]) for t in names)
    return tuple(sorted(asked)), None


def _check_sizes(catalog: Catalog, crop: int | None, mode: Mode, names: tuple[str, ...]) -> None:
    """Crops must fit every stored image; whole patches must share a size to be batched."""
    sample_type = np.repeat(catalog.shard_type, np.diff(catalog.shard_start))
    sizes = catalog.sizes[np.isin(sample_type, [catalog.types.index(t) for t in names])]
    smallest = int(sizes.min())
    if crop is None and len(np.unique(sizes, axis=0)) > 1:
        raise D.UserError("crop=None batches whole patches, but the patches differ in size; give a crop")
    if crop is not None and crop > smallest:
        raise D.UserError(f"crop {crop} is larger than the smallest stored image ({smallest} px a side)")
    need = mode.min_side(names)
    if need > (crop or smallest):
        raise D.UserError(f"{mode.name} mode: the types {', '.join(names)} need crops of at least {need} px")


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise D.UserError(f"{name} must be a positive integer, got {value!r}")
    return value


def _non_negative(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise D.UserError(f"{name} must be a non-negative integer, got {value!r}")
    return value
