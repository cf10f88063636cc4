"""`perceive-ir precompute`: ClearAIR's frozen provider outputs for a build, computed once, keyed by sample.

An 8 B IQA model should not run in every training step. Quality and task providers give one
vector (or two) per image, so their outputs can be computed once per stored image and looked up
by (sample key, tier) while training. They are computed on the whole stored patch, not on the
training crop: a global description of the image, which is what these embeddings are. (Region
masks depend on the crop and stay computed in the step.)

Layout, beside the build (default BUILD/providers/): one folder per provider configuration,
KIND-NAME-DIGEST/, holding a parquet part per shard (key, tier, and `quality`, or `content` and
`degradation`, as float32 lists) and cache.json (the provider's configuration, its dimensions, the
counts), written last: a folder without it is unfinished, and a rerun of the same command computes
only the shards not yet done. One dask task per shard, as the build; a worker process builds the
provider once.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import degradations as D
import shards
from shards.files import atomic_output, folder_lock

CACHE_FORMAT = "perceive-ir/provider-cache"
CACHE_RECORD = "cache.json"
CACHED_KINDS = ("quality", "task")  # one vector per image; region masks follow the crop
FIELDS = {"quality": ("quality",), "task": ("content", "degradation")}


_TRAINS = ("the {kind} provider {name!r} as configured trains with the restorer (a CFE without weights: give cfe=RUN "
           "to load a trained one): its outputs change every step and cannot be precomputed")


@dataclass(frozen=True)
class ProviderSpec:
    """A provider configuration: what `model.clearair` names (`quality` / `quality_kwargs`, ...)."""

    kind: str
    name: str
    kwargs: str = "{}"  # JSON, so that the spec is hashable and travels to dask workers as text
    device: str = "cpu"

    @classmethod
    def of(cls, kind: str, name: str, kwargs: Mapping[str, Any] | None = None, device: str = "cpu") -> ProviderSpec:
        if kind not in CACHED_KINDS:
            raise D.UserError(f"provider kind {kind!r} cannot be precomputed; kinds: {', '.join(CACHED_KINDS)}")
        if (kind, name) == ("task", "cfe") and not (kwargs or {}).get("cfe"):
            raise D.UserError(_TRAINS.format(kind=kind, name=name))  # checked here, before any worker starts
        return cls(kind, name, json.dumps(dict(kwargs or {}), sort_keys=True), device)

    def folder(self, tiers: Sequence[str]) -> str:
        """Its folder for `tiers`: another configuration or other tiers never resume into it."""
        digest = hashlib.sha256(f"{self.kind}\n{self.name}\n{self.kwargs}\n{','.join(tiers)}".encode()).hexdigest()[:12]
        return f"{self.kind}-{self.name}-{digest}"

    def create(self) -> Any:
        from model.clearair import create_provider

        provider = create_provider(self.kind, self.name, **json.loads(self.kwargs)).to(self.device)
        if getattr(provider, "trainable", False):
            raise D.UserError(_TRAINS.format(kind=self.kind, name=self.name))
        return provider


@dataclass(frozen=True)
class ShardJob:
    shard: str  # relative to the build root
    keys: tuple[str, ...]


@dataclass(frozen=True)
class PrecomputeResult:
    folders: tuple[str, ...]
    images: int
    shards: int
    shards_skipped: int
    seconds: float

    def summary(self) -> str:
        done = f", {self.shards_skipped} already done" if self.shards_skipped else ""
        return (f"precomputed {self.images} provider outputs over {self.shards} shards{done} into "
                f"{', '.join(self.folders)}; {self.seconds:.1f} s")


def precompute(
    build_root: str | Path, specs: Sequence[ProviderSpec], *, out: str | Path | None = None, tiers: Sequence[str] = ("lq", "mq"),
    workers: int | None = None, scheduler: str | None = None, batch_size: int = 16, progress: bool = True,
) -> PrecomputeResult:
    """Compute every spec's outputs for the `tiers` images stored in the build's shards."""
    started = time.perf_counter()
    build = shards.open_build(build_root)
    stored = tuple(t for t in tiers if t in D.TIERS and (t != "mq" or build.tiers == "bands"))
    if not stored:
        raise D.UserError(f"tiers {list(tiers)}: none is stored in the shards of {build.root} (a paper build stores lq and hq)")
    if not specs:
        raise D.UserError("name at least one provider to precompute: --quality NAME and/or --task NAME")
    root = Path(out) if out is not None else build.root / "providers"
    rows = build.manifest(["key", "shard"], filters=[("tier", "=", "lq")]).to_pylist()
    by_shard: dict[str, list[str]] = {}
    for r in rows:
        by_shard.setdefault(r["shard"], []).append(r["key"])
    jobs = [ShardJob(shard, tuple(keys)) for shard, keys in by_shard.items()]
    root.mkdir(parents=True, exist_ok=True)
    with folder_lock(root, "precompute"):
        todo = [(spec, job) for spec in specs for job in jobs if not _part(root, spec, job, stored).is_file()]
        for spec in specs:
            (root / spec.folder(stored)).mkdir(exist_ok=True)
            (root / spec.folder(stored) / CACHE_RECORD).unlink(missing_ok=True)  # unfinished until every part is there
        for spec in specs:  # one configuration at a time: a worker never swaps one heavy model for another
            _run(build.root, root, [(sp, job) for sp, job in todo if sp == spec], stored, batch_size, workers, scheduler, progress)
        images = 0
        for spec in specs:
            images += _finish(root, spec, jobs, build.root, stored)
    skipped = len(specs) * len(jobs) - len(todo)
    return PrecomputeResult(tuple(str(root / s.folder(stored)) for s in specs), images, len(jobs), skipped, time.perf_counter() - started)


def _part(root: Path, spec: ProviderSpec, job: ShardJob, tiers: tuple[str, ...]) -> Path:
    return root / spec.folder(tiers) / (job.shard.replace("/", "__").removesuffix(".tar") + ".parquet")


def _run(build: Path, root: Path, todo: list[tuple[ProviderSpec, ShardJob]], tiers: tuple[str, ...], batch_size: int,
         workers: int | None, scheduler: str | None, progress: bool) -> None:
    tasks = [shards.ShardTask(f"precompute-{spec.folder(tiers)}-{job.shard}", job.shard, len(job.keys), precompute_shard,
                              (str(build), str(_part(root, spec, job, tiers)), spec, job, tiers, batch_size))
             for spec, job in todo]
    shards.run_shard_tasks(tasks, root, workers=workers, scheduler=scheduler, progress=progress, desc="precompute", retries=1)


_PROVIDERS: dict[ProviderSpec, Any] = {}
_LOCK = threading.Lock()


def _provider(spec: ProviderSpec) -> Any:
    """The provider of `spec`, built once per worker process."""
    with _LOCK:
        if spec not in _PROVIDERS:
            _PROVIDERS.clear()  # one configuration at a time: a heavy model is not kept beside the next
            _PROVIDERS[spec] = spec.create()
        return _PROVIDERS[spec]


def precompute_shard(build: str, part: str, spec: ProviderSpec, job: ShardJob, tiers: tuple[str, ...], batch_size: int) -> int:
    """One shard's outputs into its parquet part; returns the images computed."""
    import torch

    from pipeline.data.tar_stream import read_samples
    from pipeline.eval.metrics import to_tensor

    provider = _provider(spec)
    keys, tier_names, images = [], [], []
    for key, members in read_samples(str(Path(build) / job.shard), set(job.keys), tiers):
        for tier in tiers:
            if tier in members:
                keys.append(key)
                tier_names.append(tier)
                images.append(shards.decode(members[tier]))
    columns: dict[str, list[np.ndarray]] = {f: [] for f in FIELDS[spec.kind]}
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            # Patches of one build share their size: a batch stacks without padding.
            batch = torch.cat([to_tensor(im, spec.device) for im in images[start : start + batch_size]])
            out = provider(batch)
            for field, values in zip(FIELDS[spec.kind], out if spec.kind == "task" else (out,)):
                columns[field].append(values.float().cpu().numpy())
    table = {"key": pa.array(keys, pa.string()), "tier": pa.array(tier_names, pa.string())}
    for field, chunks in columns.items():
        values = np.concatenate(chunks) if chunks else np.zeros((0, 1), np.float32)
        table[field] = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), pa.float32()), values.shape[1])
    with atomic_output(part) as tmp:
        pq.write_table(pa.table(table), tmp)
    return len(keys)


def _finish(root: Path, spec: ProviderSpec, jobs: list[ShardJob], build: Path, tiers: tuple[str, ...]) -> int:
    parts = [pq.read_table(_part(root, spec, job, tiers)) for job in jobs]
    table = pa.concat_tables(parts)
    dims = {field: table.schema.field(field).type.list_size for field in FIELDS[spec.kind]}
    record = {"format": CACHE_FORMAT, "kind": spec.kind, "name": spec.name, "kwargs": json.loads(spec.kwargs),
              "build": str(build), "tiers": list(tiers), "dims": dims, "images": table.num_rows}
    with atomic_output(root / spec.folder(tiers) / CACHE_RECORD) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    return table.num_rows


class ProviderCache:
    """Precomputed provider outputs, looked up by (sample key, tier) while training.

    `folder` is what `precompute` wrote (BUILD/providers, or its -o): every finished configuration
    in it is read, at most one per kind."""

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        records = sorted(folder.glob(f"*/{CACHE_RECORD}"))
        if not records:
            raise D.InputNotFound(f"{folder} holds no finished provider cache ({CACHE_RECORD}): run `perceive-ir precompute`")
        self.records: dict[str, dict[str, Any]] = {}
        self.values: dict[str, dict[str, np.ndarray]] = {}
        self.index: dict[str, dict[tuple[str, str], int]] = {}
        for path in records:
            record = json.loads(path.read_text())
            kind = record["kind"]
            if kind in self.records:
                raise D.UserError(f"{folder} holds two {kind} caches ({self.records[kind]['name']} and {record['name']}): "
                                  "give the folder of one configuration per kind")
            table = pa.concat_tables([pq.read_table(p) for p in sorted(path.parent.glob("*.parquet"))])
            self.records[kind] = record
            self.index[kind] = {(k, t): i for i, (k, t) in enumerate(zip(table.column("key").to_pylist(), table.column("tier").to_pylist()))}
            self.values[kind] = {f: table.column(f).combine_chunks().flatten().to_numpy().reshape(table.num_rows, -1)
                                 for f in FIELDS[kind]}

    def check_build(self, source: Any) -> None:
        """Refuse a cache computed for another build than the training data's (a URL list is not checked)."""
        if not (isinstance(source, (str, Path)) and Path(source).is_dir()):
            return
        for kind, record in self.records.items():
            if Path(record["build"]).resolve() != Path(source).resolve():
                raise D.UserError(f"the {kind} cache was computed for {record['build']}, the training data is {source}")

    def check(self, kind: str, name: str, kwargs: Mapping[str, Any]) -> None:
        """Refuse a cache of another provider configuration than the model's."""
        record = self.records.get(kind)
        if record is not None and (record["name"], record["kwargs"]) != (name, dict(kwargs)):
            raise D.UserError(f"the {kind} cache holds {record['name']} {record['kwargs']}, the model names {name} {dict(kwargs)}")

    def given(self, keys: Sequence[str], tiers: Sequence[str], device: Any) -> dict[str, Any]:
        """The model's precomputed inputs for a batch: {"quality": (B, D)} and/or {"task": (content, degradation)}."""
        import torch

        out: dict[str, Any] = {}
        for kind, index in self.index.items():
            try:
                rows = [index[(k, t)] for k, t in zip(keys, tiers)]
            except KeyError as err:
                raise D.UserError(f"sample {err.args[0]} is not in the {kind} cache: precompute it for this build "
                                  f"and these tiers ({self.records[kind]['tiers']} are cached)") from None
            fields = [torch.from_numpy(self.values[kind][f][rows]).to(device) for f in FIELDS[kind]]
            out[kind] = fields[0] if kind == "quality" else tuple(fields)
        return out
