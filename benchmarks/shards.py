"""Shard build throughput: 1 worker vs 2, against the encode-only bound, in one run.

    python benchmarks/shards.py [--patches-per-image 12] [--patch 256]

(a) the plan built with 1 worker, (b) the same plan with 2 workers (whose
output must equal (a)'s byte for byte), (c) the encode-only bound: one core
encoding the images that (a) stored, with the same codec, and nothing else.
Prints samples/s for each, scaling = (b)/(a) (target >= 1.6 on 2 cores) and
efficiency = time(c)/time(a) (target >= 0.4): the share of a 1-worker build
spent on what any builder must do. Build times are end to end, as a user
waits for them: cluster start, tasks, merge. Last, the PNG level trade-off
on the same images, which is why the default level is 1.
"""

from __future__ import annotations

import os
import sys

# Run as a file, this folder comes first on sys.path and this file would shadow the `shards` package.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import tarfile
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

import shards

TARGET_SCALING = 1.6
TARGET_EFFICIENCY = 0.4


def stored_images(out: Path) -> list[np.ndarray]:
    """Every hq / mq / lq image of a build, decoded (the input of the encode-only bound)."""
    images = []
    for path in sorted(out.glob("*/*/shard-*.tar")):
        with tarfile.open(path) as tar:
            for member in tar:
                if not member.name.endswith(".json"):
                    images.append(shards.decode(tar.extractfile(member).read()))
    return images


def encode_all(codec: shards.Codec, images: list[np.ndarray]) -> tuple[float, int]:
    """Seconds to encode every image once on this core, and the bytes written."""
    start = time.perf_counter()
    size = sum(len(codec.encode(image)) for image in images)
    return time.perf_counter() - start, size


def timed_build(workdir: Path, name: str, config: shards.BuildConfig, workers: int) -> tuple[float, shards.BuildResult]:
    start = time.perf_counter()
    result = shards.build("builtin", workdir / name, config, workers=workers, progress=False)
    return time.perf_counter() - start, result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--patch", type=int, default=256)
    p.add_argument("--patches-per-image", type=int, default=12)
    p.add_argument("--samples-per-shard", type=int, default=8)
    p.add_argument("--codec", default="png")
    args = p.parse_args()
    config = shards.BuildConfig(
        patch=args.patch, patches_per_image=args.patches_per_image, samples_per_shard=args.samples_per_shard, codec=args.codec
    )
    codec = config.codec_spec
    plan = shards.make_plan(shards.list_sources("builtin"), config)
    planned = sum(len(s.samples) for s in plan)
    print(
        f"plan: {len(shards.list_sources('builtin'))} builtin photos x {config.patches_per_image} patches of "
        f"{config.patch} px x {len(config.types)} types = {planned} samples in {len(plan)} shards; codec {codec.spec}"
        + (f" level {codec.level}" if codec.level is not None else "")
        + f"; {os.cpu_count()} cores"
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        time_a, a = timed_build(work, "a", config, 1)
        samples = a.report.samples
        print(f"(a) build, 1 worker:     {samples} samples ({a.report.skipped_samples} skipped) in {time_a:6.2f} s = {samples / time_a:6.1f} samples/s")
        time_b, b = timed_build(work, "b", config, 2)
        same = all(
            (work / "a" / f).read_bytes() == (work / "b" / f).read_bytes()
            for f in [s.tar for s in plan] + [s.parquet for s in plan] + ["manifest.parquet", "errors.parquet", "dataset.json"]
        )
        print(f"(b) build, 2 workers:    {b.report.samples} samples in {time_b:6.2f} s = {samples / time_b:6.1f} samples/s; bytes identical to (a): {same}")
        images = stored_images(work / "a")
    cv2.setNumThreads(1)
    time_c, size = encode_all(codec, images)
    print(f"(c) encode only, 1 core: {len(images)} images in {time_c:6.2f} s = {samples / time_c:6.1f} samples/s ({size / 2**20:.1f} MiB)")
    scaling = time_a / time_b
    efficiency = time_c / time_a
    print(f"scaling = (b)/(a) = {scaling:.2f} (target >= {TARGET_SCALING}: {'met' if scaling >= TARGET_SCALING else 'NOT met'})")
    print(f"efficiency = time(c)/time(a) = {efficiency:.2f} (target >= {TARGET_EFFICIENCY}: {'met' if efficiency >= TARGET_EFFICIENCY else 'NOT met'})")
    if codec.name == "png":
        subset = images[::3]
        cells = []
        for level in (0, 1, 3, 6, 9):
            seconds, nbytes = encode_all(shards.parse_codec("png", png_level=level), subset)
            cells.append(f"{level}: {seconds * 1e3 / len(subset):.1f} ms {nbytes / len(subset) / 1024:.0f} KiB")
        print(f"png level -> ms and KiB per image ({len(subset)} images): " + "; ".join(cells))
    if not same:
        sys.exit("outputs of 1 and 2 workers differ")


if __name__ == "__main__":
    main()
