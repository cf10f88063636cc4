"""Peak memory of a whole-image build (`--patch 0`) per megapixel of the photo.

Each size runs in a fresh process that makes the shards of one photo in-process (the task a dask
worker runs: decode, degrade into each tier, score, encode, write), and reports its peak resident
memory above what the imports alone take. Usage:

    python benchmarks/whole_image_memory.py            # 4 and 16 MP, every default type
    python benchmarks/whole_image_memory.py --mp 4 24

The figure to read is MB per megapixel, and whether it stays flat as the photo grows (memory
linear in the pixels, with no term that grows faster).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys
from pathlib import Path
import cv2, numpy as np
import degradations as D, shards
from shards.build import _record
from shards.plan import make_plan
from shards.sample import Scorer
from shards.shard import ShardJob, run_shard

mp, folder = float(sys.argv[1]), Path(sys.argv[2])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # the imports; making the photo peaks lower than the build
side = int((mp * 1e6) ** 0.5)
photo = cv2.resize(D.builtin_photo("astronaut"), (side, side), interpolation=cv2.INTER_CUBIC)
(folder / "photos").mkdir()
cv2.imwrite(str(folder / "photos" / "p.png"), photo[:, :, ::-1])
del photo
config = shards.BuildConfig(patch=0, patches_per_image=1, splits=(("train", 1.0),), max_pixels=200_000_000)
calibration = config.load_calibration()
sources = shards.list_sources(folder / "photos")
scorer = Scorer.of(calibration, config.types, config.seed, config.max_tries)
job = ShardJob(str(folder / "out"), 0, 1, config.layout, config.max_pixels, config.codec_spec, scorer)
for spec in make_plan(sources, config):
    run_shard(spec, job)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"mp": side * side / 1e6, "before_mb": before / 1024, "peak_mb": peak / 1024}))
"""


def measure(mp: float) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run([sys.executable, "-c", CHILD, str(mp), folder], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mp", type=float, nargs="+", default=[4.0, 16.0], help="photo sizes in megapixels")
    args = parser.parse_args()
    rows = [measure(mp) for mp in args.mp]
    for r in rows:
        used = r["peak_mb"] - r["before_mb"]
        print(f"whole-image build  {r['mp']:6.1f} MP  peak {r['peak_mb']:7.0f} MB  above imports {used:7.0f} MB  "
              f"{used / r['mp']:6.1f} MB/MP")
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        growth = ((b["peak_mb"] - b["before_mb"]) / (a["peak_mb"] - a["before_mb"])) / (b["mp"] / a["mp"])
        print(f"memory growth / pixel growth {growth:.2f} (1.00: linear in the pixels)")


if __name__ == "__main__":
    main()
