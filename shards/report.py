"""What a built dataset holds: counts per split, type and tier, histograms, errors.

`inspect(OUT)` reads the build record, the manifest and the errors table
(no pixels) and gives a `Report`; `perceive-ir inspect` prints it, and
`build` prints its counts as the summary of a run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shards.format import ERRORS, MEMBER_TIERS, Build, open_build

_BAR = 12  # characters of the longest histogram bar
_BINS = 10


@dataclass(frozen=True)
class Report:
    build: Build
    manifest: pd.DataFrame  # one row per image: split, type, tier, severity, score, psnr
    errors: pd.DataFrame  # one row per unusable photo or skipped sample

    @classmethod
    def of(cls, build: Build) -> Report:
        """The report of a build whose tables are written (its counts may still be missing)."""
        manifest = build.manifest(["split", "type", "tier", "severity", "score", "psnr"]).to_pandas()
        return cls(build, manifest, build.errors().to_pandas())

    @property
    def out(self) -> Path:
        return self.build.root

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
        """The counts the build record holds (JSON types, in split and type order)."""
        table = self.counts()
        return {
            "samples": self.samples,
            "images": len(self.manifest),
            "errors": len(self.errors),
            "unusable_sources": self.unusable_sources,
            "skipped_samples": self.skipped_samples,
            "samples_by_split_type": {
                split: {t: int(table.loc[(split, t), "hq"]) for t in self.build.types} for split in self.build.splits
            },
        }

    def counts(self) -> pd.DataFrame:
        """Images per (split, type) and tier, in the build's split and type order."""
        index = pd.MultiIndex.from_product([self.build.splits, self.build.types], names=["split", "type"])
        table = self.manifest.groupby(["split", "type", "tier"]).size().unstack("tier")
        return table.reindex(index=index, columns=list(MEMBER_TIERS)).fillna(0).astype(int)

    def counts_text(self) -> str:
        table = self.counts()
        width = max([len(t) for t in self.build.types] + [4])
        lines = [f"{'split':<8} {'type':<{width}} {'samples':>8} " + " ".join(f"{t:>7}" for t in MEMBER_TIERS)]
        for (split, type_name), row in table.iterrows():
            lines.append(f"{split:<8} {type_name:<{width}} {row['hq']:>8} " + " ".join(f"{row[t]:>7}" for t in MEMBER_TIERS))
        lines.append(f"{'total':<8} {'':<{width}} {self.samples:>8} " + " ".join(f"{table[t].sum():>7}" for t in MEMBER_TIERS))
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
        lines.append(f"  every error, with its reason: {self.out / ERRORS}")
        return "\n".join(lines)

    def maps_text(self) -> str:
        """A build made with --maps: per type and degraded tier, the mean over images of the severity
        map's range, of the measured quality, and of the share of pixels in each tier."""
        config = self.build.config
        columns = ["type", "tier", "map_min", "map_max", "quality_mean", "area_lq", "area_mq", "area_hq"]
        frame = self.build.manifest(columns).to_pandas().dropna(subset=["map_min"])
        width = max([len(t) for t in self.build.types] + [4])
        lines = [f"maps: {config['maps']} (contrast {config.get('map_contrast', 1.0):g}); means over images of each type and tier:",
                 f"  {'type':<{width}} tier  severity map  quality  pixel areas lq / mq / hq"]
        for (type_name, tier), rows in frame.groupby(["type", "tier"], sort=True):
            mean = rows.mean(numeric_only=True)
            lines.append(
                f"  {type_name:<{width}} {tier:<4}  {mean['map_min']:.2f} - {mean['map_max']:.2f}    {mean['quality_mean']:.3f}"
                f"    {mean['area_lq']:.2f} / {mean['area_mq']:.2f} / {mean['area_hq']:.2f}"
            )
        return "\n".join(lines)

    def histograms_text(self, by_type: bool = False) -> str:
        metric = self.build.calibration.metric
        groups = [("all types", self.manifest)]
        if by_type:
            groups = [(t, self.manifest[self.manifest["type"] == t]) for t in self.build.types]
        blocks = []
        for label, frame in groups:
            blocks.append(_histogram(frame, "severity", (0.0, 1.0), f"severity, {label}"))
            span = (0.0, 1.0) if metric == "ssim" else (float(frame["score"].min()), float(frame["score"].max()))
            blocks.append(_histogram(frame, "score", span, f"score ({metric}), {label}"))
        return "\n\n".join(blocks)

    def text(self, histograms: bool = True, by_type: bool = False, max_errors: int = 20) -> str:
        config = self.build.config
        codec = config["codec"]
        head = (
            f"{self.out}: {self.samples} samples ({len(self.manifest)} images), "
            f"{len(config['types'])} types, codec {codec['spec']}{' (lossy)' if codec['lossy'] else ''}, "
            f"patch {config['patch'] or 'whole image'}, seed {config['seed']}"
        )
        parts = [head, self.counts_text(), self.errors_text(max_errors)]
        if config.get("maps"):
            parts.append(self.maps_text())
        if histograms and len(self.manifest):
            parts.append(self.histograms_text(by_type))
        return "\n\n".join(parts)


def _histogram(frame: pd.DataFrame, column: str, span: tuple[float, float], title: str) -> str:
    """Rows = bins of `column`, one count and bar per tier (bars scaled per tier)."""
    lo, hi = span
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, _BINS + 1)
    counts = {}
    for tier in MEMBER_TIERS:
        values = frame.loc[frame["tier"] == tier, column].dropna().to_numpy(np.float64)
        counts[tier] = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)[0]
    lines = [title, (" " * 15 + "".join(f"{t:>5}{'':{_BAR + 2}}" for t in MEMBER_TIERS)).rstrip()]
    for i in range(_BINS):
        cells = []
        for tier in MEMBER_TIERS:
            peak = max(int(counts[tier].max()), 1)
            n = int(counts[tier][i])
            bar = "#" * (round(_BAR * n / peak) if n else 0)
            cells.append(f"{n:>5} {bar:<{_BAR}} ")
        lines.append(f"  {edges[i]:5.2f}-{edges[i + 1]:<5.2f}  " + "".join(cells).rstrip())
    return "\n".join(lines)


def inspect(out: str | Path) -> Report:
    """The report of the finished build in `out`, with a paper build's rendered mq images; FormatError when it holds none."""
    build = open_build(out)
    report = Report.of(build)
    if build.tiers == "paper" and build.rendered:
        medium = build.medium(["split", "type", "tier", "severity", "score", "psnr"]).to_pandas()
        report = replace(report, manifest=pd.concat([report.manifest, medium], ignore_index=True))
    return report
