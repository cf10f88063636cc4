"""One sample: a clean patch (hq) and the same patch degraded into the mq and lq tiers.

The tier of a stored image is measured, not assumed: per slot, a severity is
drawn in the calibrated range of that tier, the patch is degraded and
scored against the clean patch, and when the measured tier is off the
severity interval is narrowed (too clean: raise its floor; too degraded:
lower its ceiling) and a fresh draw tried. Calibration ranges hold for the
mean photo; a flat sky or a busy texture can sit far from it, which is why
the search exists. A patch that cannot reach a tier in `max_tries` draws is
skipped and reported, so every stored image has tier == tier_of(score).

Every draw comes from generators seeded by (dataset seed, key, slot,
attempt), so a sample is the same whichever worker makes it, and when.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

import degradations as D

SLOTS = ("hq", "mq", "lq")  # member order in a shard: clean first
_DIGITS = 6  # stored severities and scores are rounded to this many decimals


class SampleError(ValueError):
    """A sample that cannot be made from a usable photo: `tier` is out of reach of its patch."""

    def __init__(self, message: str, tier: str) -> None:
        super().__init__(message)
        self.tier = tier


def search_intervals(calibration: D.Calibration, type_name: str) -> dict[str, tuple[float, float]]:
    """Severity interval to search per degraded tier.

    A band the calibration marks out of reach on average (blur and jpeg never
    reach lq for the mean photo) is searched from the end of the next cleaner
    tier's range up to severity 1: textured patches often do reach it.
    """
    curve = calibration.types.get(type_name)
    if curve is None:
        raise ValueError(
            f"type {type_name!r} is not in the calibration (calibrated: {', '.join(sorted(calibration.types))}); "
            f"run `perceive-ir calibrate --types {type_name} -o calibration.json` and build with "
            "`--calibration calibration.json`"
        )

    def interval(tier: str) -> tuple[float, float]:
        r = curve.ranges.get(tier)
        if r is not None:
            return float(r[0]), float(r[1])
        if tier == "hq":
            return 0.0, 0.0
        cleaner = D.TIERS[D.TIERS.index(tier) + 1]
        return interval(cleaner)[1], 1.0

    return {tier: interval(tier) for tier in ("mq", "lq")}


@dataclass(frozen=True)
class Scorer:
    """The calibration's metric and bands, and what a build needs of them."""

    metric: str
    bands: Mapping[str, tuple[float, float]]
    intervals: Mapping[str, Mapping[str, tuple[float, float]]]  # type -> tier -> severity interval
    seed: int
    max_tries: int

    @property
    def identical(self) -> float:
        """The score of an image against itself (SSIM 1, PSNR inf), known without measuring."""
        return 1.0 if self.metric == "ssim" else math.inf

    def scores_against(self, clean: np.ndarray) -> Callable[[np.ndarray], float]:
        """Score degraded versions of `clean` (rounded as stored); SSIM computes the clean side once."""
        measure = D.quality_reference(self.metric, clean)
        return lambda degraded: round(measure(degraded), _DIGITS)

    def miss(self, score: float, tier: str) -> int:
        """0 when `score` lies in `tier`'s band; +1 when above it (too clean), -1 when below (too degraded).

        Below the lq band is a miss too, though tier_of calls it lq: the band's
        floor is where an image has lost most of its structure, and no tier asks for that.
        """
        lo, hi = self.bands[tier]
        if score < lo:
            return -1
        return 1 if score >= hi else 0


@dataclass(frozen=True)
class Slot:
    image: np.ndarray
    record: dict[str, Any]  # severity, score, psnr, tier, attempts, recipe


def _finite(x: float) -> float | None:
    """Non-finite numbers (PSNR of identical images) are stored as null, in JSON and parquet alike."""
    return x if math.isfinite(x) else None


def clean_slot(patch: np.ndarray, type_name: str, key: str, scorer: Scorer) -> Slot:
    """hq: the clean patch, with the severity-0 recipe that replays it."""
    _, recipe = D.degrade(patch, type_name, 0.0, seed=D.derive_seed(scorer.seed, key, "hq"))
    record = {"severity": 0.0, "score": _finite(scorer.identical), "psnr": None, "tier": "hq", "attempts": 1, "recipe": recipe.to_dict()}
    return Slot(patch, record)


def degraded_slot(
    patch: np.ndarray, type_name: str, tier: str, key: str, scorer: Scorer,
    score: Callable[[np.ndarray], float] | None = None,
) -> Slot:
    """`patch` degraded by `type_name` into `tier`, by the bounded search above; SampleError if out of reach.

    The first severity is drawn in the calibrated range, so typical patches
    follow the calibration. After a miss the draw moves to the bracket the
    measurements allow, [highest too-clean severity, lowest too-degraded
    one], which may leave the calibrated range: a dark patch may need far
    less haze than the mean photo to fall to mq.
    """
    score = score or scorer.scores_against(patch)
    lo, hi = scorer.intervals[type_name][tier]
    floor, ceiling = 0.0, 1.0  # the bracket: severity 0 is the clean image
    draws = D.rng(scorer.seed, key, tier, "severity")
    tried = []
    for attempt in range(scorer.max_tries):
        severity = round(float(draws.uniform(lo, hi)), _DIGITS)
        out, recipe = D.degrade(patch, type_name, severity, seed=D.derive_seed(scorer.seed, key, tier, attempt))
        measured = score(out)
        miss = scorer.miss(measured, tier)
        if miss == 0:
            record = {
                "severity": severity,
                "score": measured,
                "psnr": _finite(round(D.psnr(patch, out), _DIGITS)),
                "tier": tier,
                "attempts": attempt + 1,
                "recipe": recipe.to_dict(),
            }
            return Slot(out, record)
        tried.append(f"{severity:.3f}->{measured:.3f}")
        if miss > 0:
            floor = max(floor, severity)  # too clean: only stronger severities are left
        else:
            ceiling = min(ceiling, severity)  # too degraded
        lo, hi = floor, max(floor, ceiling)
    raise SampleError(
        f"{type_name} could not bring this patch into tier {tier} in {scorer.max_tries} tries "
        f"(severity->{scorer.metric}: {', '.join(tried)})",
        tier,
    )


def make_slots(patch: np.ndarray, type_name: str, key: str, scorer: Scorer) -> dict[str, Slot]:
    """hq, mq and lq of one patch; raises SampleError (or the engine's ValueError) when it cannot be made."""
    # lq first: it is the tier out of reach when one is (blur, haze on flat patches), and
    # finding that out first saves the mq search of a sample that would be dropped anyway.
    score = scorer.scores_against(patch)
    lq = degraded_slot(patch, type_name, "lq", key, scorer, score)
    mq = degraded_slot(patch, type_name, "mq", key, scorer, score)
    return {"hq": clean_slot(patch, type_name, key, scorer), "mq": mq, "lq": lq}


def patch_box(height: int, width: int, patch: int, patch_index: int, patches_per_image: int,
              layout: str, seed: int, key: str) -> tuple[int, int, int, int]:
    """(x, y, w, h) of a sample's patch; ValueError when the image is smaller than the patch.

    random: a uniform position drawn from (seed, key). grid: the patches of an
    image spread evenly over it, row by row, on a near-square grid.
    """
    if patch == 0:
        return 0, 0, width, height
    if height < patch or width < patch:
        raise ValueError(f"image is {width}x{height}, smaller than the {patch}x{patch} patch")
    if layout == "random":
        r = D.rng(seed, key, "box")
        y = int(r.integers(0, height - patch + 1))
        x = int(r.integers(0, width - patch + 1))
        return x, y, patch, patch
    cols = math.ceil(math.sqrt(patches_per_image))
    rows = math.ceil(patches_per_image / cols)
    row, col = divmod(patch_index, cols)

    def spread(i: int, n: int, room: int) -> int:
        return room // 2 if n == 1 else round(i * room / (n - 1))

    return spread(col, cols, width - patch), spread(row, rows, height - patch), patch, patch
