"""Quality tiers: bands of one measured full-reference score, the same for every type.

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
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

TIERS = ("lq", "mq", "hq")  # index = class label: 0 low, 1 medium, 2 high quality

# [lower, upper) of each tier per metric; a score at or above hq's lower bound is hq.
DEFAULT_BANDS: dict[str, dict[str, tuple[float, float]]] = {
    "ssim": {"hq": (0.85, 1.0), "mq": (0.5, 0.85), "lq": (0.2, 0.5)},
    "psnr": {"hq": (35.0, math.inf), "mq": (25.0, 35.0), "lq": (15.0, 25.0)},
}


def check_tier(tier: str) -> str:
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; tiers are {', '.join(TIERS)}")
    return tier


def tier_of(score: float, metric: str = "ssim", bands: Mapping[str, tuple[float, float]] | None = None) -> str:
    """The tier of a measured score: hq, mq or lq (anything below mq is lq)."""
    if bands is None:
        if metric not in DEFAULT_BANDS:
            raise ValueError(f"unknown metric {metric!r}; known: {', '.join(DEFAULT_BANDS)}")
        bands = DEFAULT_BANDS[metric]
    if math.isnan(score):
        raise ValueError("score is NaN")
    if score >= bands["hq"][0]:
        return "hq"
    if score >= bands["mq"][0]:
        return "mq"
    return "lq"


@dataclass(frozen=True)
class TypeCurve:
    """The measured severity -> score curve of one type, and the severity range of each tier."""

    severities: list[float]
    mean: list[float]
    std: list[float]
    ranges: dict[str, list[float] | None]  # tier -> [lo, hi] severity, None when the band is out of reach
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"severities": self.severities, "mean": self.mean, "std": self.std, "ranges": self.ranges, "notes": self.notes}


@dataclass(frozen=True)
class Calibration:
    """Per-type severity ranges for each tier, measured on a set of photos."""

    metric: str
    bands: dict[str, tuple[float, float]]
    types: dict[str, TypeCurve]
    source: dict[str, Any] = field(default_factory=dict)

    def severity_range(self, name: str, tier: str) -> tuple[float, float]:
        """[lo, hi] severities whose mean score lands in `tier`'s band."""
        check_tier(tier)
        curve = self.types.get(name)
        if curve is None:
            raise ValueError(
                f"type {name!r} is not calibrated (calibrated: {', '.join(sorted(self.types))}); "
                f"run `perceive-ir calibrate --types {name} ...`"
            )
        r = curve.ranges.get(tier)
        if r is None:
            lo, hi = self.bands[tier]
            raise ValueError(f"type {name!r} never reaches tier {tier} ({self.metric} in [{lo}, {hi})) at any severity")
        return float(r[0]), float(r[1])

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "bands": {t: list(b) for t, b in self.bands.items()},
            "source": self.source,
            "types": {n: c.to_dict() for n, c in sorted(self.types.items())},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        try:
            return cls(
                metric=d["metric"],
                bands={t: (float(b[0]), float(b[1])) for t, b in d["bands"].items()},
                types={n: TypeCurve(**c) for n, c in d["types"].items()},
                source=dict(d.get("source", {})),
            )
        except (KeyError, TypeError) as err:
            raise ValueError(f"not a perceive-ir calibration: {err}") from err

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")


def load_calibration(path: str | Path) -> Calibration:
    """Read a calibration.json written by `perceive-ir calibrate`."""
    return Calibration.from_dict(json.loads(Path(path).read_text()))


@lru_cache(maxsize=1)
def default_calibration() -> Calibration:
    """The calibration shipped with the package (builtin photos; see README)."""
    text = resources.files("degradations").joinpath("calibration.json").read_text()
    return Calibration.from_dict(json.loads(text))


def severity_range(name: str, tier: str, calibration: Calibration | None = None) -> tuple[float, float]:
    """The severity range of `tier` for type `name` under `calibration` (default: the shipped one)."""
    return (calibration or default_calibration()).severity_range(name, tier)
