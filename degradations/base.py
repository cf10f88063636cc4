"""The Degradation interface: draw parameters in one step, apply them in another.

As albumentations splits `get_params` from `apply`, a degradation draws all
concrete physical parameters from a severity in `params()`, and `apply()`
uses only those parameters plus a generator for the pixel-level randomness
(noise maps, streak positions, trajectories), which the recipe's seed
regenerates. So a recipe is a few numbers, never a pixel array.
"""

from __future__ import annotations

from collections.abc import Mapping
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
