"""Loader throughput: our streaming loader against loose PNG folders, and the decode-only bound.

    python benchmarks/loader.py [--patches-per-image 8] [--epochs 2] [--rounds 3]

Builds shards from the builtin photos (patch 256, PNG) in a temporary
directory and writes the same image bytes as loose files in the PromptIR
layout (one folder per type and tier, one PNG per sample). Then, for
num_workers 0 and 2, times whole epochs of
  ours:     pipeline.make_loader(mode="triplets", crop=256, batch_size=8)
  baseline: a torch Dataset reading the three PNGs of a sample from the
            folders (OpenCV decode, the same crop and flips, per-sample
            tensors) through a DataLoader(batch_size=8, shuffle=True,
            persistent_workers=True with workers)
and the decode-only bound: cv2.imdecode of the same PNG bytes from memory
in a loop, one core. Prints samples/s, ratio = ours / baseline at equal
workers (target >= 1.0) and efficiency = ours / bound with num_workers 0
(target >= 0.7). Torch and OpenCV use one thread per process; each figure
is the best of `rounds` interleaved measurements after a warm-up epoch.
"""

from __future__ import annotations

import os
import sys

# Run as a file, this folder comes first on sys.path; keep it from shadowing packages.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import platform
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

import shards
from pipeline import make_loader

TARGET_RATIO = 1.0
TARGET_EFFICIENCY = 0.7
TIERS = ("lq", "mq", "hq")
CROP, BATCH = 256, 8


class LoosePngTriplets(Dataset):
    """The PromptIR way: a sample is three PNG files in per-tier folders, decoded and cropped per item."""

    def __init__(self, root: Path, items: list[tuple[str, str]], crop: int) -> None:
        self.root, self.items, self.crop = root, items, crop

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, object]:
        type_name, key = self.items[i]
        images = [_read_rgb(self.root / type_name / tier / f"{key}.png") for tier in TIERS]
        rng = np.random.default_rng(i)
        h, w = images[0].shape[:2]
        y, x = int(rng.integers(h - self.crop + 1)), int(rng.integers(w - self.crop + 1))
        flip_lr, flip_ud = rng.integers(2, size=2)
        out: dict[str, object] = {"key": key, "type": type_name}
        for tier, image in zip(TIERS, images):
            crop = image[y : y + self.crop, x : x + self.crop][:: -1 if flip_ud else 1, :: -1 if flip_lr else 1]
            out[tier] = torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))).float().div(255.0)
        return out


def _read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)


def _one_thread(_: int = 0) -> None:
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def export_loose(build: Path, out: Path) -> tuple[list[tuple[str, str]], list[bytes]]:
    """Every stored image of the train split as out/TYPE/TIER/KEY.png; the items and the image bytes."""
    items, blobs = [], []
    for tar_path in sorted(build.glob("train/*/shard-*.tar")):
        type_name = tar_path.parent.name
        with tarfile.open(tar_path) as tar:
            for member in tar:
                key, _, suffix = member.name.partition(".")
                tier = suffix.split(".")[0]
                if tier not in TIERS:
                    continue
                data = tar.extractfile(member).read()
                (out / type_name / tier).mkdir(parents=True, exist_ok=True)
                (out / type_name / tier / f"{key}.png").write_bytes(data)
                blobs.append(data)
                if tier == "hq":
                    items.append((type_name, key))
    return items, blobs


def samples_per_second(epochs: Iterable[Iterable[dict]]) -> float:
    """Rate over the given epochs, after one warm-up epoch (first item of `epochs`)."""
    it = iter(epochs)
    for _ in next(it):
        pass
    count, start = 0, time.perf_counter()
    for epoch in it:
        for batch in epoch:
            count += len(batch["key"])
    return count / (time.perf_counter() - start)


def decode_bound(blobs: list[bytes], samples: int) -> float:
    """Samples/s when a core does nothing but decode the sample's PNG bytes."""
    arrays = [np.frombuffer(b, np.uint8) for b in blobs]
    for a in arrays[:8]:
        cv2.imdecode(a, cv2.IMREAD_UNCHANGED)
    start = time.perf_counter()
    for a in arrays:
        cv2.imdecode(a, cv2.IMREAD_UNCHANGED)
    return samples / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--patches-per-image", type=int, default=8)
    p.add_argument("--samples-per-shard", type=int, default=16)
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per measurement")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    _one_thread()
    config = shards.BuildConfig(patch=CROP, patches_per_image=args.patches_per_image, samples_per_shard=args.samples_per_shard, splits=(("train", 1.0),))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        built = shards.build("builtin", work / "shards", config, workers=2, progress=False)
        items, blobs = export_loose(work / "shards", work / "promptir")
        print(
            f"data: {len(items)} samples ({', '.join(config.types)}) from {len(shards.list_sources('builtin'))} builtin photos, "
            f"patch {CROP} PNG level {config.png_level}, {built.report.samples} in shards and loose folders "
            f"(built in {time.perf_counter() - start:.0f} s)"
        )
        print(f"machine: {_cpu()}, {os.cpu_count()} cores, torch {torch.__version__}, opencv {cv2.__version__}")
        print(f"triplets (lq, mq, hq), {CROP}x{CROP} crops with flips, batch {BATCH}; one thread per process")

        def ours(workers: int) -> Callable[[], float]:
            loader = make_loader(work / "shards", mode="triplets", batch_size=BATCH, crop=CROP, num_workers=workers, rank=0, world_size=1)
            return lambda: samples_per_second(iter(loader) for _ in range(args.epochs + 1))

        def baseline(workers: int) -> Callable[[], float]:
            dataset = LoosePngTriplets(work / "promptir", items, CROP)
            loader = DataLoader(
                dataset, batch_size=BATCH, shuffle=True, drop_last=True, num_workers=workers,
                persistent_workers=workers > 0,  # kept across epochs, as ours are
                worker_init_fn=_one_thread if workers else None, generator=torch.Generator().manual_seed(0),
            )
            return lambda: samples_per_second(iter(loader) for _ in range(args.epochs + 1))

        runs = {("bound", 0): lambda: decode_bound(blobs, len(items))}
        for workers in (0, 2):
            runs[("ours", workers)] = ours(workers)
            runs[("baseline", workers)] = baseline(workers)
        best = {name: 0.0 for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                best[name] = max(best[name], run())

    bound = best[("bound", 0)]
    print(f"decode-only bound (cv2.imdecode of the same bytes, 1 core): {bound:7.1f} samples/s")
    for workers in (0, 2):
        o, b = best[("ours", workers)], best[("baseline", workers)]
        ratio = o / b
        print(
            f"num_workers={workers}: ours {o:7.1f} samples/s, baseline (loose PNG folders) {b:7.1f} samples/s, "
            f"ratio {ratio:.2f} (target >= {TARGET_RATIO}: {'met' if ratio >= TARGET_RATIO else 'NOT met'})"
        )
    efficiency = best[("ours", 0)] / bound
    print(f"efficiency = ours (num_workers=0) / bound = {efficiency:.2f} (target >= {TARGET_EFFICIENCY}: {'met' if efficiency >= TARGET_EFFICIENCY else 'NOT met'})")


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
