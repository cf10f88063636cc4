"""What a build makes: `BuildConfig`, checked once, before any work.

A config is data: every field is recorded in the build record, and two
builds with equal configs (and the same source files and calibration) write
the same bytes.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import degradations as D
from shards.codec import Codec, parse_codec
from shards.sources import DEFAULT_MAX_PIXELS

# The five tasks of Perceive-IR's all-in-one setting.
DEFAULT_TYPES = ("noise", "haze", "rain", "blur", "low_light")
LAYOUTS = ("random", "grid")
# bands: every tier a band of the measured score (the same for every type). paper: Perceive-IR's
# tiers, hq the clean patch, lq the patch degraded at a severity drawn over the type's span, and
# mq added later by `perceive-ir render-medium` (a restorer's output on lq).
TIER_SCHEMES = ("bands", "paper")
# Severity maps a build may store (BuildConfig.maps): a generator of degradations.severity_maps, or
# "mixed", one drawn per image among them.
MAP_CHOICES = ("smooth", "gradient", "depth", "ellipse", "regions")
MIN_PATCH = 16  # px a side: scoring needs 11 (D.SCORE_MIN_SIDE), most types 16 or more
SAFE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def parse_splits(text: str) -> tuple[tuple[str, float], ...]:
    """`train=0.9,val=0.1` -> (("train", 0.9), ("val", 0.1)); fractions must sum to 1."""
    splits = []
    for part in text.split(","):
        name, sep, frac = part.strip().partition("=")
        if not sep:
            raise D.UserError(f"--splits wants NAME=FRACTION pairs such as train=0.9,val=0.1; got {part!r}")
        try:
            splits.append((name.strip(), float(frac)))
        except ValueError:
            raise D.UserError(f"split fraction {frac!r} is not a number") from None
    return tuple(splits)


@dataclass(frozen=True)
class BuildConfig:
    """Everything that shapes the output of a build, apart from the source files themselves."""

    types: tuple[str, ...] = DEFAULT_TYPES
    patch: int = 256  # square patch side; 0 keeps whole images
    patches_per_image: int = 4
    layout: str = "random"  # random boxes, or an even grid of boxes over the image
    samples_per_shard: int = 256
    splits: tuple[tuple[str, float], ...] = (("train", 0.9), ("val", 0.1))
    codec: str = "png"
    png_level: int = 1  # zlib level; 1 is as small as 3-9 on photos and the fastest (benchmarks/shards.py)
    seed: int = 0
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_tries: int = 8  # severity draws per tier before a sample is given up
    tiers: str = "bands"  # the tier scheme, one of TIER_SCHEMES
    # Severity maps: "" (off, one severity per image), a generator of MAP_CHOICES or "mixed". Each
    # degraded image then varies in space around its searched severity s, from s (1 - c/2) to
    # s (1 + c/2) for map_contrast c, and stores its severity map and measured quality map.
    maps: str = ""
    map_contrast: float = 1.0
    calibration: str | None = field(default=None, compare=False)  # file; None = the shipped one

    def __post_init__(self) -> None:
        types = tuple(self.types)
        if not types:
            raise D.UserError("give at least one degradation type")
        canonical = []
        for name in types:
            D.get(name)  # UserError naming the available types when unknown
            canonical.append(D.canonical_name(name))
        if len(set(canonical)) != len(canonical):
            raise D.UserError(f"a type is named twice in {', '.join(types)}")
        object.__setattr__(self, "types", tuple(canonical))
        object.__setattr__(self, "splits", tuple((str(n), float(f)) for n, f in self.splits))
        self._check()

    def _check(self) -> None:
        _int_at_least("patch", self.patch, 0)
        _int_at_least("patches_per_image", self.patches_per_image, 1)
        _int_at_least("samples_per_shard", self.samples_per_shard, 1)
        _int_at_least("seed", self.seed, 0)
        _int_at_least("max_pixels", self.max_pixels, 1)
        _int_at_least("max_tries", self.max_tries, 1)
        if self.patch == 0 and self.patches_per_image != 1:
            raise D.UserError("--patch 0 keeps whole images: one sample per image, so --patches-per-image must be 1")
        if 0 < self.patch < MIN_PATCH:
            raise D.UserError(f"--patch {self.patch} is too small to score (SSIM needs 11 px, most types 16 or more)")
        too_small = [t for t in self.types if 0 < self.patch < D.get(t).min_size]
        if too_small:
            need = max(D.get(t).min_size for t in too_small)
            raise D.UserError(f"--patch {self.patch} is smaller than {', '.join(too_small)} needs ({need} px)")
        if self.tiers not in TIER_SCHEMES:
            raise D.UserError(f"unknown tier scheme {self.tiers!r}; choose {' or '.join(TIER_SCHEMES)}")
        if self.maps and self.maps not in (*MAP_CHOICES, "mixed"):
            raise D.UserError(f"unknown --maps {self.maps!r}; choose one of {', '.join(MAP_CHOICES)} or mixed")
        if isinstance(self.map_contrast, bool) or not isinstance(self.map_contrast, (int, float)) or not 0 <= self.map_contrast <= 2:
            raise D.UserError(f"--map-contrast must be a number in [0, 2], got {self.map_contrast!r}")
        if self.layout not in LAYOUTS:
            raise D.UserError(f"unknown layout {self.layout!r}; choose {' or '.join(LAYOUTS)}")
        if not 0 <= self.png_level <= 9:
            raise D.UserError(f"--png-level must be 0-9, got {self.png_level}")
        names = [n for n, _ in self.splits]
        if not names or len(set(names)) != len(names):
            raise D.UserError(f"split names must be given once each, got {names}")
        for name, frac in self.splits:
            if not SAFE_NAME.match(name):
                raise D.UserError(f"split name {name!r} may hold only letters, digits, '_' and '-'")
            if not (0 < frac <= 1) or math.isnan(frac):
                raise D.UserError(f"split {name} has fraction {frac}; each must be in (0, 1]")
        if abs(sum(f for _, f in self.splits) - 1.0) > 1e-6:
            raise D.UserError(f"split fractions must sum to 1, got {sum(f for _, f in self.splits):g}")
        self.codec_spec  # noqa: B018  (parses, raising on a bad --codec)

    @property
    def codec_spec(self) -> Codec:
        return parse_codec(self.codec, png_level=self.png_level)

    def load_calibration(self) -> D.Calibration:
        return D.load_calibration(self.calibration) if self.calibration else D.default_calibration()

    def to_dict(self) -> dict[str, Any]:
        """The fields that decide the output bytes, as JSON (the calibration file's content is recorded apart)."""
        d = asdict(self)
        d.pop("calibration")
        d["types"] = list(self.types)
        d["splits"] = {name: frac for name, frac in self.splits}
        d["codec"] = self.codec_spec.to_dict()
        d.pop("png_level")  # part of the codec record
        if not self.maps:  # a build without maps keeps the record it had before maps existed
            d.pop("maps")
            d.pop("map_contrast")
        return d


def _int_at_least(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise D.UserError(f"{name} must be an integer >= {low}, got {value!r}")
