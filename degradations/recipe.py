"""`degrade`, `replay` and the Recipe that links them.

A recipe is what a human or a manifest needs to make the same bytes again:
the type, the severity, every drawn parameter, the seed and the engine
version. Pixel-level randomness is regenerated from the seed: each component
of a chain gets two generators from SeedSequence(seed, index, type), one for
drawing parameters and one for `apply`, so replaying from the recorded
parameters never has to redo the parameter draws.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from degradations.base import Degradation
from degradations.errors import UserError
from degradations.image import as_rgb_uint8, check_size
from degradations.registry import Composite, get
from degradations.seeds import seed_sequence

# Bump when a type's output bytes change for the same recipe.
ENGINE_VERSION = "2"  # 2: blur and rain kernels larger than 11x11 applied through an FFT


@dataclass(frozen=True)
class Step:
    """One component of a recipe: a type, its severity (None for explicit params) and params."""

    type: str
    severity: float | None
    params: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "severity": self.severity, "params": _jsonable(self.params)}


@dataclass(frozen=True)
class Recipe:
    """A replayable record of one degradation (or chain) of one image."""

    type: str
    severity: float | None
    seed: int
    steps: tuple[Step, ...]
    engine_version: str = ENGINE_VERSION

    @property
    def params(self) -> dict[str, Any]:
        """Params of a single type; for a chain, params per component type."""
        if len(self.steps) == 1:
            return self.steps[0].params
        return {s.type: s.params for s in self.steps}

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type, "severity": self.severity}
        if len(self.steps) == 1:
            d["params"] = _jsonable(self.steps[0].params)
        else:
            d["components"] = [s.to_dict() for s in self.steps]
        d["seed"] = self.seed
        d["engine_version"] = self.engine_version
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Recipe:
        missing = [k for k in ("type", "seed", "engine_version") if k not in d]
        if missing:
            raise UserError(f"recipe is missing {missing}: {dict(d)}")
        if "components" not in d and "params" not in d:
            raise UserError("recipe needs 'params' (one type) or 'components' (a chain)")
        try:
            if "components" in d:
                steps = tuple(Step(c["type"], c.get("severity"), dict(c["params"])) for c in d["components"])
            else:
                steps = (Step(d["type"], d.get("severity"), dict(d["params"])),)
            return cls(d["type"], d.get("severity"), int(d["seed"]), steps, str(d["engine_version"]))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise UserError(f"not a recipe ({type(err).__name__}: {err}): {dict(d)}") from None


def _jsonable(value: Any) -> Any:
    """Plain JSON types only: numpy scalars become Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _streams(seed: int, index: int, name: str) -> tuple[np.random.Generator, np.random.Generator]:
    params_ss, apply_ss = seed_sequence(seed, index, name).spawn(2)
    return np.random.default_rng(params_ss), np.random.default_rng(apply_ss)


def _check_severity(severity: Any) -> float:
    if isinstance(severity, bool) or not isinstance(severity, (int, float, np.floating, np.integer)):
        raise UserError(f"severity must be a number in [0, 1], got {severity!r}")
    s = float(severity)
    if not (0.0 <= s <= 1.0) or math.isnan(s):
        raise UserError(f"severity must be in [0, 1], got {severity}")
    return s


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _apply_step(kind: Degradation, image: np.ndarray, step: Step, rng: np.random.Generator) -> np.ndarray:
    if step.severity == 0.0:
        return image.copy()  # severity 0 is the clean image, exactly
    out = kind.apply(image, step.params, rng)
    if not (isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == image.shape):
        got = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
        raise RuntimeError(f"degradation {kind.name!r} returned {got}; expected uint8 {image.shape}")
    return out


def _components(kind: Degradation | Composite) -> tuple[Degradation, ...]:
    return kind.components if isinstance(kind, Composite) else (kind,)


def degrade(
    image: np.ndarray,
    name: str,
    severity: float | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, Recipe]:
    """Degrade `image` by type `name` (a composite may be `a+b`).

    Give exactly one of `severity` (in [0, 1]; parameters are drawn) and
    `params` (explicit physical parameters, missing keys take documented
    defaults; for a composite, a dict of params per component type).
    Returns the degraded uint8 RGB image and the recipe that replays it.
    """
    if (severity is None) == (params is None):
        raise UserError("give exactly one of severity and params")
    image = as_rgb_uint8(image)
    seed = _check_seed(seed)
    kind = get(name)
    components = _components(kind)
    check_size(image, kind.min_size, kind.name)
    if severity is not None:
        severity = _check_severity(severity)
    elif len(components) > 1:
        if not isinstance(params, Mapping) or set(params) - {c.name for c in components}:
            raise UserError(f"params for composite {kind.name} must be a dict keyed by its types {[c.name for c in components]}")

    out, steps = image, []
    for i, comp in enumerate(components):
        params_rng, apply_rng = _streams(seed, i, comp.name)
        if severity is not None:
            p = comp.params(params_rng, severity)
        else:
            p = comp.resolve(params if len(components) == 1 else params.get(comp.name, {}))
        step = Step(comp.name, severity, _jsonable(p))
        out = _apply_step(comp, out, step, apply_rng)
        steps.append(step)
    return out, Recipe(kind.name, severity, seed, tuple(steps))


def replay(image: np.ndarray, recipe: Recipe | Mapping[str, Any]) -> np.ndarray:
    """Apply `recipe` to the clean `image` again: the same bytes as `degrade` gave."""
    if not isinstance(recipe, Recipe):
        recipe = Recipe.from_dict(recipe)
    if recipe.engine_version != ENGINE_VERSION:
        warnings.warn(
            f"recipe was made by engine version {recipe.engine_version}, this is {ENGINE_VERSION}: "
            "the output may differ",
            stacklevel=2,
        )
    image = as_rgb_uint8(image)
    out = image
    for i, step in enumerate(recipe.steps):
        comp = get(step.type)
        if not isinstance(comp, Degradation):
            raise UserError(f"recipe step type must be a single type, got {step.type!r}")
        check_size(image, comp.min_size, comp.name)
        params_rng, apply_rng = _streams(recipe.seed, i, comp.name)
        params = comp.resolve(step.params)
        edited = step.severity == 0.0 and params != comp.resolve(_jsonable(comp.params(params_rng, 0.0)))
        if edited and recipe.engine_version == ENGINE_VERSION:  # another engine may draw other severity-0 params
            # Severity 0 replays the clean image whatever the params say: an edited recipe would
            # silently lose its edit.
            raise UserError(
                f"recipe step {i} ({step.type}) has severity 0, which is the clean image, but params {step.params} "
                "that severity 0 does not draw; set its severity to null to apply these params"
            )
        out = _apply_step(comp, out, Step(step.type, step.severity, params), apply_rng)
    return out
