"""Quality tiers: bands of one measured full-reference score, the same for every type unless a
benchmark match gave a type its own (`Calibration.bands_for`, `perceive-ir calibrate --match`).

Why SSIM by default: it is bounded in [0, 1], falls for every type we make
(noise, blur, haze, rain, darkness, codecs), needs no network and is cheap
enough to score every stored sample. The bands put standard benchmark
inputs where researchers would: SOTS hazy and Rain100L rainy inputs (SSIM
about 0.8) are medium quality; Rain100H, LOL low-light and BSD68 at sigma 50
(SSIM 0.2-0.4) are low quality; `hq` is near-clean (SSIM >= 0.85). Below
the lq band's floor (0.2) an image has lost most of its structure: calibration
ranges end there and the shard builder stores nothing below it, though
`tier_of` still calls such a score lq.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from degradations.errors import InputNotFound, NotWritable, UserError

# The one tier order: worst first, so a tier's index is its class label (0 low, 1 medium, 2 high
# quality). Code that lists tiers clean first (shard members, tables) uses reversed(TIERS).
TIERS = ("lq", "mq", "hq")
DEGRADED_TIERS = TIERS[:2]  # the tiers a degradation is searched or drawn for

# [lower, upper) of each tier per metric; a score at or above hq's lower bound is hq.
DEFAULT_BANDS: dict[str, dict[str, tuple[float, float]]] = {
    "ssim": {"hq": (0.85, 1.0), "mq": (0.5, 0.85), "lq": (0.2, 0.5)},
    "psnr": {"hq": (35.0, math.inf), "mq": (25.0, 35.0), "lq": (15.0, 25.0)},
}


def check_tier(tier: str) -> str:
    if tier not in TIERS:
        raise UserError(f"unknown tier {tier!r}; tiers are {', '.join(TIERS)}")
    return tier


def tier_of(score: float, metric: str = "ssim", bands: Mapping[str, tuple[float, float]] | None = None) -> str:
    """The tier of a measured score: hq, mq or lq (anything below mq is lq)."""
    if bands is None:
        if metric not in DEFAULT_BANDS:
            raise UserError(f"unknown metric {metric!r}; known: {', '.join(DEFAULT_BANDS)}")
        bands = DEFAULT_BANDS[metric]
    if math.isnan(score):
        raise ValueError("score is NaN")  # a bug upstream, not the user's input
    if score >= bands["hq"][0]:
        return "hq"
    if score >= bands["mq"][0]:
        return "mq"
    return "lq"


def tier_map(quality: np.ndarray, bands: Mapping[str, tuple[float, float]] | None = None) -> np.ndarray:
    """The tier index (TIERS order: 0 lq, 1 mq, 2 hq) of every pixel of an SSIM quality map, under
    `bands` (default: the SSIM bands), as `tier_of` grades a whole image's score."""
    bands = DEFAULT_BANDS["ssim"] if bands is None else bands
    out = np.zeros(quality.shape, np.int64)
    out[quality >= bands["mq"][0]] = 1
    out[quality >= bands["hq"][0]] = 2
    return out


def tier_areas(quality: np.ndarray, bands: Mapping[str, tuple[float, float]] | None = None) -> dict[str, float]:
    """The fraction of a quality map's pixels in each tier."""
    counts = np.bincount(tier_map(quality, bands).ravel(), minlength=len(TIERS))
    return {tier: float(counts[i] / quality.size) for i, tier in enumerate(TIERS)}


@dataclass(frozen=True)
class TypeCurve:
    """The measured severity -> score curve of one type, and the severity range of each tier."""

    severities: list[float]
    mean: list[float]
    std: list[float]
    ranges: dict[str, list[float] | None]  # tier -> [lo, hi] severity, None when the band is out of reach
    notes: list[str] = field(default_factory=list)
    # This type's own bands, where `calibrate --match` moved them to cover a real benchmark's inputs
    # (LOL's low-light inputs lie below the global lq floor); None: the calibration's bands.
    bands: dict[str, list[float]] | None = None
    match: dict[str, Any] | None = None  # what the bands and ranges were matched to, as measured

    def range_text(self, tier: str) -> str:
        """`0.120-1.000`, or `out of reach`: how tables print a tier's severity range."""
        r = self.ranges.get(tier)
        return "out of reach" if r is None else f"{r[0]:.3f}-{r[1]:.3f}"

    def to_dict(self) -> dict[str, Any]:
        record = {"severities": self.severities, "mean": self.mean, "std": self.std, "ranges": self.ranges, "notes": self.notes}
        # Written only when set, so calibrations without them keep their bytes.
        record.update({k: v for k, v in (("bands", self.bands), ("match", self.match)) if v is not None})
        return record


@dataclass(frozen=True)
class Calibration:
    """Per-type severity ranges for each tier, measured on a set of photos."""

    metric: str
    bands: dict[str, tuple[float, float]]
    types: dict[str, TypeCurve]
    source: dict[str, Any] = field(default_factory=dict)

    def curve(self, name: str) -> TypeCurve:
        """The measured curve of type `name`; UserError naming the calibrated types when it is not one."""
        curve = self.types.get(name)
        if curve is None:
            raise UserError(
                f"type {name!r} is not calibrated (calibrated: {', '.join(sorted(self.types))}); run "
                f"`perceive-ir calibrate --types {name} -o calibration.json` and pass the file on (--calibration)"
            )
        return curve

    def bands_for(self, name: str) -> dict[str, tuple[float, float]]:
        """The tier bands of type `name`: its own where a benchmark match set them, else the calibration's."""
        own = self.curve(name).bands
        return {t: (float(b[0]), float(b[1])) for t, b in own.items()} if own else dict(self.bands)

    def interval(self, name: str, tier: str, *, beyond_mean: bool = False) -> tuple[float, float] | None:
        """The severity interval of `tier` for type `name`: where the mean score lies in the tier's band.

        None when the band is out of reach on average (blur and jpeg never take
        the builtin photos' mean into lq). With `beyond_mean`, such a band is
        given the interval from the end of the next cleaner tier's range to
        severity 1 instead: textured patches often reach it there, which is
        where the shard builder searches.
        """
        check_tier(tier)
        r = self.curve(name).ranges.get(tier)
        if r is not None:
            return float(r[0]), float(r[1])
        if not beyond_mean or tier == "hq":
            return None
        cleaner = self.interval(name, TIERS[TIERS.index(tier) + 1], beyond_mean=True)
        return (cleaner[1] if cleaner else 0.0), 1.0

    def severity_range(self, name: str, tier: str) -> tuple[float, float]:
        """[lo, hi] severities whose mean score lands in `tier`'s band; UserError when out of reach."""
        interval = self.interval(name, tier)
        if interval is None:
            lo, hi = self.bands_for(name)[tier]
            raise UserError(f"type {name!r} never reaches tier {tier} ({self.metric} in [{lo}, {hi})) at any severity")
        return interval

    def subset(self, names: Iterable[str]) -> Calibration:
        """The calibration of `names` only (a build records the curves of the types it holds)."""
        return replace(self, types={n: self.curve(n) for n in names})

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready record that `from_record` reads back into an equal Calibration."""
        return {
            "metric": self.metric,
            "bands": {t: list(b) for t, b in self.bands.items()},
            "source": self.source,
            "types": {n: c.to_dict() for n, c in sorted(self.types.items())},
        }

    @classmethod
    def from_record(cls, d: Mapping[str, Any]) -> Calibration:
        try:
            return cls(
                metric=d["metric"],
                bands={t: (float(b[0]), float(b[1])) for t, b in d["bands"].items()},
                types={n: TypeCurve(**c) for n, c in d["types"].items()},
                source=dict(d.get("source", {})),
            )
        except (KeyError, TypeError, AttributeError) as err:
            raise UserError(f"not a perceive-ir calibration record ({type(err).__name__}: {err})") from None

    def save(self, path: str | Path) -> None:
        try:
            Path(path).write_text(json.dumps(self.to_record(), indent=1) + "\n")
        except OSError as err:
            raise NotWritable(f"cannot write the calibration to {path}: {err.strerror or err}") from None


def load_calibration(path: str | Path) -> Calibration:
    """Read a calibration.json written by `perceive-ir calibrate`."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFound(f"calibration file {path} does not exist")
    try:
        record = json.loads(path.read_text())
    except ValueError as err:
        raise UserError(f"calibration file {path} is not JSON: {err}") from None
    return Calibration.from_record(record)


@lru_cache(maxsize=1)
def default_calibration() -> Calibration:
    """The calibration shipped with the package (builtin photos; see README)."""
    text = resources.files("degradations").joinpath("calibration.json").read_text()
    return Calibration.from_record(json.loads(text))


def severity_range(name: str, tier: str, calibration: Calibration | None = None) -> tuple[float, float]:
    """The severity range of `tier` for type `name` under `calibration` (default: the shipped one)."""
    return (calibration or default_calibration()).severity_range(name, tier)
