"""One sample: a clean patch (hq) and the same patch degraded into the mq and lq tiers.

The tier of a stored image is measured, not assumed: per slot, a severity is
drawn in the calibrated range of that tier, the patch is degraded and
scored against the clean patch. Calibration ranges hold for the mean photo;
a flat sky or a busy texture can sit far from it, which is why a search
follows a miss (see `degraded_slot`). A patch that cannot reach a tier is
skipped and reported, so every stored image has tier == tier_of(score) under its type's bands.

Every draw comes from generators seeded by (dataset seed, key, slot,
attempt), so a sample is the same whichever worker makes it, and when.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import degradations as D
from degradations.severity_maps import resolve_spec
from shards.config import MAP_CHOICES
from shards.sources import BadImage

_DIGITS = 6  # stored severities and scores are rounded to this many decimals
# A patch too clean at severity 1 is tried again there (another seed, another random variant: a
# motion blur where a Gaussian failed) only when its loss reached _NEAR of the band edge's loss:
# for SSIM, a score at most 0.6 for lq (edge 0.5) and at most 0.88 for mq (edge 0.85). Blur
# variants at severity 1 differ by up to about 0.1 SSIM, and lq is where they decide (measured on
# the builtin photos: patches that miss lq by more never reached it in 8 variants).
_NEAR = 0.8


class SampleError(Exception):
    """A sample that cannot be made from a usable photo: `tier` is out of reach of its patch
    (or, tier None, the image is too small for the type).

    Not a ValueError: the builder records exactly these (and unusable photos)
    as skipped samples, and lets anything else fail the build as the bug it is.
    """

    def __init__(self, message: str, tier: str | None = None) -> None:
        super().__init__(message)
        self.tier = tier


@dataclass(frozen=True)
class Scorer:
    """The calibration's metric and bands, and what a build needs of them."""

    metric: str
    bands: Mapping[str, Mapping[str, tuple[float, float]]]  # type -> tier -> score band
    intervals: Mapping[str, Mapping[str, tuple[float, float]]]  # type -> tier -> severity interval
    seed: int
    max_tries: int
    maps: str = ""  # BuildConfig.maps: "" for one severity per image
    map_contrast: float = 1.0

    @classmethod
    def of(cls, calibration: D.Calibration, types: Sequence[str], seed: int, max_tries: int,
           maps: str = "", map_contrast: float = 1.0) -> Scorer:
        """The scorer of a build: its calibration's metric and bands, and per type the severity
        interval each degraded tier is searched in (beyond the mean curve where it falls short)."""
        if maps and calibration.metric != "ssim":
            raise D.UserError(f"--maps stores SSIM quality maps: it needs an ssim calibration, not {calibration.metric}")
        intervals = {t: {tier: calibration.interval(t, tier, beyond_mean=True) for tier in D.DEGRADED_TIERS} for t in types}
        bands = {t: calibration.bands_for(t) for t in types}
        return cls(calibration.metric, bands, intervals, seed, max_tries, maps, float(map_contrast))

    def severity_arg(self, severity: float, key: str, tier: str) -> float | dict[str, Any]:
        """What D.degrade gets for a searched severity: the number, or with maps a map spec that
        varies around it (from s (1 - c/2) to s (1 + c/2), clipped to 1), so a larger s still
        degrades more and the tier search works unchanged. The map's shape (generator, parameters,
        seed) is drawn once per sample and tier: the search's tries differ only in its range."""
        if not self.maps:
            return severity
        draws = D.rng(self.seed, key, tier, "map")
        generator = self.maps
        if generator == "mixed":
            generator = MAP_CHOICES[int(draws.integers(len(MAP_CHOICES)))]
        spec = resolve_spec(generator, draws, D.derive_seed(self.seed, key, tier, "map"))
        half = self.map_contrast / 2
        return {**spec, "lo": round(severity * (1 - half), _DIGITS), "hi": round(min(1.0, severity * (1 + half)), _DIGITS)}

    def span(self, type_name: str) -> tuple[float, float]:
        """The severities the paper scheme draws lq from: from where the type's mean score leaves hq
        (the start of its mq interval) to 1, so every drawn image is visibly degraded."""
        return self.intervals[type_name]["mq"][0], 1.0

    @property
    def identical(self) -> float:
        """The score of an image against itself (SSIM 1, PSNR inf), known without measuring."""
        return 1.0 if self.metric == "ssim" else math.inf

    def scores_against(self, clean: np.ndarray) -> Callable[[np.ndarray], float]:
        """Score degraded versions of `clean` (rounded as stored); SSIM computes the clean side once."""
        measure = D.quality_reference(self.metric, clean)
        return lambda degraded: round(measure(degraded), _DIGITS)

    def loss(self, score: float) -> float:
        """A score as a loss that is 0 for the clean image and grows with degradation: 1 - SSIM, or the
        mean squared error (in units of 255^2) that a PSNR stands for. The search interpolates in it."""
        return 1.0 - score if self.metric == "ssim" else 10.0 ** (-score / 10.0)

    def miss(self, score: float, type_name: str, tier: str) -> int:
        """0 when `score` lies in `tier`'s band; +1 when above it (too clean), -1 when below (too degraded).

        Below the lq band is a miss too, though tier_of calls it lq: the band's
        floor is where an image has lost most of its structure, and no tier asks for that.
        """
        lo, hi = self.bands[type_name][tier]
        if score < lo:
            return -1
        return 1 if score >= hi else 0


@dataclass(frozen=True)
class Slot:
    image: np.ndarray
    record: dict[str, Any]  # severity, score, psnr, tier, attempts, recipe; with maps, "maps" (their statistics)
    maps: tuple[np.ndarray, np.ndarray] | None = None  # severity map and measured quality map, H x W float32


def _with_maps(slot: Slot, patch: np.ndarray, type_name: str, scorer: Scorer) -> Slot:
    """`slot` with its severity map (rendered from the recipe) and its measured quality map."""
    if not scorer.maps:
        return slot
    recipe = D.Recipe.from_dict(slot.record["recipe"])
    severity = D.severity_map_of(patch, recipe.steps[0])  # a composite's components share the spec
    quality = D.ssim_map(patch, slot.image)
    stats = {
        "severity": {k: round(v, _DIGITS) for k, v in D.map_stats(severity).items()},
        "quality": {k: round(v, _DIGITS) for k, v in D.map_stats(quality).items()},
        "areas": {k: round(v, _DIGITS) for k, v in D.tier_areas(quality, scorer.bands[type_name]).items()},
    }
    return Slot(slot.image, {**slot.record, "maps": stats}, (severity, quality))


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
    measured: list[tuple[float, float]] | None = None,
) -> Slot:
    """`patch` degraded by `type_name` into `tier`; SampleError if out of its reach.

    The first severity is drawn in the calibrated range, so typical patches
    follow the calibration. After a miss the next severity is aimed at a
    score drawn inside the band, by a safeguarded secant on this patch's own
    measurements (`measured`, shared by the searches of a patch's tiers: the
    lq search's tries tell the mq search where mq lies). It works in loss
    space (1 - SSIM, or the MSE a PSNR stands for), where severity 0 has
    loss 0 and loss grows with severity: interpolate between the strongest
    try short of the target and the mildest one past it, or extrapolate
    beyond the strongest. The step may leave the calibrated range (a dark
    patch may need far less haze than the mean photo to fall to mq). A patch
    still too clean at severity 1 is given up at once, or after more variants
    at severity 1 when it came close, rather than after `max_tries` tries.
    """
    score = score or scorer.scores_against(patch)
    measured = [] if measured is None else measured
    lo, hi = scorer.intervals[type_name][tier]
    band_lo, band_hi = scorer.bands[type_name][tier]
    draws = D.rng(scorer.seed, key, tier, "severity")
    tried = []
    severity = round(float(draws.uniform(lo, hi)), _DIGITS)
    for attempt in range(scorer.max_tries):
        out, recipe = D.degrade(patch, type_name, scorer.severity_arg(severity, key, tier), seed=D.derive_seed(scorer.seed, key, tier, attempt))
        value = score(out)
        loss = scorer.loss(value)
        measured.append((severity, loss))  # for the rest of this search and the patch's next tier
        miss = scorer.miss(value, type_name, tier)
        if miss == 0:
            record = {
                "severity": severity,
                "score": value,
                "psnr": _finite(round(D.psnr(patch, out), _DIGITS)),
                "tier": tier,
                "attempts": attempt + 1,
                "recipe": recipe.to_dict(),
            }
            return _with_maps(Slot(out, record), patch, type_name, scorer)
        tried.append(f"{severity:.3f}->{value:.3f}")
        if miss > 0 and severity >= 1.0:
            if loss < _NEAR * scorer.loss(band_hi):
                break  # too clean at the strongest severity, and not close: out of reach
            continue  # severity 1 again: another seed draws another variant
        # Aim inside the band, away from its edges, where a noisy estimate still lands in it.
        target = scorer.loss(band_lo + (band_hi - band_lo) * float(draws.uniform(0.2, 0.8)))
        severity = round(_next_severity(measured, target), _DIGITS)
    raise SampleError(
        f"{type_name} could not bring this patch into tier {tier} in {len(tried)} tries "
        f"(severity->{scorer.metric}: {', '.join(tried)})",
        tier,
    )


def _next_severity(measured: list[tuple[float, float]], target: float) -> float:
    """The severity predicted to give loss `target` from the (severity, loss) tries so far."""
    short = [(0.0, 0.0)] + [p for p in measured if p[1] < target]  # severity 0: the clean patch
    past = [p for p in measured if p[1] >= target]
    floor, floor_loss = max(short)  # the strongest try short of the target
    ceiling, ceiling_loss = min(past) if past else (1.0, math.nan)  # the mildest one past it
    if ceiling <= floor:  # the tries disagree (a random degradation is noisy): split the difference
        return (floor + ceiling) / 2
    if past and ceiling_loss > floor_loss:
        guess = floor + (target - floor_loss) * (ceiling - floor) / (ceiling_loss - floor_loss)
    else:  # extrapolate through the two strongest tries short of the target
        (s0, l0), (s1, l1) = sorted(short)[-2:] if len(short) > 1 else ((0.0, 0.0), (floor, floor_loss))
        slope = (l1 - l0) / (s1 - s0) if s1 > s0 else 0.0
        # No measurable effect yet: go to the strongest severity allowed, which settles whether
        # the tier is in reach at all, instead of creeping towards it.
        guess = floor + (target - floor_loss) / slope if slope > 0 else ceiling
    margin = 0.02 * (ceiling - floor)  # a step that does not move is a wasted try
    return min(max(guess, floor + margin), ceiling - margin if past else 1.0)


def make_slots(patch: np.ndarray, type_name: str, key: str, scorer: Scorer) -> dict[str, Slot]:
    """hq, mq and lq of one patch; raises SampleError when a tier is out of the patch's reach."""
    # lq first: it is the tier out of reach when one is (blur, haze on flat patches), and
    # finding that out first saves the mq search of a sample that would be dropped anyway.
    score = scorer.scores_against(patch)
    measured: list[tuple[float, float]] = []
    lq = degraded_slot(patch, type_name, "lq", key, scorer, score, measured)
    mq = degraded_slot(patch, type_name, "mq", key, scorer, score, measured)
    return {"hq": clean_slot(patch, type_name, key, scorer), "mq": mq, "lq": lq}


def paper_slots(patch: np.ndarray, type_name: str, key: str, scorer: Scorer) -> dict[str, Slot]:
    """hq and lq of one patch as Perceive-IR defines them: lq is the patch degraded at a severity
    drawn uniformly over the type's span, stored whatever its score (measured and recorded, with
    the tier the bands would give it under `band`); mq comes later, from a medium restorer."""
    lo, hi = scorer.span(type_name)
    severity = round(float(D.rng(scorer.seed, key, "lq", "severity").uniform(lo, hi)), _DIGITS)
    out, recipe = D.degrade(patch, type_name, scorer.severity_arg(severity, key, "lq"), seed=D.derive_seed(scorer.seed, key, "lq", 0))
    value = scorer.scores_against(patch)(out)
    record = {
        "severity": severity,
        "score": value,
        "psnr": _finite(round(D.psnr(patch, out), _DIGITS)),
        "tier": "lq",
        "band": D.tier_of(value, scorer.metric, scorer.bands[type_name]),
        "attempts": 1,
        "recipe": recipe.to_dict(),
    }
    return {"hq": clean_slot(patch, type_name, key, scorer), "lq": _with_maps(Slot(out, record), patch, type_name, scorer)}


def patch_box(height: int, width: int, patch: int, patch_index: int, patches_per_image: int,
              layout: str, seed: int, key: str) -> tuple[int, int, int, int]:
    """(x, y, w, h) of a sample's patch; BadImage when the image is smaller than the patch.

    random: a uniform position drawn from (seed, key). grid: the patches of an
    image spread evenly over it, row by row, on a near-square grid.
    """
    if patch == 0:
        return 0, 0, width, height
    if height < patch or width < patch:
        raise BadImage(f"image is {width}x{height}, smaller than the {patch}x{patch} patch")
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
