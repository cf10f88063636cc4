"""From a sample's member bytes to batch tensors, per loader mode.

Augmentation draws come from D.rng(seed, epoch, "crop", key, repeat): a
sample gets the same crop box and flips for every tier it shows (aligned
lq / mq / hq), the same on every rank and worker, and a new one each epoch.
`synth` draws its tier, severity and degradation seed the same way, so a
synthetic batch is reproducible from (seed, epoch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import get_worker_info

import degradations as D
from pipeline.catalog import Catalog
from shards import decode

MODES = ("pairs", "triplets", "tiers", "synth")
# The member suffixes each mode reads; `tiers` reads all three and decodes the one drawn.
MODE_TIERS = {"pairs": ("lq", "hq"), "triplets": ("lq", "mq", "hq"), "tiers": D.TIERS, "synth": ("hq",)}
SYNTH_TIERS = ("mq", "lq")  # the bands synth draws severities from


@dataclass(frozen=True)
class Sample:
    """One batch entry: images (H x W x 3 uint8, possibly strided views) and labels."""

    key: str
    type: str
    images: dict[str, np.ndarray]
    severity: float
    score: float
    tier: int = -1  # tiers and synth modes
    severity_mq: float = float("nan")  # triplets mode
    score_mq: float = float("nan")


@dataclass(frozen=True)
class SampleMaker:
    """Decodes, crops, flips (and in synth mode degrades) one sample; pure given its inputs."""

    catalog: Catalog
    mode: str
    seed: int
    crop: int | None  # square side; None keeps the whole patch
    augment: bool  # random box and flips; False: centre box, no flips
    synth: SynthScheme | None  # synth mode: what to draw and how to score it

    def make(self, sid: int, members: dict[str, bytes], epoch: int, repeat: int, tier: int = -1) -> Sample:
        """`tier` is the drawn tier in `tiers` mode. Raises ValueError for missing or undecodable members."""
        catalog = self.catalog
        key = str(catalog.keys[sid])
        type_name = catalog.type_of(sid)
        names = (D.TIERS[tier],) if self.mode == "tiers" else MODE_TIERS[self.mode]
        missing = [n for n in names if n not in members]
        if missing:
            raise ValueError(f"sample {key} has no {'/'.join(missing)} member")
        decoded = {n: decode(members[n], view=True) for n in names}
        shapes = {im.shape for im in decoded.values()}
        if len(shapes) > 1:
            raise ValueError(f"sample {key}: tiers differ in size {sorted(shapes)}")
        window = self._window(D.rng(self.seed, epoch, "crop", key, repeat), *next(iter(shapes))[:2])
        images = {n: _cut(im, window) for n, im in decoded.items()}
        sev, sco = catalog.severity[sid], catalog.score[sid]
        if self.mode == "tiers":
            return Sample(key, type_name, {"image": images[D.TIERS[tier]]}, float(sev[tier]), float(sco[tier]), tier)
        if self.mode == "synth":
            return self._synth(key, type_name, images["hq"], epoch, repeat)
        lq, mq = D.TIERS.index("lq"), D.TIERS.index("mq")
        extra = {"severity_mq": float(sev[mq]), "score_mq": float(sco[mq])} if self.mode == "triplets" else {}
        return Sample(key, type_name, images, float(sev[lq]), float(sco[lq]), **extra)

    def _window(self, rng: np.random.Generator, h: int, w: int) -> tuple[int, int, int, int, bool, bool]:
        """(y, x, height, width, flip left-right, flip up-down)."""
        ch, cw = (h, w) if self.crop is None else (self.crop, self.crop)
        if ch > h or cw > w:
            raise ValueError(f"crop {self.crop} is larger than the stored {w}x{h} image")
        if not self.augment:
            return (h - ch) // 2, (w - cw) // 2, ch, cw, False, False
        y, x, flips = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1)), rng.integers(2, size=2)
        return y, x, ch, cw, bool(flips[0]), bool(flips[1])

    def _synth(self, key: str, type_name: str, clean: np.ndarray, epoch: int, repeat: int) -> Sample:
        """The clean crop degraded afresh: a band drawn, a severity drawn in its calibrated range."""
        assert self.synth is not None, "synth mode needs a SynthScheme"
        rng = D.rng(self.seed, epoch, "synth", key, repeat)
        ranges = self.synth.ranges[type_name]
        _, lo, hi = ranges[int(rng.integers(len(ranges)))]
        severity = float(rng.uniform(lo, hi))
        clean = np.ascontiguousarray(clean)
        degraded, _ = D.degrade(clean, type_name, severity, seed=D.derive_seed(self.seed, epoch, "synth", key, repeat))
        score = D.quality_reference(self.synth.metric, clean)(degraded)
        tier = D.tier_of(score, self.synth.metric, self.synth.bands)
        return Sample(key, type_name, {"lq": degraded, "hq": clean}, severity, score, D.TIERS.index(tier))


@dataclass(frozen=True)
class SynthScheme:
    """How synth mode degrades and grades: per type the (tier, lo, hi) severity ranges to draw from,
    and the metric and bands the build was tiered with, so synthetic tiers mean what stored ones do."""

    ranges: dict[str, tuple[tuple[str, float, float], ...]]
    metric: str
    bands: dict[str, tuple[float, float]]


def synth_scheme(types: tuple[str, ...], calibration: Mapping[str, Any] | None) -> SynthScheme:
    """The scheme for `types` from a build's calibration record (dataset.json's "calibration":
    metric, bands, type -> ranges); None falls back to the calibration shipped with the engine."""
    if calibration is None:
        calibration = D.default_calibration().to_dict()
    metric = str(calibration["metric"])
    bands = {t: (float(b[0]), float(b[1])) for t, b in calibration["bands"].items()}
    curves = calibration["types"]
    ranges = {}
    for name in types:
        if name not in curves:
            raise ValueError(f"synth mode: type {name!r} has no calibrated severity ranges (calibrated: {', '.join(sorted(curves))})")
        reach = tuple((t, float(r[0]), float(r[1])) for t in SYNTH_TIERS if (r := curves[name]["ranges"].get(t)) is not None)
        if not reach:
            raise ValueError(f"synth mode: type {name!r} reaches none of the tiers {', '.join(SYNTH_TIERS)}")
        ranges[name] = reach
    return SynthScheme(ranges, metric, bands)


def _cut(image: np.ndarray, window: tuple[int, int, int, int, bool, bool]) -> np.ndarray:
    y, x, h, w, flip_lr, flip_ud = window
    view = image[y : y + h, x : x + w]
    return view[::-1 if flip_ud else 1, ::-1 if flip_lr else 1]


def collate(samples: list[Sample], mode: str) -> dict[str, object]:
    """A dict batch: images B x 3 x H x W float32 in [0, 1], labels as tensors, key and type as lists."""
    batch: dict[str, object] = {name: _to_tensor([s.images[name] for s in samples]) for name in samples[0].images}
    batch["key"] = [s.key for s in samples]
    batch["type"] = [s.type for s in samples]
    batch["severity"] = torch.tensor([s.severity for s in samples], dtype=torch.float32)
    batch["score"] = torch.tensor([s.score for s in samples], dtype=torch.float32)
    if mode in ("tiers", "synth"):
        batch["tier"] = torch.tensor([s.tier for s in samples], dtype=torch.int64)
    if mode == "triplets":
        batch["severity_mq"] = torch.tensor([s.severity_mq for s in samples], dtype=torch.float32)
        batch["score_mq"] = torch.tensor([s.score_mq for s in samples], dtype=torch.float32)
    return batch


def _to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """One pass per image from its (possibly flipped) H x W x 3 view into B x 3 x H x W float32."""
    h, w = images[0].shape[:2]
    batch = _empty((len(images), 3, h, w))
    out = batch.numpy()
    for i, image in enumerate(images):
        np.divide(image.transpose(2, 0, 1), np.float32(255), out=out[i], dtype=np.float32)
    return batch


def _empty(shape: tuple[int, ...]) -> torch.Tensor:
    """A float32 batch. In a DataLoader worker it is made in shared memory, as torch's default_collate
    does, which saves a copy per batch on its way to the main process. torch allocates it either way:
    numpy would advise huge pages, whose zeroing costs more than the conversion."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=torch.float32)
    prototype = torch.empty(0, dtype=torch.float32)
    storage = prototype._typed_storage()._new_shared(math.prod(shape), device="cpu")
    return prototype.new(storage).resize_(shape)
