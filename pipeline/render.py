"""`perceive-ir render-medium`: a paper-scheme build's mq tier, rendered beside its shards.

mq is the restoration of each sample's lq image by a medium restorer. Where it comes from:
- the fold runs of `perceive-ir train medium` (cross-fold: fold k's model renders fold k only, and
  the renderer refuses a model whose recorded training keys hold a sample it would render);
- any restorer run (`--restorer RUN`, the same model for every sample: a proxy, not cross-fold);
- a folder of restored images named by sample key (`--folder DIR`: KEY.png, KEY.jpg, ...), which is
  how outputs of other projects' models enter.

One dask task per shard, as the build: it reads the shard's lq and hq members, restores lq whole
(tiled with overlap, as `pipeline.restore`), and writes the companion shard-NNNNNN.mq.tar
(KEY.mq.EXT, KEY.medium.json) and then its table shard-NNNNNN.mq.parquet, which marks it done. The
shard itself is never rewritten. Tasks run torch on one thread, so the bytes are the same for any
number of workers; a rerun of the same command resumes, and a different one is refused unless
asked to overwrite. At the end the companion tables are merged into OUT/medium.parquet and the
record OUT/medium.json gets its counts.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import degradations as D
import shards
from shards.codec import Codec, parse_codec
from shards.files import atomic_output, folder_lock, shard_writer
from shards.format import (
    MEDIUM,
    MEDIUM_KIND,
    MEDIUM_RECORD,
    MEDIUM_SCHEMA,
    Build,
    companion_tar,
    member_name,
    open_build,
    shard_manifest,
)
from shards.manifest import merge_manifests, read_shard_errors, write_shard_manifest

RECORD_FORMAT = "perceive-ir/medium"
_RESULTS = ("counts", "errors")  # medium.json fields a finished render adds
RETRIES = 2


@dataclass(frozen=True)
class MediumModel:
    """A model that renders mq: a run folder, the digest of its checkpoint, and the fold it renders (None: every sample)."""

    path: str
    digest: str
    fold: int | None


@dataclass(frozen=True)
class RenderJob:
    """What every render task of a build shares."""

    out: str
    models: tuple[MediumModel, ...]  # empty with a folder
    folds: int | None  # the fold count of cross-fold models, else None
    folder: str | None
    tile: int
    overlap: int
    codec: Codec
    metric: str


@dataclass(frozen=True)
class RenderSpec:
    """One shard to render: its path relative to OUT, split, type, and its samples in tar order
    (key, severity, source, image file)."""

    shard: str
    split: str
    type: str
    samples: tuple[tuple[str, float, str, str | None], ...]

    @property
    def tar(self) -> str:
        return companion_tar(self.shard)

    @property
    def parquet(self) -> str:
        return shard_manifest(self.tar)


@dataclass(frozen=True)
class RenderResult:
    out: Path
    rendered: int
    errors: int
    shards: int
    shards_skipped: int
    seconds: float

    def summary(self) -> str:
        done = f", {self.shards_skipped} already done" if self.shards_skipped else ""
        return (f"rendered mq for {self.rendered} samples of {self.out} in {self.shards} companion shards{done}; "
                f"{self.errors} samples without mq (OUT/{MEDIUM_RECORD} lists them); {self.seconds:.1f} s")


def fold_models(runs: str | Path, build: Build) -> tuple[tuple[MediumModel, ...], int]:
    """The fold runs under `runs` (RUNS/fold-K, from `perceive-ir train medium`), checked: every fold
    present, trained on this build, and none trained on a sample of the fold it renders."""
    from pipeline.train.stages.medium import read_fold_run

    runs = Path(runs)
    folders = sorted(runs.glob("fold-*"))
    if not folders:
        raise D.InputNotFound(f"{runs} holds no fold runs (fold-0, fold-1, ...): give the -o folder of `perceive-ir train medium`")
    records = [(folder, *read_fold_run(folder)) for folder in folders]
    folds = {r["folds"] for _, r, _ in records}
    if len(folds) != 1:
        raise D.UserError(f"the fold runs under {runs} were trained for different fold counts {sorted(folds)}")
    (count,) = folds
    have = sorted(r["fold"] for _, r, _ in records)
    if have != list(range(count)):
        raise D.UserError(f"{runs} holds folds {have} of {count}: train the missing ones (`perceive-ir train medium folds.fold=K`)")
    keys = build.manifest(["key"], filters=[("tier", "=", "lq")]).column("key").to_pylist()
    models = []
    for folder, record, trained in records:
        if Path(record["source"]).resolve() != build.root.resolve():
            warnings.warn(f"{folder} was trained on {record['source']}, not on {build.root}", stacklevel=2)
        seen = [k for k in keys if shards.fold_of(k, count) == record["fold"] and k in trained]
        if seen:  # the cross-fold promise, checked rather than assumed
            raise D.UserError(f"{folder} renders fold {record['fold']} but trained on {len(seen)} of its samples (first: {seen[0]})")
        models.append(MediumModel(str(folder.resolve()), _checkpoint_digest(folder), int(record["fold"])))
    return tuple(models), count


def restorer_model(run: str | Path) -> MediumModel:
    """One restorer run for every sample (no cross-fold guarantee)."""
    return MediumModel(str(Path(run).resolve()), _checkpoint_digest(Path(run)), None)


def _checkpoint_digest(run: Path) -> str:
    from pipeline.train import checkpoint
    from pipeline.train.trainer import LAST

    path = run / LAST
    if not path.is_file():
        raise D.InputNotFound(f"{run} holds no trained model ({LAST}): give a run folder of `perceive-ir train`")
    recorded = checkpoint.digest_path(path)
    if recorded.is_file():
        checkpoint.verify(path)
        return recorded.read_text().split()[0]
    return hashlib.sha256(path.read_bytes()).hexdigest()


def render_medium(
    build_root: str | Path, *, runs: str | Path | None = None, restorer: str | Path | None = None, folder: str | Path | None = None,
    workers: int | None = None, scheduler: str | None = None, tile: int = 512, overlap: int = 32,
    overwrite: bool = False, progress: bool = True,
) -> RenderResult:
    """Render the mq tier of the paper-scheme build at `build_root` from exactly one of `runs` (fold
    runs of `train medium`), `restorer` (one run for all) or `folder` (images named by key)."""
    start = time.perf_counter()
    if sum(x is not None for x in (runs, restorer, folder)) != 1:
        raise D.UserError("give exactly one of --from RUNS (fold runs of `train medium`), --restorer RUN or --folder DIR")
    from pipeline.train.restore import _check_tiling

    _check_tiling(tile, overlap)
    build = open_build(build_root)
    if build.tiers != "paper":
        raise D.UserError(f"{build.root} is a {build.tiers}-scheme build: its mq tier is stored already (render-medium is for --tiers paper builds)")
    models: tuple[MediumModel, ...] = ()
    folds = None
    images: dict[str, str] = {}
    if runs is not None:
        models, folds = fold_models(runs, build)
    elif restorer is not None:
        models = (restorer_model(restorer),)
    else:
        images = _images_by_key(Path(folder))  # type: ignore[arg-type]
    codec = parse_codec(build.config["codec"]["spec"], png_level=build.config["codec"].get("level") or 1)
    job = RenderJob(str(build.root), models, folds, None if folder is None else str(Path(folder).resolve()), tile, overlap,
                    codec, build.calibration.metric)
    plan = _plan(build, images)
    record = _record(job, images)
    with folder_lock(build.root, "render"):
        _prepare(build.root, record, overwrite)
        todo = [s for s in plan if not (build.root / s.parquet).is_file()]
        if todo:
            _run(todo, job, workers, scheduler, progress)
        return _finish(build.root, plan, record, len(plan) - len(todo), time.perf_counter() - start)


def _images_by_key(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        raise D.InputNotFound(f"--folder {folder} is not a folder")
    found: dict[str, str] = {}
    for path in shards.image_files(folder):
        key = path.name.split(".", 1)[0]
        if key in found:
            raise D.UserError(f"{folder} holds two images for sample {key}: {found[key]} and {path}")
        found[key] = str(path)
    return found


def _plan(build: Build, images: dict[str, str]) -> list[RenderSpec]:
    """One spec per shard of the build, in manifest order; samples in tar order."""
    rows = build.manifest(["key", "split", "type", "severity", "shard", "source"], filters=[("tier", "=", "lq")]).to_pylist()
    by_shard: dict[tuple[str, str, str], list[tuple[str, float, str, str | None]]] = {}
    for r in rows:
        by_shard.setdefault((r["shard"], r["split"], r["type"]), []).append((r["key"], r["severity"], r["source"], images.get(r["key"])))
    return [RenderSpec(*where, tuple(samples)) for where, samples in by_shard.items()]


def _record(job: RenderJob, images: dict[str, str]) -> dict[str, Any]:
    if job.folder is not None:
        digest = hashlib.sha256("\n".join(f"{k}\t{Path(p).stat().st_size}\t{Path(p).stat().st_mtime_ns}"
                                          for k, p in sorted(images.items())).encode()).hexdigest()
        source = {"kind": "folder", "path": job.folder, "files_sha256": digest}
    else:
        kind = "folds" if job.folds else "restorer"
        source = {"kind": kind, "models": [{"fold": m.fold, "path": m.path, "sha256": m.digest} for m in job.models]}
    return {"format": RECORD_FORMAT, "source": source, "folds": job.folds, "tile": job.tile, "overlap": job.overlap,
            "codec": job.codec.to_dict(), "metric": job.metric, "counts": None}


def _prepare(root: Path, record: dict[str, Any], overwrite: bool) -> None:
    path = root / MEDIUM_RECORD
    if path.is_file():
        old = json.loads(path.read_text())
        same = {k: v for k, v in old.items() if k not in _RESULTS} == {k: v for k, v in record.items() if k not in _RESULTS}
        if not same and not overwrite:
            raise D.OutputExists(
                f"{root} holds mq images rendered otherwise ({path.name}: {json.dumps(old['source'])[:200]}); "
                "use --overwrite to render them again"
            )
        if not same:
            for f in [*root.glob("*/*/shard-*.mq.tar"), *root.glob("*/*/shard-*.mq.parquet"), root / MEDIUM]:
                f.unlink(missing_ok=True)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")


def _run(todo: list[RenderSpec], job: RenderJob, workers: int | None, scheduler: str | None, progress: bool) -> None:
    tasks = [shards.ShardTask(f"render-{spec.shard}-{id(job)}", spec.shard, len(spec.samples), render_shard, (spec, job))
             for spec in todo]
    shards.run_shard_tasks(tasks, Path(job.out), workers=workers, scheduler=scheduler, progress=progress, desc="render",
                           retries=RETRIES, failed="failed to render")


_MODELS: dict[tuple[str, str], Any] = {}
_MODELS_LOCK = threading.Lock()


def _model(m: MediumModel) -> Any:
    """The model of `m`, loaded once per worker process (a long-lived cluster's cache is keyed by digest)."""
    import torch

    from pipeline.train.stages import get_stage

    with _MODELS_LOCK:
        if (m.path, m.digest) not in _MODELS:
            _MODELS.clear()  # one render's models at a time
            _MODELS[(m.path, m.digest)] = get_stage("restorer").load_trained(m.path, torch.device("cpu"))
        return _MODELS[(m.path, m.digest)]


def render_shard(spec: RenderSpec, job: RenderJob) -> int:
    """Render one shard's companion; returns the samples rendered."""
    import cv2
    import torch

    from pipeline.data.tar_stream import read_samples
    from pipeline.train.restore import restore

    cv2.setNumThreads(1)
    torch.set_num_threads(1)  # one thread: the same bytes whatever the number of workers
    out = Path(job.out)
    by_fold = {m.fold: m for m in job.models}
    info = {key: (severity, source, image) for key, severity, source, image in spec.samples}
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    with shard_writer(out / spec.tar) as add:
        for key, members in read_samples(str(out / spec.shard), set(info), ("lq", "hq")):
            severity, source, image_file = info[key]
            lq, hq = shards.decode(members["lq"]), shards.decode(members["hq"])
            fold = shards.fold_of(key, job.folds) if job.folds else None
            if job.folder is not None:
                if image_file is None:
                    errors.append(_error(key, source, f"no restored image named {key}.* in {job.folder}"))
                    continue
                try:
                    mq = shards.load_image(image_file)
                except shards.BadImage as err:
                    errors.append(_error(key, source, f"{image_file}: {err}"))
                    continue
                if mq.shape != lq.shape:
                    errors.append(_error(key, source, f"{image_file} is {mq.shape[1]}x{mq.shape[0]}, the sample {lq.shape[1]}x{lq.shape[0]}"))
                    continue
                model_digest, model_path = hashlib.sha256(Path(image_file).read_bytes()).hexdigest(), image_file
            else:
                model = by_fold[fold]
                mq = restore(_model(model), lq, tile=job.tile, overlap=job.overlap)
                model_digest, model_path = model.digest, model.path
            data = job.codec.encode(mq)
            member = member_name(key, "mq", job.codec.extension)
            score = round(float(D.quality_reference(job.metric, hq)(mq)), 6)
            psnr = D.psnr(hq, mq)
            psnr = round(psnr, 6) if np.isfinite(psnr) else None
            record = {"key": key, "fold": fold, "folds": job.folds, "model": model_path, "model_sha256": model_digest,
                      "tile": job.tile, "overlap": job.overlap, "score": score, "psnr": psnr, "metric": job.metric,
                      "member": member, "input": member_name(key, "lq", job.codec.extension)}
            add(member, data)
            add(f"{key}.{MEDIUM_KIND}.json", json.dumps(record, sort_keys=True).encode())
            rows.append({"key": key, "split": spec.split, "type": spec.type, "tier": "mq",
                         "severity": severity, "score": score, "psnr": psnr, "shard": spec.tar, "member": member,
                         "width": mq.shape[1], "height": mq.shape[0], "bytes": len(data),
                         "sha256": hashlib.sha256(data).hexdigest(), "source": source, "fold": fold, "model": model_digest})
    write_shard_manifest(rows, errors, out / spec.parquet, MEDIUM_SCHEMA)
    return len(rows)


def _error(key: str, source: str, reason: str) -> dict[str, Any]:
    return {"source": source, "key": key, "tier": "mq", "reason": reason}


def _finish(root: Path, plan: list[RenderSpec], record: dict[str, Any], skipped: int, seconds: float) -> RenderResult:
    rendered = merge_manifests((root / s.parquet for s in plan), root / MEDIUM, MEDIUM_SCHEMA)
    errors = [e for s in plan for e in read_shard_errors(root / s.parquet)]
    record = {**record, "counts": {"rendered": rendered, "errors": len(errors), "shards": len(plan)}, "errors": errors}
    with atomic_output(root / MEDIUM_RECORD) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    return RenderResult(root, rendered, len(errors), len(plan), skipped, seconds)
