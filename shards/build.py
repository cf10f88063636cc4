"""`build`: sources -> plan -> one dask task per shard -> the merged manifest, errors and build record.

Order of a build, and why:
1. Check everything that can be wrong before any work: types, calibration,
   codec, the source (missing or empty), OUT (unwritable, or holding another
   build).
2. Write the build record (the config, no counts), so a killed build leaves
   a record of what it was making; a rerun compares against it.
3. Run one task per shard not yet done (its parquet marks it done). Shard
   content depends only on the plan, so which worker, how many, and whether
   an earlier run was killed, change nothing in the bytes.
4. Merge the per-shard manifests and errors in plan order, and fill in the
   counts in the build record.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask

import degradations as D
from shards.config import BuildConfig
from shards.files import LOCK, TEMP_SUFFIX, folder_lock
from shards.format import DATASET, ERRORS, MANIFEST, MEDIUM, MEDIUM_RECORD, NOT_IDENTITY, SHARD_GLOB, Build, make_record, read_record, type_dir, write_record
from shards.manifest import merge_manifests, read_shard_errors, write_errors
from shards.plan import ShardSpec, make_plan
from shards.report import Report
from shards.sample import Scorer
from shards.shard import DISK_FULL, ShardJob, ShardResult, forget_photos, run_shard
from shards.sources import Source, list_sources

# glibc malloc settings for the workers. Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536, which
# turns off glibc's adaptive mmap threshold: every MB-sized numpy temporary is then mmapped and
# page-faulted afresh (2x the wall time on this workload). Even glibc's defaults fault about 240k
# pages per worker in a benchmarks/shards.py build under dask; a fixed 32 MiB mmap threshold (glibc's
# maximum) and a 256 MiB trim threshold keep the temporaries in the heap: about 11k faults, and
# 5-8 % less compute time. Memory stays bounded: a task holds one shard's samples at a time, and
# the photo cache has a budget.
_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(256 * 2**20)}
_ENV_KEY = "distributed.nanny.pre-spawn-environ."
RETRIES = 2  # per shard: a worker lost to the OOM killer or a flaky disk should not end a long build


class BuildError(RuntimeError):
    """Shards that failed even after retries; rerunning the same command retries only them."""


@dataclass(frozen=True)
class BuildResult:
    out: Path
    report: Report
    shards: int
    shards_skipped: int  # already done by an earlier run
    samples_processed: int  # planned samples this run worked on (stored or reported as errors)
    seconds: float
    workers: str

    def summary(self) -> str:
        rate = self.samples_processed / self.seconds if self.seconds > 0 else 0.0
        done = f", {self.shards_skipped} already done" if self.shards_skipped else ""
        return "\n\n".join(
            [
                f"built {self.out}: {self.report.samples} samples ({len(self.report.manifest)} images) "
                f"in {self.shards} shards{done}",
                self.report.counts_text(),
                self.report.errors_text(),
                f"time {self.seconds:.1f} s for {self.samples_processed} planned samples: {rate:.1f} samples/s ({self.workers})",
            ]
        )


def build(
    source: str | Path,
    out: str | Path,
    config: BuildConfig | None = None,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> BuildResult:
    """Build tiered webdataset shards from the photos of `source` into `out`.

    workers: local worker processes (default: one per core); scheduler: the
    address of an existing dask scheduler instead (its workers must have
    perceive-ir installed and see `source` and `out` at the same paths).
    A rerun into the same `out` with the same config resumes; a different
    config raises FileExistsError unless `overwrite`.
    """
    start = time.perf_counter()
    config = config or BuildConfig()
    if workers is not None and scheduler is not None:
        raise D.UserError("give --workers or --scheduler, not both")
    if workers is not None and workers < 1:
        raise D.UserError(f"--workers must be at least 1, got {workers}")
    calibration = config.load_calibration()
    scorer = Scorer.of(calibration, config.types, config.seed, config.max_tries, config.maps, config.map_contrast)
    sources = list_sources(source)
    codec = config.codec_spec
    if codec.lossy:
        warnings.warn(
            f"--codec {codec.spec} is lossy: it changes noise statistics and scores; recorded in the build record",
            stacklevel=2,
        )
    out = Path(out).expanduser().absolute()
    record = _record(config, calibration, sources, source)
    plan = make_plan(sources, config)
    _writable_folder(out)
    with folder_lock(out):  # two builds into one OUT would mix their shards under one record
        _prepare_out(out, record, overwrite)
        write_record(out, record)
        todo = [s for s in plan if not _shard_done(out, s)]
        job = ShardJob(str(out), config.patch, config.patches_per_image, config.layout, config.max_pixels, codec, scorer, config.tiers)
        token = hashlib.blake2b(f"{out}\n{json.dumps(record, sort_keys=True)}".encode(), digest_size=6).hexdigest()
        used = _run(todo, job, token, workers, scheduler, progress) if todo else "nothing to do"
        report = _finish(out, plan, record)
    empty = [split for split, by_type in report.build.counts["samples_by_split_type"].items() if not any(by_type.values())]
    if empty:
        warnings.warn(
            f"split {', '.join(empty)} holds no samples: {len(sources)} photos are too few for --splits "
            f"{','.join(f'{n}={f:g}' for n, f in config.splits)} (photos are assigned whole, by a hash of their path); "
            "give more photos or other fractions",
            stacklevel=2,
        )
    return BuildResult(
        out, report, len(plan), len(plan) - len(todo), sum(len(s.samples) for s in todo), time.perf_counter() - start, used
    )


def _record(config: BuildConfig, calibration: D.Calibration, sources: list[Source], source: str | Path) -> dict[str, Any]:
    ids = "\n".join(s.id for s in sources)
    files = "\n".join(f"{s.id}\t{s.size}\t{s.mtime_ns}" for s in sources)
    return make_record(
        config.to_dict(), config.types, config.codec_spec.extension, calibration,
        {"count": len(sources), "ids_sha256": hashlib.sha256(ids.encode()).hexdigest(),
         "files_sha256": hashlib.sha256(files.encode()).hexdigest()},
        str(source), config.calibration or "default (shipped with perceive-ir)",
    )


# Mappings whose order is part of their meaning: photos are assigned to splits by cumulative
# fractions in the given order, so `val=0.1,train=0.9` is another build than `train=0.9,val=0.1`.
_ORDERED = {"config.splits"}


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if prefix.rstrip(".") in _ORDERED and isinstance(old, dict) and isinstance(new, dict) and list(old.items()) != list(new.items()):
        return [f"{prefix.rstrip('.')} (in order): {json.dumps(old)} -> {json.dumps(new)}"]
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for k in sorted(set(old) | set(new), key=str):
            if not prefix and k in NOT_IDENTITY:
                continue
            found += _differences(old.get(k), new.get(k), f"{prefix}{k}.")
        return found
    return [] if old == new else [f"{prefix.rstrip('.')}: {json.dumps(old)} -> {json.dumps(new)}"]


def _writable_folder(out: Path) -> None:
    """OUT made and writable, or raise before any work."""
    if out.exists() and not out.is_dir():
        raise D.OutputExists(f"--out {out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise D.NotWritable(f"cannot write to --out {out}: {err.strerror or err}") from None


def _prepare_out(out: Path, record: dict[str, Any], overwrite: bool) -> None:
    """Make OUT usable, or raise before any work: holding another build, or foreign files."""
    old = read_record(out)
    if old is not None:
        if "files_sha256" not in old.get("sources", {}):  # made before files were fingerprinted
            old = {**old, "sources": {**old.get("sources", {}), "files_sha256": record["sources"]["files_sha256"]}}
        diff = _differences(old, record)
        if diff and all(d.startswith("sources.files_sha256") for d in diff) and not overwrite:
            raise D.OutputExists(
                f"{out} holds a build of the same photos and config, but a photo changed since it started (edited, "
                "replaced or touched: the size or modification time of a file differs); resuming would mix its "
                "old and new pixels: use --overwrite to build again"
            )
        if diff and not overwrite:
            shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
            raise D.OutputExists(
                f"{out} holds a build with a different config ({shown}); "
                "use --overwrite to replace it, or another --out"
            )
        if overwrite:
            _clear(out)
    elif any(not p.name.endswith(TEMP_SUFFIX) and p.name != LOCK for p in out.iterdir()) and not overwrite:
        raise D.OutputExists(f"--out {out} is not empty and holds no perceive-ir build; use a new folder (or --overwrite)")
    for stale in [*out.glob(f".*{TEMP_SUFFIX}"), *out.glob(f"*/*/.*{TEMP_SUFFIX}")]:
        stale.unlink()  # left by a killed run; tasks write under fresh names anyway


def _clear(out: Path) -> None:
    """Remove a previous build's files, and only those (OUT may be a folder the user also keeps other things in)."""
    for name in (DATASET, MANIFEST, ERRORS, MEDIUM, MEDIUM_RECORD):
        (out / name).unlink(missing_ok=True)
    folders = set()
    for path in [*out.glob(SHARD_GLOB + ".tar"), *out.glob(SHARD_GLOB + ".parquet")]:
        path.unlink()
        folders.update([path.parent, path.parent.parent])
    for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty


@contextlib.contextmanager
def dask_client(workers: int | None, scheduler: str | None, n_tasks: int, out: Path) -> Iterator[Any]:
    """A dask client: of the scheduler at `scheduler` (its workers checked: this engine version,
    `out` visible), or of a local cluster of `workers` processes (default one per core), at most
    one per task, with the malloc settings image work needs."""
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as err:
            raise D.UserError(f"cannot reach the dask scheduler at {scheduler}: {err}") from None
        with client:
            _check_workers(client, out)
            yield client
        return
    n = min(workers or os.cpu_count() or 1, n_tasks)  # a worker without a shard only costs start-up time
    with _environ_restored(), dask.config.set({_ENV_KEY + k: v for k, v in _MALLOC_ENV.items()}), LocalCluster(
        n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    ) as cluster, Client(cluster) as client:
        yield client


@dataclass(frozen=True)
class ShardTask:
    """One dask task of a per-shard job: `function(*args)`, counted as `samples` on the progress bar."""

    key: str  # the dask key
    label: str  # the shard, as failures name it
    samples: int
    function: Callable[..., Any]
    args: tuple[Any, ...]


def run_shard_tasks(tasks: Sequence[ShardTask], out: Path, *, workers: int | None, scheduler: str | None, progress: bool,
                    desc: str, retries: int, failed: str = "failed") -> None:
    """Run per-shard tasks on a dask client (`dask_client`) with a progress bar of samples; a task
    that still fails after `retries` is reported at the end, in one BuildError, the others kept."""
    if not tasks:
        return
    from distributed import as_completed
    from tqdm import tqdm

    failures = []
    with dask_client(workers, scheduler, len(tasks), out) as client:
        futures = {client.submit(t.function, *t.args, key=t.key, retries=retries): t for t in tasks}
        with tqdm(total=sum(t.samples for t in tasks), unit="sample", desc=desc, disable=not progress) as bar:
            for future in as_completed(futures):
                task = futures.pop(future)
                if future.status == "error":
                    failures.append(f"{task.label}: {future.exception()!r}")
                bar.update(task.samples)
                future.release()
    if failures:
        raise BuildError(f"{len(failures)} of {len(tasks)} shards {failed} (first: {failures[0]}); "
                         "the others are done: rerun the same command to retry the failed ones")


@contextlib.contextmanager
def _environ_restored() -> Iterator[None]:
    """Put os.environ back as it was: dask's nanny writes its pre-spawn-environ (OMP_NUM_THREADS=1,
    the malloc settings) into this process's environment, where later subprocesses, and libraries
    imported later (torch reads OMP_NUM_THREADS when it starts), would pick them up."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        for key, value in saved.items():
            if os.environ.get(key) != value:
                os.environ[key] = value


def _worker_info(out: str) -> tuple[str, bool, dict[str, str | None]]:
    return D.ENGINE_VERSION, os.path.isdir(out), {k: os.environ.get(k) for k in _MALLOC_ENV}


def _check_workers(client: Any, out: Path) -> None:
    """Workers of a foreign cluster must run this engine version and see OUT, or shards would differ or vanish."""
    try:
        info = client.run(_worker_info, str(out))
    except Exception as err:  # whatever the worker raised while importing or running: shown, with the fix
        raise D.UserError(
            f"the dask workers cannot run perceive-ir ({type(err).__name__}: {err}); install perceive-ir in their environment"
        ) from None
    for worker, (version, sees_out, _) in sorted(info.items()):
        if version != D.ENGINE_VERSION:
            raise D.UserError(f"worker {worker} runs degradation engine {version}, this client {D.ENGINE_VERSION}: install the same perceive-ir")
        if not sees_out:
            raise D.UserError(f"worker {worker} cannot see {out}: --out must be on a filesystem every worker mounts at the same path")
    if any(env != _MALLOC_ENV for _, _, env in info.values()):
        settings = ", ".join(f"{_ENV_KEY}{k}: {v}" for k, v in _MALLOC_ENV.items())
        warnings.warn(
            "the dask workers run with other malloc settings than perceive-ir's (dask's default "
            "MALLOC_TRIM_THRESHOLD_=65536 makes image work about 2x slower); start them with the dask config "
            f"{settings}",
            stacklevel=3,
        )


def _run(todo: list[ShardSpec], job: ShardJob, token: str, workers: int | None, scheduler: str | None, progress: bool) -> str:
    """Run the shard tasks with a progress bar; returns a description of the workers used."""
    from distributed import as_completed
    from tqdm import tqdm

    failures = []
    errors = 0
    with dask_client(workers, scheduler, len(todo), Path(job.out)) as client:
        n = len(client.scheduler_info(n_workers=-1)["workers"])
        used = f"{n} worker{'s' if n != 1 else ''}" + (f" at {scheduler}" if scheduler else "")
        # Shard k of every type cuts patches from the same photos: submitted together, they find
        # them in the workers' photo caches (tasks start in submission order).
        split_order: dict[str, int] = {}
        for spec in todo:
            split_order.setdefault(spec.split, len(split_order))
        todo = sorted(todo, key=lambda spec: (split_order[spec.split], spec.index))  # stable: types in plan order
        futures = {
            client.submit(run_shard, spec, job, key=f"shard-{spec.split}-{type_dir(spec.type)}-{spec.index:06d}-{token}", retries=RETRIES): spec
            for spec in todo
        }
        total = sum(len(s.samples) for s in todo)
        with tqdm(total=total, unit="sample", desc="build", disable=not progress, smoothing=0.05) as bar:
            for future in as_completed(futures):
                spec = futures.pop(future)
                if future.status == "error":
                    failures.append(f"{spec.name}: {future.exception()!r}")
                else:
                    result: ShardResult = future.result()
                    if result.disk_full:  # every other shard would fail the same way: stop now
                        client.cancel(list(futures))
                        raise D.NotWritable(
                            f"no space left on the device of {job.out} (writing {spec.name}: {result.disk_full}); the "
                            "shards done are kept: free space and rerun the same command to resume"
                        )
                    errors += result.errors
                bar.update(len(spec.samples))
                bar.set_postfix(errors=errors, refresh=False)
                future.release()
        client.run(forget_photos)  # a long-lived cluster's workers need not keep this build's photos
    if failures:
        raise BuildError(
            f"{len(failures)} of {len(todo)} shards failed after {RETRIES} retries (first: {failures[0]}); "
            "the others are done: rerun the same command to retry the failed ones"
        )
    return used


def _shard_done(out: Path, spec: ShardSpec) -> bool:
    """Whether a shard of an earlier run can be kept: its table reads and its tar holds at least the
    member bytes the table lists. A damaged table or an emptied tar is removed, so the rerun makes
    them again, instead of every rerun failing on them (or trusting an empty shard)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table, tar = out / spec.parquet, out / spec.tar
    if not (table.is_file() and tar.is_file()):
        return False
    try:
        listed = pc.sum(pq.read_table(table, columns=["bytes"]).column("bytes")).as_py() or 0
        whole = tar.stat().st_size >= listed + 1024  # a tar ends with two 512-byte zero blocks
    except (pa.ArrowException, KeyError):  # not a table we wrote; an OSError (a flaky mount) propagates
        whole = False
    if not whole:
        table.unlink(missing_ok=True)
        tar.unlink(missing_ok=True)
    return whole


def _finish(out: Path, plan: list[ShardSpec], record: dict[str, Any]) -> Report:
    """Merge per-shard tables in plan order, then complete the build record; returns the build's report."""
    merge_manifests((out / s.parquet for s in plan), out / MANIFEST)
    write_errors((e for s in plan for e in read_shard_errors(out / s.parquet)), out / ERRORS)
    report = Report.of(Build(out, record))  # the tables are read once
    counts = report.count_record()
    counts["shards"] = len(plan)
    finished = Build(out, {**record, "counts": counts})
    write_record(out, finished.record)
    return dataclasses.replace(report, build=finished)
