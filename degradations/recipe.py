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

from degradations import severity_maps
from degradations.base import MAP_LEVELS, Degradation, ParamLevels, fork
from degradations.errors import UserError
from degradations.image import as_rgb_uint8, check_size
from degradations.registry import Composite, canonical_name, get
from degradations.seeds import derive_seed, rng, seed_sequence

# Bump when a type's output bytes change for the same recipe.
# 2: blur and rain kernels larger than 11x11 applied through an FFT. 3: particles drawn by count and
# position, rain streaks rasterised and summed, the screen blend in 8-bit steps, Gaussian blur by
# sepFilter2D, large blur kernels by cv2.filter2D (issue 17's speed-ups; the statistics are kept); the
# defocus disk's rim anti-aliased as documented (OpenCV had drawn it hard on a float canvas).
ENGINE_VERSION = "3"


@dataclass(frozen=True)
class Step:
    """One component of a recipe: a type, its severity (None for explicit params) and params.

    A step with a severity map has the map's spec as its severity (a dict, see
    degradations.severity_maps) and, as params, the list of params drawn at each of MAP_LEVELS.
    """

    type: str
    severity: float | dict[str, Any] | None
    params: dict[str, Any] | list[dict[str, Any]]

    @property
    def is_map(self) -> bool:
        return isinstance(self.severity, Mapping)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "severity": self.severity, "params": _jsonable(self.params)}


@dataclass(frozen=True)
class Recipe:
    """A replayable record of one degradation (or chain) of one image."""

    type: str
    severity: float | dict[str, Any] | None
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
                steps = tuple(Step(c["type"], c.get("severity"), _params_of(c)) for c in d["components"])
            else:
                steps = (Step(d["type"], d.get("severity"), _params_of(d)),)
            return cls(d["type"], d.get("severity"), int(d["seed"]), steps, str(d["engine_version"]))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise UserError(f"not a recipe ({type(err).__name__}: {err}): {dict(d)}") from None


def _params_of(d: Mapping[str, Any]) -> dict[str, Any] | list[dict[str, Any]]:
    """A step's params: a dict, or for a severity map one dict per MAP_LEVELS level."""
    if isinstance(d.get("severity"), Mapping):
        levels = [dict(p) for p in d["params"]]
        if len(levels) != len(MAP_LEVELS):
            raise ValueError(f"a map step has params for {len(MAP_LEVELS)} levels, got {len(levels)}")
        return levels
    return dict(d["params"])


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


def _apply_step(
    kind: Degradation, image: np.ndarray, step: Step, rng: np.random.Generator, severity_map: np.ndarray | None = None,
) -> np.ndarray:
    if step.severity == 0.0:
        return image.copy()  # severity 0 is the clean image, exactly
    if step.is_map:
        out = kind.apply_map(image, ParamLevels(tuple(step.params)), severity_map, rng)
    else:
        out = kind.apply(image, step.params, rng)
    if not (isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == image.shape):
        got = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
        raise RuntimeError(f"degradation {kind.name!r} returned {got}; expected uint8 {image.shape}")
    return out


def _components(kind: Degradation | Composite) -> tuple[Degradation, ...]:
    return kind.components if isinstance(kind, Composite) else (kind,)


Severity = float | str | Mapping[str, Any] | np.ndarray


def degrade(
    image: np.ndarray,
    name: str | Mapping[str, Severity],
    severity: Severity | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, Recipe]:
    """Degrade `image` by type `name` (a composite may be `a+b`).

    Give exactly one of `severity` and `params` (explicit physical parameters, missing keys
    take documented defaults; for a composite, a dict of params per component type). A
    severity is a number in [0, 1] (parameters are drawn), or a severity map: an H x W array
    in [0, 1], a generator name or a spec dict (degradations.severity_maps), which each type
    honours per pixel with its physical meaning. `name` may also map types to their own
    severities, `{"haze": spec_a, "rain": spec_b}`: types in different regions, applied in
    the canonical physical order.
    Returns the degraded uint8 RGB image and the recipe that replays it.
    """
    image = as_rgb_uint8(image)
    seed = _check_seed(seed)
    if isinstance(name, Mapping):
        if severity is not None or params is not None:
            raise UserError("a dict of types carries each type's severity: give neither severity nor params")
        if not name:
            raise UserError("give at least one type in the dict of types and severities")
        order = canonical_name("+".join(name)).split("+")
        severities = [name[t] for t in order]
        kind = get("+".join(order))
    else:
        if (severity is None) == (params is None):
            raise UserError("give exactly one of severity and params")
        kind = get(name)
        severities = [severity] * len(_components(kind))
    components = _components(kind)
    check_size(image, kind.min_size, kind.name)
    if params is not None and len(components) > 1:
        if not isinstance(params, Mapping) or set(params) - {c.name for c in components}:
            raise UserError(f"params for composite {kind.name} must be a dict keyed by its types {[c.name for c in components]}")

    out, steps = image, []
    for i, (comp, level) in enumerate(zip(components, severities)):
        params_rng, apply_rng = _streams(seed, i, comp.name)
        severity_map = None
        if params is not None:
            step = Step(comp.name, None, _jsonable(comp.resolve(params if len(components) == 1 else params.get(comp.name, {}))))
        elif severity_maps.is_map(level):
            spec, severity_map = _map_of(level, image, seed)
            levels = [_jsonable(comp.params(fork(params_rng), s)) for s in MAP_LEVELS]
            step = Step(comp.name, spec, levels)
        else:
            step = scalar_step(comp, params_rng, _check_severity(level))
        out = _apply_step(comp, out, step, apply_rng, severity_map)
        steps.append(step)
    same = len({repr(s.severity) for s in steps}) == 1
    return out, Recipe(kind.name, steps[0].severity if same else None, seed, tuple(steps))


def scalar_step(kind: Degradation, params_rng: np.random.Generator, severity: float) -> Step:
    """The step of one component at a checked scalar severity, its params drawn from the component's
    params generator: what `degrade` records, and the batched torch engine too."""
    return Step(kind.name, severity, _jsonable(kind.params(params_rng, severity)))


def _map_of(severity: Any, image: np.ndarray, seed: int) -> tuple[dict[str, Any], np.ndarray]:
    """(the complete spec, the rendered map) of a map severity. Unset spec parameters and the map's
    seed come from the recipe's seed alone, not the component: components that name the same
    generator get the same map (complementary parts of one segmentation, for regions)."""
    if isinstance(severity, np.ndarray):
        return severity_maps.array_spec(severity, image.shape[:2])
    spec = severity_maps.resolve_spec(severity, rng(seed, "severity-map"), derive_seed(seed, "severity-map"))
    return _jsonable(spec), severity_maps.render(spec, image)


def severity_map_of(image: np.ndarray, step: Step, arrays: Mapping[str, np.ndarray] | None = None) -> np.ndarray | None:
    """The H x W severity map a recipe step applied to `image` (its clean input), None for a scalar step."""
    if not step.is_map:
        return None
    return severity_maps.render(step.severity, as_rgb_uint8(image), (arrays or {}).get(step.type))


def replay(image: np.ndarray, recipe: Recipe | Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """Apply `recipe` to the clean `image` again: the same bytes as `degrade` gave.

    `arrays`: for steps whose severity map was a caller's array, that array by type name.
    """
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
        if step.is_map:
            # Maps are rendered on the clean image (depth, segments), as degrade does.
            severity_map = severity_map_of(image, step, arrays)
            levels = [comp.resolve(p) for p in step.params]
            out = _apply_step(comp, out, Step(step.type, step.severity, levels), apply_rng, severity_map)
            continue
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
