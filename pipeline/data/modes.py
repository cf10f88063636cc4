"""Loader modes: what one batch entry holds, one class per mode.

A mode names the members it reads from a sample, may draw one value per
batch position (`tiers` draws the tier each position shows), and turns the
decoded, cropped images and the catalog's labels into the fields of a batch
entry. Fields are collated by kind (images to B x 3 x H x W float32, numbers
to tensors, strings to lists), so a new mode is one class registered here.

Every draw comes from D.rng(seed, epoch, ..., key, repeat): a batch is
reproducible from (seed, epoch), whatever the number of workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

import degradations as D
from degradations.torch_engine import batch_score, tier_index
from pipeline.data.catalog import Catalog
from pipeline.data.epoch_plan import EpochPlan
from shards.format import MAP_KINDS


@dataclass(frozen=True)
class Entry:
    """Where a batch entry comes from: its sample, and the (epoch, repeat) it is drawn for."""

    catalog: Catalog
    sid: int
    key: str
    type: str
    seed: int
    epoch: int
    repeat: int

    def labels(self, tier: str, suffix: str = "") -> dict[str, float]:
        """The stored severity and score of the sample's `tier` image, as `severity{suffix}`, `score{suffix}`."""
        i = D.TIERS.index(tier)
        return {f"severity{suffix}": float(self.catalog.severity[self.sid, i]), f"score{suffix}": float(self.catalog.score[self.sid, i])}


class Mode:
    """A loader mode; see the module docstring."""

    name: ClassVar[str]
    reads: ClassVar[tuple[str, ...]]  # the member kinds read from the tar

    @classmethod
    def create(cls, catalog: Catalog, types: Sequence[str]) -> Mode:
        return cls()

    def min_side(self, types: Sequence[str]) -> int:
        """The smallest crop side this mode can work on for `types`."""
        return 1

    def draws(self, seed: int, plan: EpochPlan, batch: int) -> np.ndarray | None:
        """One value per position of `batch`, handed to `decodes` and `make`; None when the mode draws nothing."""
        return None

    def decodes(self, draw: int | None) -> tuple[str, ...]:
        """The members to decode for one entry."""
        return self.reads

    def make(self, entry: Entry, images: dict[str, np.ndarray], draw: int | None) -> dict[str, Any]:
        """The entry's fields besides key and type."""
        raise NotImplementedError


MODES: dict[str, type[Mode]] = {}


def register_mode(cls: type[Mode]) -> type[Mode]:
    MODES[cls.name] = cls
    return cls


def mode_class(name: str) -> type[Mode]:
    """The registered mode `name`; UserError listing the modes when there is none."""
    if name not in MODES:
        raise D.UserError(f"unknown mode {name!r}; modes are {', '.join(MODES)}")
    return MODES[name]


@register_mode
class Pairs(Mode):
    """lq and hq images; the labels of lq."""

    name = "pairs"
    reads = ("lq", "hq")

    def make(self, entry: Entry, images: dict[str, np.ndarray], draw: int | None) -> dict[str, Any]:
        return {**_degraded(images), **entry.labels("lq")}


@register_mode
class Triplets(Mode):
    """lq, mq and hq images; the labels of lq, and of mq as severity_mq and score_mq."""

    name = "triplets"
    reads = D.TIERS

    def make(self, entry: Entry, images: dict[str, np.ndarray], draw: int | None) -> dict[str, Any]:
        return {**_degraded(images), **entry.labels("lq"), **entry.labels("mq", "_mq")}


@register_mode
class Tiers(Mode):
    """One image of a drawn tier and its labels; `tier` is its class (D.TIERS index). Every tier
    is shown equally often in a batch, as far as the batch size allows."""

    name = "tiers"
    reads = D.TIERS

    def draws(self, seed: int, plan: EpochPlan, batch: int) -> np.ndarray:
        rng = D.rng(seed, plan.epoch, plan.rank, "tiers", batch)
        return rng.permutation(np.resize(np.arange(len(D.TIERS)), plan.batch_size))

    def decodes(self, draw: int | None) -> tuple[str, ...]:
        return (D.TIERS[int(draw)],)  # type: ignore[arg-type]  (draws gives one per position)

    def make(self, entry: Entry, images: dict[str, np.ndarray], draw: int | None) -> dict[str, Any]:
        tier = D.TIERS[int(draw)]  # type: ignore[arg-type]
        maps = {kind: images[f"{tier}_{kind}"] for kind in MAP_KINDS if f"{tier}_{kind}" in images}
        return {"image": images[tier], **maps, **entry.labels(tier), "tier": int(draw)}  # type: ignore[arg-type]


def _degraded(images: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The decoded images and maps without hq's maps, which are constant (severity 0, quality 1)."""
    return {name: image for name, image in images.items() if not name.startswith("hq_")}


@register_mode
@dataclass(frozen=True)
class Synth(Mode):
    """The clean image degraded afresh into lq: a degraded tier drawn, a severity drawn in its
    calibrated range, the result scored and graded with the build's metric and bands, so
    synthetic tiers mean what stored ones do.

    With `on_device` (make_loader(..., synth_device=True)) the workers only draw: an entry holds hq,
    its severity and `synth_seed`, and `finish` degrades the collated batch with the batched torch
    engine on the training step's device, then scores and grades it there.
    """

    name: ClassVar[str] = "synth"
    reads: ClassVar[tuple[str, ...]] = ("hq",)

    ranges: dict[str, tuple[tuple[str, float, float], ...]]  # type -> (tier, lo, hi) to draw from
    metric: str
    bands: dict[str, dict[str, tuple[float, float]]]  # type -> tier -> score band
    on_device: bool = False

    @classmethod
    def create(cls, catalog: Catalog, types: Sequence[str]) -> Synth:
        calibration = catalog.calibration or D.default_calibration()
        ranges = {}
        for name in types:
            # Mildest first: the draw picks an index into this order.
            reach = tuple((t, *r) for t in reversed(D.DEGRADED_TIERS) if (r := calibration.interval(name, t)) is not None)
            if not reach:
                raise D.UserError(f"synth mode: type {name!r} reaches none of the tiers {', '.join(D.DEGRADED_TIERS)}")
            ranges[name] = reach
        return cls(ranges, calibration.metric, {t: calibration.bands_for(t) for t in types})

    def min_side(self, types: Sequence[str]) -> int:
        return max(D.get(t).min_size for t in types)

    def make(self, entry: Entry, images: dict[str, np.ndarray], draw: int | None) -> dict[str, Any]:
        rng = D.rng(entry.seed, entry.epoch, "synth", entry.key, entry.repeat)
        choices = self.ranges[entry.type]
        _, lo, hi = choices[int(rng.integers(len(choices)))]
        severity = float(rng.uniform(lo, hi))
        clean = np.ascontiguousarray(images["hq"])
        seed = D.derive_seed(entry.seed, entry.epoch, "synth", entry.key, entry.repeat)
        if self.on_device:
            return {"hq": clean, "severity": severity, "synth_seed": seed}
        degraded, _ = D.degrade(clean, entry.type, severity, seed=seed)
        score = D.quality_reference(self.metric, clean)(degraded)
        tier = D.tier_of(score, self.metric, self.bands[entry.type])
        return {"lq": degraded, "hq": clean, "severity": severity, "score": score, "tier": D.TIERS.index(tier)}

    def finish(self, batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
        """An on-device batch made whole: lq degraded from hq by D.degrade_batch on `device` (one call
        per type in the batch), scored against hq and graded into `tier` as `make` does."""
        hq = batch["hq"].to(device)
        lq = torch.empty_like(hq)
        score = torch.empty(len(hq), device=device)
        tier = torch.empty(len(hq), dtype=torch.int64, device=device)
        seeds = batch["synth_seed"].tolist()
        severity = batch["severity"].tolist()
        for name in sorted(set(batch["type"])):
            index = [n for n, t in enumerate(batch["type"]) if t == name]
            clean = hq[index]
            degraded, _ = D.degrade_batch(clean, name, [severity[n] for n in index], [seeds[n] for n in index])
            scores = batch_score(self.metric, clean, degraded)
            lq[index], score[index], tier[index] = degraded, scores, tier_index(scores, self.bands[name])
        return {**batch, "hq": hq, "lq": lq, "score": score, "tier": tier}
