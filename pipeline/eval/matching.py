"""Move one type's calibration onto a real benchmark: `perceive-ir calibrate --match NAME=DIR --type T`.

The global tier bands put most benchmark inputs where researchers would, but not all: LOL's
low-light inputs (SSIM about 0.19) lie below the lq band's floor (0.2), so a build would never store
a low-light image as dark as the test set's. Matching measures the real inputs with the
calibration's own metric (the tiers keep their scoring; only `eval` follows the papers' protocol),
then

* moves the type's bands so its degraded tiers (mq and lq) hold the real inputs from their 5th to
  their 95th percentile: the lq floor lowered where LOL's inputs fall below it, the hq floor raised
  where 41 of Rain100L's 100 rainy inputs would score as hq (the bands become the type's own; the
  other types keep the global ones), and
* measures the type's severity -> score curve again on the benchmark's clean images, so its tier
  ranges are severities of this content, under those bands.

The type's entry in calibration.json records the match: the benchmark, the real scores (mean,
5th and 95th percentiles, how many fall in each tier), the severity whose mean score equals the
real mean, and whether the type's strongest setting reaches the real inputs at all.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

import degradations as D
from pipeline.eval.benchmarks import BenchTask, benchmark_tasks

# Where a floor moves, it moves to a round value below the real 5th percentile (0.01 SSIM, 0.5 dB).
_FLOOR_STEP = {"ssim": 0.01, "psnr": 0.5}


def read_benchmark(tasks: list[BenchTask], metric: str, max_images: int | None = None) -> tuple[list[float], dict[str, np.ndarray]]:
    """In one pass over the pairs: the calibration metric of every real degraded input against its
    clean image (all of a noise set's sigmas), and the clean images by name (a noise set's sigma
    tasks share them: the first task's)."""
    scores, cleans = [], {}
    for t, task in enumerate(tasks):
        for i, (name, degraded, clean) in enumerate(task.images()):
            if max_images is not None and i >= max_images:
                break
            scores.append(min(float(D.quality_reference(metric, clean)(degraded)), 100.0))  # identical pair: PSNR inf -> 100 as in calibrate
            if t == 0:
                cleans[name] = clean
    return scores, cleans


def _hq_ceiling(metric: str) -> float:
    """The highest the hq floor may rise: hq keeps a band above it."""
    return 1.0 - _FLOOR_STEP[metric] if metric == "ssim" else 99.0


def matched_bands(bands: dict[str, tuple[float, float]], scores: list[float], metric: str) -> dict[str, tuple[float, float]]:
    """`bands` moved so the degraded tiers (mq, lq) hold the 5th to 95th percentile of the real inputs:
    the lq floor lowered below the 5th, the hq floor raised above the 95th; neither moves inward."""
    step = _FLOOR_STEP[metric]
    p5, p95 = (float(np.percentile(scores, q)) for q in (5, 95))
    moved = dict(bands)
    lq_lo, lq_hi = bands["lq"]
    if p5 < lq_lo:
        moved["lq"] = (round(max(0.0, math.floor(p5 / step) * step), 4), lq_hi)
    (hq_lo, hq_hi), (mq_lo, _) = bands["hq"], bands["mq"]
    # A real degraded input scored as hq would teach the perceiver that this much rain is clean.
    ceiling = _hq_ceiling(metric)
    if hq_lo <= p95 < ceiling:
        top = round(min(ceiling, math.floor(p95 / step) * step + step), 4)
        moved["hq"], moved["mq"] = (top, hq_hi), (mq_lo, top)
    return moved


def match_calibration(
    base: D.Calibration, spec: str, type_name: str, *,
    max_images: int | None = None, patch: int = 256, patches_per_image: int = 4,
    severities: tuple[float, ...] | np.ndarray = D.DEFAULT_SEVERITIES,
    seed: int = 0, progress: Callable[[int], None] | None = None,
) -> D.Calibration:
    """`base` with `type_name`'s bands and curve moved onto the benchmark `spec` (`NAME=DIR`)."""
    name = D.canonical_name(type_name)
    tasks = benchmark_tasks([spec])
    scores, cleans = read_benchmark(tasks, base.metric, max_images)
    if not scores:
        raise D.UserError(f"{spec}: no pairs to match")
    start = base.bands_for(name) if name in base.types else dict(base.bands)
    bands = matched_bands(start, scores, base.metric)
    measured = D.calibrate(
        cleans, [name], severities=severities, patch=patch, patches_per_image=patches_per_image,
        seed=seed, metric=base.metric, bands=bands, progress=progress,
    ).types[name]

    envelope = np.minimum.accumulate(np.asarray(measured.mean))
    real_mean = float(np.mean(scores))
    severity = D.severity_at(np.asarray(measured.severities), envelope, real_mean)
    # Below the lq floor is no tier (tier_of would call it lq): up to 5 % of the inputs may lie there.
    tiers = ["below" if s < bands["lq"][0] else D.tier_of(s, base.metric, bands) for s in scores]
    notes = list(measured.notes)
    title = tasks[0].benchmark.title
    for tier in ("lq", "hq"):
        was, now = start[tier][0], bands[tier][0]
        if was != now:
            notes.append(f"{tier} floor moved from {was:g} to {now:g} so the degraded tiers cover {title}'s inputs")
    if float(np.percentile(scores, 95)) >= _hq_ceiling(base.metric):  # matched_bands could not cover them
        notes.append(f"{tiers.count('hq')} of {len(scores)} real inputs still score as hq: the hq floor cannot rise further")
    if severity is None:
        notes.append(f"the strongest setting reaches a mean {base.metric} of {envelope[-1]:.3f}, milder than "
                     f"{title}'s inputs ({real_mean:.3f}): the type's model falls short of this benchmark")
    record: dict[str, Any] = {
        "benchmark": title,
        "tasks": [t.name for t in tasks],
        "pairs": len(scores),
        "clean_images": len(cleans),
        "metric": base.metric,
        "real": {"mean": round(real_mean, 5), "p5": round(float(np.percentile(scores, 5)), 5),
                 "p95": round(float(np.percentile(scores, 95)), 5)},
        "real_tiers": {t: tiers.count(t) for t in ("below", *D.TIERS)},
        "severity": None if severity is None else round(severity, 4),
        "strongest_mean": round(float(envelope[-1]), 5),
        "patch": patch, "patches_per_image": patches_per_image, "seed": seed,
    }
    curve = replace(
        measured, notes=notes, match=record,
        bands=None if bands == dict(base.bands) else {t: [float(b[0]), float(b[1])] for t, b in bands.items()},
    )
    return replace(base, types={**base.types, name: curve})


def format_match(calibration: D.Calibration, type_name: str) -> str:
    """What a match did, in plain lines: the real inputs, their tiers, the matched severity and the ranges."""
    name = D.canonical_name(type_name)
    curve = calibration.curve(name)
    m = curve.match or {}
    real = m["real"]
    bands = calibration.bands_for(name)
    lines = [
        f"{name} matched to {m['benchmark']} ({m['pairs']} real inputs, {m['clean_images']} clean images):",
        f"  real {m['metric']}: mean {real['mean']:.3f}, 5th-95th percentile {real['p5']:.3f}-{real['p95']:.3f}; "
        "in tiers " + ", ".join(f"{t} {m['real_tiers'][t]}" for t in ("below", *D.TIERS)),
        "  bands: " + ", ".join(f"{t} [{bands[t][0]:g}, {bands[t][1]:g})" for t in D.TIERS),
        f"  matched severity (mean {m['metric']} equal to the real mean): "
        + ("none: the type never gets that degraded" if m["severity"] is None else f"{m['severity']:.3f}"),
        "  severity ranges: " + ", ".join(f"{t} {curve.range_text(t)}" for t in reversed(D.TIERS)),
    ]
    lines += [f"  note: {n}" for n in curve.notes]
    return "\n".join(lines)
