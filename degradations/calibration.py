"""Measure severity -> score curves and derive each tier's severity range per type.

For every type, each source patch is degraded at a grid of severities with
one seed per patch (so, per patch, only the strength changes along the
curve) and scored against the clean patch. The mean curve, made
non-increasing by a running minimum, is inverted by linear interpolation at
the band edges: the tier's severity range is where the mean score lies in
its band.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from degradations.errors import UserError
from degradations.quality import METRICS
from degradations.recipe import degrade
from degradations.registry import available, canonical_name
from degradations.seeds import derive_seed, rng
from degradations.tiers import DEFAULT_BANDS, TIERS, Calibration, TypeCurve

DEFAULT_SEVERITIES = tuple(float(s) for s in np.round(np.linspace(0.0, 1.0, 21), 4))


def sample_patches(
    images: Mapping[str, np.ndarray], *, patch: int, per_image: int, seed: int
) -> list[np.ndarray]:
    """`per_image` random square crops of side `patch` from each image (whole image when smaller)."""
    patches = []
    for name, image in images.items():
        h, w = image.shape[:2]
        side = min(patch, h, w) if patch > 0 else min(h, w)
        r = rng(seed, "calibration-crop", name)
        for _ in range(per_image):
            y = int(r.integers(0, h - side + 1))
            x = int(r.integers(0, w - side + 1))
            patches.append(np.ascontiguousarray(image[y : y + side, x : x + side]))
    return patches


def severity_at(severities: np.ndarray, curve: np.ndarray, level: float) -> float | None:
    """First severity where the non-increasing `curve` drops below `level`, interpolated; None when it never does."""
    below = np.nonzero(curve < level)[0]
    if below.size == 0:
        return None
    i = int(below[0])
    if i == 0:
        return float(severities[0])
    s0, s1, c0, c1 = severities[i - 1], severities[i], curve[i - 1], curve[i]
    return float(s0 + (c0 - level) / (c0 - c1) * (s1 - s0))


def tier_ranges(
    severities: np.ndarray, envelope: np.ndarray, bands: Mapping[str, tuple[float, float]]
) -> tuple[dict[str, list[float] | None], list[str]]:
    """Severity range per tier from a non-increasing mean-score curve, and notes on what is out of reach."""
    ranges: dict[str, list[float] | None] = {}
    notes = []
    for tier in TIERS:
        lo, hi = bands[tier]
        start = float(severities[0]) if tier == "hq" else severity_at(severities, envelope, hi)
        if start is None:
            ranges[tier] = None
            notes.append(f"{tier} out of reach: mean score {envelope[-1]:.3f} at severity {severities[-1]:g} stays above {hi}")
            continue
        end = severity_at(severities, envelope, lo)
        if end is None:
            end = float(severities[-1])
            if tier == "lq":
                notes.append(f"lq ends at severity {end:g}, mean score {envelope[-1]:.3f} (band floor {lo})")
        ranges[tier] = [round(start, 4), round(end, 4)]
    return ranges, notes


def calibrate(
    images: Mapping[str, np.ndarray],
    types: Sequence[str] | None = None,
    *,
    severities: Sequence[float] = DEFAULT_SEVERITIES,
    patch: int = 256,
    patches_per_image: int = 4,
    seed: int = 0,
    metric: str = "ssim",
    bands: Mapping[str, tuple[float, float]] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Calibration:
    """Measure every type in `types` (default: all registered) on crops of `images`.

    `progress`, when given, is called with the number of degradations just
    scored, for a progress bar.
    """
    if not images:
        raise UserError("calibration needs at least one image")
    if metric not in METRICS:
        raise UserError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    score = METRICS[metric]
    bands = dict(bands or DEFAULT_BANDS[metric])
    sev = np.asarray(sorted(set(float(s) for s in severities)), np.float64)
    if sev.size < 2 or sev[0] < 0 or sev[-1] > 1:
        raise UserError("severities must hold at least two values in [0, 1]")
    patches = sample_patches(images, patch=patch, per_image=patches_per_image, seed=seed)
    names = [canonical_name(t) for t in (types or available())]

    curves = {}
    for name in names:
        scores = np.empty((sev.size, len(patches)))
        for j, clean in enumerate(patches):
            s = derive_seed(seed, "calibration", j)
            for i, severity in enumerate(sev):
                scores[i, j] = score(clean, degrade(clean, name, float(severity), seed=s)[0])
            if progress:
                progress(sev.size)
        scores = np.minimum(scores, 100.0)  # PSNR of an identical image is +inf; 100 dB stands in
        mean = scores.mean(axis=1)
        envelope = np.minimum.accumulate(mean)
        ranges, notes = tier_ranges(sev, envelope, bands)
        if np.any(envelope < mean - 1e-9):
            notes.append("mean score is not monotone in severity; ranges use its running minimum")
        curves[name] = TypeCurve(
            severities=[round(float(s), 4) for s in sev],
            mean=[round(float(m), 5) for m in mean],
            std=[round(float(x), 5) for x in scores.std(axis=1)],
            ranges=ranges,
            notes=notes,
        )
    source = {"images": sorted(images), "patch": patch, "patches_per_image": patches_per_image, "seed": seed}
    return Calibration(metric=metric, bands=bands, types=curves, source=source)
