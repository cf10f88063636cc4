"""What a run logs, where researchers look for it.

- `metrics.jsonl`: one JSON object per logged row (`split` train or val, `step`, the terms);
- `metrics.csv`: the same rows as a table, rewritten when the log closes;
- `tb/`: TensorBoard event files (every numeric term as `SPLIT/NAME`, and validation images),
  when the `tensorboard` package is installed (`pip install perceive-ir[tensorboard]`).

On resume the rows after the restored step (logged after the checkpoint, before the stop)
are dropped from all three, as they will be logged again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

METRICS = "metrics.jsonl"


class RunLog:
    def __init__(self, out: Path, resumed_at: int | None) -> None:
        self.out = out
        kept = []
        path = out / METRICS
        if resumed_at is not None and path.is_file():
            kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= resumed_at]
        self._file = path.open("w")
        self._file.writelines(line + "\n" for line in kept)
        self._file.flush()
        self._tb = _summary_writer(out / "tb", resumed_at)

    def row(self, split: str, row: Mapping[str, Any]) -> None:
        """One row of `split` (train, val) at row["step"]."""
        self._file.write(json.dumps({"split": split, **row}) + "\n")
        self._file.flush()
        if self._tb is not None:
            for name, value in row.items():
                if name not in ("step", "epoch") and isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(f"{split}/{name}", value, row["step"])

    def images(self, tag: str, images: torch.Tensor, step: int) -> None:
        """N x 3 x H x W in [0, 1], shown together (TensorBoard only)."""
        if self._tb is not None:
            self._tb.add_images(tag, images.clamp(0, 1), step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
        write_csv(self.out / METRICS, self.out / "metrics.csv")


def read_rows(path: str | Path, split: str | None = None) -> list[dict[str, Any]]:
    """Rows of a metrics.jsonl, of one split or all."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return [r for r in rows if split is None or r.get("split") == split]


def write_csv(jsonl: Path, csv_path: Path) -> None:
    """The rows of `jsonl` as a CSV table: one column per name any row has, in first-seen order."""
    import csv

    rows = read_rows(jsonl)
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)


def _summary_writer(folder: Path, resumed_at: int | None) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional: the JSON and CSV logs are always written
        return None
    return SummaryWriter(str(folder), purge_step=None if resumed_at is None else resumed_at + 1)
