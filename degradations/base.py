"""The Degradation interface: draw parameters in one step, apply them in another.

As albumentations splits `get_params` from `apply`, a degradation draws all
concrete physical parameters from a severity in `params()`, and `apply()`
uses only those parameters plus a generator for the pixel-level randomness
(noise maps, streak positions, trajectories), which the recipe's seed
regenerates. So a recipe is a few numbers, never a pixel array.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from degradations.errors import UserError


class Degradation:
    """Base class of every degradation type.

    Subclasses set `name`, `defaults` (the documented value of every key a
    caller may leave out of explicit params), `required` (keys without a
    default) and `min_size` (the smallest image side the kernels accept), and
    implement `params()` and `apply()`.
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[Mapping[str, Any]] = {}
    required: ClassVar[tuple[str, ...]] = ()
    min_size: ClassVar[int] = 1

    def params(self, rng: np.random.Generator, severity: float) -> dict[str, Any]:
        """Draw every physical parameter for `severity` in [0, 1]."""
        raise NotImplementedError

    def apply(self, image: np.ndarray, params: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
        """Degrade a uint8 H x W x 3 RGB image with complete `params`."""
        raise NotImplementedError

    def apply_map(self, image: np.ndarray, levels: ParamLevels, severity_map: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Degrade with a per-pixel severity: `levels` holds the params drawn at each of
        MAP_LEVELS (with the same random choices), `severity_map` is H x W float32 in [0, 1].

        This default works for any type, plugins included: the type is applied at each level
        the map reaches, every level with the same pixel randomness, and the results are
        blended per pixel by the map (a bank of kernels for blur, of encodes for JPEG). Types
        whose physics has a per-pixel parameter (noise sigma, haze beta, exposure, rain
        density) override it with the exact per-pixel model, reading `levels.at(key, map)`.
        """
        return blend_levels(self, image, levels, severity_map, rng)

    def resolve(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Complete explicit `params` with defaults; reject unknown and missing keys."""
        if not isinstance(params, Mapping):
            raise UserError(f"params for {self.name} must be a dict, got {type(params).__name__}")
        defaults, required = self.schema(params)
        known = set(defaults) | set(required)
        unknown = sorted(set(params) - known)
        if unknown:
            raise UserError(f"unknown params for {self.name}: {unknown}; known: {sorted(known)}")
        missing = [k for k in required if k not in params]
        if missing:
            raise UserError(f"params for {self.name} need {missing} (no default)")
        out = dict(defaults)
        out.update(params)
        self.check(out)
        return out

    def schema(self, params: Mapping[str, Any]) -> tuple[Mapping[str, Any], tuple[str, ...]]:
        """(defaults, required keys) for these params; types with variants
        (noise models, blur kinds) override it to pick by the variant key."""
        return self.defaults, self.required

    def check(self, params: Mapping[str, Any]) -> None:
        """Validate complete params; override to add range checks."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def lerp(lo: float, hi: float, t: float) -> float:
    """Linear interpolation, the severity-to-parameter map most types use."""
    return float(lo + (hi - lo) * t)


def require_range(name: str, key: str, value: float, lo: float, hi: float) -> None:
    # A number, not a string that float() would take ("0.5") nor None: recipes are data, checked as such.
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise UserError(f"{name} param {key}={value!r} must be a number in [{lo}, {hi}], not {type(value).__name__}")
    if not (lo <= float(value) <= hi):
        raise UserError(f"{name} param {key}={value} is outside [{lo}, {hi}]")


def require_choice(name: str, key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"{name} param {key}={value!r} must be one of {list(choices)}")


# The severities a map's params are drawn at; a per-pixel parameter interpolates between them.
MAP_LEVELS = tuple(k / 8 for k in range(9))


@dataclass(frozen=True)
class ParamLevels:
    """A type's params drawn at each of MAP_LEVELS from the same generator state: the random
    choices (blur kind, noise model, airlight) agree, the severity-driven values differ."""

    params: tuple[dict[str, Any], ...]
    severities: tuple[float, ...] = MAP_LEVELS

    @property
    def top(self) -> dict[str, Any]:
        """The params at severity 1: where a type takes a non-numeric choice from."""
        return self.params[-1]

    def at(self, key: str, severity_map: np.ndarray) -> np.ndarray:
        """Param `key` per pixel, H x W float32: piecewise linear in severity between the levels."""
        values = [float(p[key]) for p in self.params]
        return np.interp(severity_map, self.severities, values).astype(np.float32)


def fork(rng: np.random.Generator) -> np.random.Generator:
    """An independent generator in `rng`'s current state: the same draws again."""
    copy = np.random.Generator(type(rng.bit_generator)())
    copy.bit_generator.state = rng.bit_generator.state
    return copy


def blend_levels(
    kind: Degradation, image: np.ndarray, levels: ParamLevels, severity_map: np.ndarray, rng: np.random.Generator,
) -> np.ndarray:
    """The generic map: `kind` applied at each level the map touches, blended by hat weights."""
    position = severity_map * np.float32(len(levels.severities) - 1)
    out = np.zeros(image.shape, np.float32)
    for k in range(len(levels.severities)):
        weight = np.clip(1.0 - np.abs(position - np.float32(k)), 0.0, 1.0)
        if not weight.any():
            continue  # a level no pixel is near: not computed
        level = image if levels.severities[k] == 0 else kind.apply(image, levels.params[k], fork(rng))
        out += weight[..., None] * level
    return np.clip(np.rint(out, out=out), 0, 255, out=out).astype(np.uint8)
