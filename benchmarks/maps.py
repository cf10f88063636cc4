"""What severity and quality maps cost: build time and shard size with maps off and on, in one run.

    python benchmarks/maps.py [--patch 256] [--patches-per-image 6]

The same plan (builtin photos, the five default types, one worker) is built without maps, then
with each map generator and with `mixed`; for each, the build's wall time, its samples/s and the
bytes of its shards, and the ratios to the build without maps. A build with maps does more work
per image: the map is rendered (a SLIC segmentation for `regions`), the type is applied per pixel
(a blend of levels for blur and JPEG), the quality map is measured, and two 8-bit PNGs are encoded
and stored per degraded image. Then the engine alone: D.degrade per type at a scalar severity
against a smooth map, on a 256 x 256 patch (best of 5 x 10 calls), with the ratio.
"""

from __future__ import annotations

import os
import sys

# Run as a file, this folder comes first on sys.path and this file would shadow the `shards` package.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

import degradations as D
import shards
import shards.format as F
from shards.config import MAP_CHOICES


def shard_bytes(out: Path) -> int:
    return sum(p.stat().st_size for p in out.glob(F.SHARD_GLOB + ".tar"))


def timed_build(root: Path, name: str, config: shards.BuildConfig) -> tuple[float, shards.BuildResult, int]:
    out = root / name
    start = time.perf_counter()
    result = shards.build("builtin", out, config, workers=1, progress=False, overwrite=True)
    return time.perf_counter() - start, result, shard_bytes(out)


def engine_ratio(name: str, patch: np.ndarray, repeats: int = 5, calls: int = 10) -> tuple[float, float]:
    """Best-of-`repeats` seconds per call of a scalar severity and of a smooth map."""
    def best(severity) -> float:
        times = []
        for r in range(repeats):
            start = time.perf_counter()
            for i in range(calls):
                D.degrade(patch, name, severity, seed=r * calls + i)
            times.append((time.perf_counter() - start) / calls)
        return min(times)

    return best(0.6), best({"map": "smooth", "lo": 0.3, "hi": 0.9, "seed": 1})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--patch", type=int, default=256)
    p.add_argument("--patches-per-image", type=int, default=6)
    p.add_argument("--generators", default=",".join([*MAP_CHOICES, "mixed"]), help="comma-separated map settings to build with")
    args = p.parse_args()
    cv2.setNumThreads(1)
    base = shards.BuildConfig(patch=args.patch, patches_per_image=args.patches_per_image, samples_per_shard=16, seed=0)
    print(f"builtin photos, {args.patch} px patches x {args.patches_per_image} per photo, types {','.join(base.types)}, 1 worker")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        off_time, off, off_bytes = timed_build(root, "off", base)
        print(f"{'maps':<10} {'samples':>7} {'time s':>7} {'samples/s':>9} {'MB':>7} {'KB/sample':>9} {'time ratio':>10} {'size ratio':>10}")

        def line(name: str, seconds: float, result: shards.BuildResult, size: int) -> None:
            n = result.report.samples
            print(f"{name:<10} {n:>7} {seconds:>7.1f} {n / seconds:>9.2f} {size / 1e6:>7.2f} {size / 1e3 / max(n, 1):>9.1f} "
                  f"{seconds / off_time * off.report.samples / max(n, 1):>10.2f} {size / off_bytes * off.report.samples / max(n, 1):>10.2f}")

        line("off", off_time, off, off_bytes)
        for generator in args.generators.split(","):
            seconds, result, size = timed_build(root, generator, replace(base, maps=generator))
            line(generator, seconds, result, size)
    print("(ratios are per sample: time and bytes per stored sample with maps / without)")
    print()
    patch = np.ascontiguousarray(D.builtin_photo("astronaut")[:256, :256])
    print("engine, 256 x 256, seconds per call: scalar severity 0.6 vs a smooth map 0.3-0.9")
    for name in ("noise", "haze", "rain", "blur", "low_light", "snow", "jpeg"):
        scalar, mapped = engine_ratio(name, patch)
        print(f"{name:<10} scalar {scalar * 1e3:7.2f} ms   map {mapped * 1e3:7.2f} ms   ratio {mapped / scalar:5.2f}")


if __name__ == "__main__":
    main()
