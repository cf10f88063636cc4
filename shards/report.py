"""What a built dataset holds: counts per split, type and tier, histograms, errors.

`inspect(OUT)` reads dataset.json, manifest.parquet and errors.parquet (no
pixels) and gives a `Report`; `perceive-ir inspect` prints it, and `build`
prints its counts as the summary of a run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from shards.sample import SLOTS

_BAR = 12  # characters of the longest histogram bar
_BINS = 10


@dataclass(frozen=True)
class Report:
    out: Path
    dataset: dict[str, Any]
    manifest: pd.DataFrame  # one row per image: split, type, tier, severity, score, psnr
    errors: pd.DataFrame  # one row per unusable photo or skipped sample

    @property
    def samples(self) -> int:
        return int((self.manifest["tier"] == "hq").sum())

    @property
    def unusable_sources(self) -> int:
        return int(self.errors["key"].isna().sum())

    @property
    def skipped_samples(self) -> int:
        return int(self.errors["key"].notna().sum())

    def count_record(self) -> dict[str, Any]:
        """The counts dataset.json records (JSON types, in split and type order)."""
        table = self.counts()
        return {
            "samples": self.samples,
            "images": len(self.manifest),
            "errors": len(self.errors),
            "unusable_sources": self.unusable_sources,
            "skipped_samples": self.skipped_samples,
            "samples_by_split_type": {
                split: {t: int(table.loc[(split, t), "hq"]) for t in self.dataset["config"]["types"]}
                for split in self.dataset["config"]["splits"]
            },
        }

    def counts(self) -> pd.DataFrame:
        """Images per (split, type) and tier, in the build's split and type order."""
        config = self.dataset["config"]
        index = pd.MultiIndex.from_product([list(config["splits"]), config["types"]], names=["split", "type"])
        table = self.manifest.groupby(["split", "type", "tier"]).size().unstack("tier")
        return table.reindex(index=index, columns=list(SLOTS)).fillna(0).astype(int)

    def counts_text(self) -> str:
        table = self.counts()
        width = max([len(t) for t in self.dataset["config"]["types"]] + [4])
        lines = [f"{'split':<8} {'type':<{width}} {'samples':>8} " + " ".join(f"{t:>7}" for t in SLOTS)]
        for (split, type_name), row in table.iterrows():
            lines.append(f"{split:<8} {type_name:<{width}} {row['hq']:>8} " + " ".join(f"{row[t]:>7}" for t in SLOTS))
        lines.append(f"{'total':<8} {'':<{width}} {self.samples:>8} " + " ".join(f"{table[t].sum():>7}" for t in SLOTS))
        return "\n".join(lines)

    def errors_text(self, limit: int = 20) -> str:
        if self.errors.empty:
            return "errors: none"
        lines = [f"errors: {len(self.errors)} ({self.unusable_sources} unusable photos, {self.skipped_samples} samples skipped)"]
        photos = self.errors[self.errors["key"].isna()]
        for row in photos.head(limit).itertuples():
            lines.append(f"  {row.source}: {row.reason}")
        if len(photos) > limit:
            lines.append(f"  ... {len(photos) - limit} more unusable photos")
        skipped = self.errors[self.errors["key"].notna()]
        if len(skipped):
            # One line per (type, tier): the cause is nearly always a tier a type cannot reach on some patches.
            groups = skipped.fillna({"tier": "-"}).groupby(["type", "tier"], sort=True).size()
            cells = ", ".join(f"{t} {tier} {n}" for (t, tier), n in groups.items())
            lines.append(f"  samples skipped (type, tier out of reach, count): {cells}")
        lines.append(f"  every error, with its reason: {self.out / 'errors.parquet'}")
        return "\n".join(lines)

    def histograms_text(self, by_type: bool = False) -> str:
        metric = self.dataset["calibration"]["metric"]
        groups = [("all types", self.manifest)]
        if by_type:
            groups = [(t, self.manifest[self.manifest["type"] == t]) for t in self.dataset["config"]["types"]]
        blocks = []
        for label, frame in groups:
            blocks.append(_histogram(frame, "severity", (0.0, 1.0), f"severity, {label}"))
            span = (0.0, 1.0) if metric == "ssim" else (float(frame["score"].min()), float(frame["score"].max()))
            blocks.append(_histogram(frame, "score", span, f"score ({metric}), {label}"))
        return "\n\n".join(blocks)

    def text(self, histograms: bool = True, by_type: bool = False, max_errors: int = 20) -> str:
        config = self.dataset["config"]
        codec = config["codec"]
        head = (
            f"{self.out}: {self.samples} samples ({len(self.manifest)} images), "
            f"{len(config['types'])} types, codec {codec['spec']}{' (lossy)' if codec['lossy'] else ''}, "
            f"patch {config['patch'] or 'whole image'}, seed {config['seed']}"
        )
        parts = [head, self.counts_text(), self.errors_text(max_errors)]
        if histograms and len(self.manifest):
            parts.append(self.histograms_text(by_type))
        return "\n\n".join(parts)


def _histogram(frame: pd.DataFrame, column: str, span: tuple[float, float], title: str) -> str:
    """Rows = bins of `column`, one count and bar per tier (bars scaled per tier)."""
    lo, hi = span
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, _BINS + 1)
    counts = {}
    for tier in SLOTS:
        values = frame.loc[frame["tier"] == tier, column].dropna().to_numpy(np.float64)
        counts[tier] = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)[0]
    lines = [title, (" " * 15 + "".join(f"{t:>5}{'':{_BAR + 2}}" for t in SLOTS)).rstrip()]
    for i in range(_BINS):
        cells = []
        for tier in SLOTS:
            peak = max(int(counts[tier].max()), 1)
            n = int(counts[tier][i])
            bar = "#" * (round(_BAR * n / peak) if n else 0)
            cells.append(f"{n:>5} {bar:<{_BAR}} ")
        lines.append(f"  {edges[i]:5.2f}-{edges[i + 1]:<5.2f}  " + "".join(cells).rstrip())
    return "\n".join(lines)


def inspect(out: str | Path) -> Report:
    """Read a built dataset's summary tables; FileNotFoundError / ValueError if OUT holds no finished build."""
    out = Path(out)
    if not (out / "dataset.json").is_file():
        raise FileNotFoundError(f"{out} holds no dataset.json: not a perceive-ir build")
    dataset = json.loads((out / "dataset.json").read_text())
    if dataset.get("counts") is None or not (out / "manifest.parquet").is_file():
        raise ValueError(f"the build in {out} is not finished; run the same `perceive-ir build` command again to complete it")
    return Report(out, dataset, *read_tables(out))


def read_tables(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The columns of manifest.parquet a report needs, and errors.parquet."""
    manifest = pq.read_table(out / "manifest.parquet", columns=["split", "type", "tier", "severity", "score", "psnr"])
    return manifest.to_pandas(), pq.read_table(out / "errors.parquet").to_pandas()
