"""Severity maps: where an image is degraded how much, as a seeded, replayable spec.

A spec is a small dict naming a generator and its parameters, e.g.

    {"map": "smooth", "cells": 3, "octaves": 3, "lo": 0.2, "hi": 0.9, "seed": 41}

`resolve_spec` fills every parameter a caller left out (drawn from a generator the
recipe's seed gives) and `render` turns a complete spec and the clean image into an
H x W float32 map in [lo, hi]: recipes record the spec, never the pixels. A field in
[0, 1] comes from the generator; `lo + (hi - lo) * field` is the severity per pixel.

Generators:

* smooth    multi-scale value noise (a plasma): `cells` across the long side at the coarsest
            octave, `octaves` octaves each twice as fine and `persistence` as strong.
* gradient  a linear ramp across the image at `angle` degrees (0: severity grows left to right).
* depth     the haze type's depth proxy of the clean image (far = 1): haze thickening with
            distance, defocus following the depth of field.
* ellipse   1 inside an ellipse (centre `cx`, `cy`, radii `rx`, `ry` as fractions of the width
            and height, `angle` degrees), falling to 0 over `softness` of its radius.
* regions   a superpixel segmentation of the clean image (SLIC, `segments` of them) split at
            random into `parts` parts; the map is 1 on part `part`, feathered by `feather` px.
            Components of a composite that ask for different parts of the same segmentation get
            complementary masks: types mixed region by region.
* array     a caller's own H x W array, recorded by its SHA-256; replay needs the array again.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import cv2
import numpy as np

from degradations.base import require_range
from degradations.errors import UserError
from degradations.seeds import rng as seeded_rng

Spec = dict[str, Any]
_COMMON = {"lo": 0.0, "hi": 1.0}


def _draw_smooth(r: np.random.Generator) -> dict[str, Any]:
    return {"cells": int(r.integers(2, 6)), "octaves": int(r.integers(2, 4)), "persistence": 0.5}


def _draw_gradient(r: np.random.Generator) -> dict[str, Any]:
    return {"angle": float(r.uniform(0.0, 360.0))}


def _draw_depth(r: np.random.Generator) -> dict[str, Any]:
    return {"vertical_weight": float(r.uniform(0.3, 0.7))}


def _draw_ellipse(r: np.random.Generator) -> dict[str, Any]:
    cx, cy, rx, ry = r.uniform(0.25, 0.75, 2).tolist() + r.uniform(0.2, 0.45, 2).tolist()
    return {"cx": cx, "cy": cy, "rx": rx, "ry": ry, "angle": float(r.uniform(0.0, 180.0)), "softness": 0.4}


def _draw_regions(r: np.random.Generator) -> dict[str, Any]:
    return {"segments": int(r.integers(6, 17)), "parts": 2, "part": 0, "feather": 2.0}


def _unit(field: np.ndarray) -> np.ndarray:
    lo, hi = float(field.min()), float(field.max())
    if hi <= lo:
        return np.full(field.shape, 0.5, np.float32)
    return ((field - lo) / (hi - lo)).astype(np.float32)


def _field_rng(spec: Mapping[str, Any]) -> np.random.Generator:
    return seeded_rng(int(spec["seed"]), "severity-map", str(spec["map"]))


def _smooth(spec: Mapping[str, Any], image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    r = _field_rng(spec)
    field = np.zeros((h, w), np.float32)
    weight = 1.0
    for octave in range(int(spec["octaves"])):
        cells = int(spec["cells"]) * 2**octave
        gh, gw = (max(2, round(cells * h / max(h, w))) + 1, max(2, round(cells * w / max(h, w))) + 1)
        grid = r.random((gh, gw), dtype=np.float32)
        # Bicubic upsampling of a coarse random grid: smooth value noise, cheaper than Perlin's gradients.
        field += np.float32(weight) * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        weight *= float(spec["persistence"])
    return _unit(field)


def _gradient(spec: Mapping[str, Any], image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    a = math.radians(float(spec["angle"]))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return _unit(xs * np.float32(math.cos(a)) + ys * np.float32(math.sin(a)))


def _depth(spec: Mapping[str, Any], image: np.ndarray) -> np.ndarray:
    from degradations.types.haze import depth_proxy  # the types import this module's users

    return depth_proxy(image, float(spec["vertical_weight"])).astype(np.float32)


def _ellipse(spec: Mapping[str, Any], image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    a = math.radians(float(spec["angle"]))
    dx, dy = xs / w - float(spec["cx"]), ys / h - float(spec["cy"])
    u = (dx * math.cos(a) + dy * math.sin(a)) / float(spec["rx"])
    v = (-dx * math.sin(a) + dy * math.cos(a)) / float(spec["ry"])
    radius = np.sqrt(u * u + v * v)
    soft = max(float(spec["softness"]), 1e-3)
    t = np.clip((1.0 + soft - radius) / soft, 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)  # smoothstep: no kink at the rim


def _regions(spec: Mapping[str, Any], image: np.ndarray) -> np.ndarray:
    from skimage.segmentation import slic  # scikit-image ships with perceive-ir (sample photos)

    labels = slic(image, n_segments=int(spec["segments"]), compactness=10.0, start_label=0, channel_axis=-1)
    owner = _field_rng(spec).integers(0, int(spec["parts"]), size=int(labels.max()) + 1)
    mask = (owner[labels] == int(spec["part"])).astype(np.float32)
    feather = float(spec["feather"])
    return cv2.GaussianBlur(mask, (0, 0), sigmaX=feather) if feather > 0 else mask


GENERATORS: dict[str, tuple[Callable[[np.random.Generator], dict[str, Any]], Callable[..., np.ndarray]]] = {
    "smooth": (_draw_smooth, _smooth),
    "gradient": (_draw_gradient, _gradient),
    "depth": (_draw_depth, _depth),
    "ellipse": (_draw_ellipse, _ellipse),
    "regions": (_draw_regions, _regions),
}


def is_map(severity: Any) -> bool:
    """Whether a severity argument is a map (array, spec dict or generator name), not a number."""
    return isinstance(severity, (np.ndarray, Mapping, str))


def array_spec(values: np.ndarray, shape: tuple[int, int]) -> tuple[Spec, np.ndarray]:
    """The spec recording a caller's map, and the map checked: H x W, finite, in [0, 1]."""
    values = np.asarray(values)
    if values.ndim != 2 or values.shape != tuple(shape):
        raise UserError(f"a severity map must be H x W = {shape[0]} x {shape[1]}, got shape {values.shape}")
    values = values.astype(np.float32)
    if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
        raise UserError("a severity map's values must be finite and in [0, 1]")
    return {"map": "array", "sha256": hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest(), **_COMMON}, values


def resolve_spec(spec: str | Mapping[str, Any], draws: np.random.Generator, default_seed: int) -> Spec:
    """A complete spec: unknown keys refused, missing ones drawn from `draws`, the seed defaulted."""
    if isinstance(spec, str):
        spec = {"map": spec}
    if not isinstance(spec, Mapping) or "map" not in spec:
        raise UserError(f"a severity map spec is a generator name or a dict with 'map'; got {spec!r}")
    name = spec["map"]
    if name == "array":
        return dict(spec)  # already resolved by array_spec (a recipe read back)
    if name not in GENERATORS:
        raise UserError(f"unknown severity map {name!r}; generators: {', '.join(GENERATORS)}")
    draw, _ = GENERATORS[name]
    drawn = draw(draws)  # drawn whether or not given: the draws of one key never shift another's
    known = {"map", "seed", *_COMMON, *drawn}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise UserError(f"unknown parameters for severity map {name!r}: {unknown}; known: {sorted(known - {'map'})}")
    out: Spec = {"map": name, **_COMMON, **drawn, **{k: v for k, v in spec.items() if k != "map"}}
    out.setdefault("seed", int(default_seed))
    for key in ("lo", "hi"):
        require_range("severity map", key, out[key], 0.0, 1.0)
    if name == "regions" and not 0 <= int(out["part"]) < int(out["parts"]):
        raise UserError(f"regions map part {out['part']} is not one of its {out['parts']} parts")
    return out


def render(spec: Mapping[str, Any], image: np.ndarray, arrays: np.ndarray | None = None) -> np.ndarray:
    """The H x W float32 severity map of a complete spec on the clean `image` (`arrays`: an array spec's map)."""
    if spec["map"] == "array":
        if arrays is None:
            raise UserError(
                "this recipe's severity map is a caller's array (sha256 "
                f"{str(spec.get('sha256', ''))[:12]}...): pass it again, replay(image, recipe, arrays={{type: array}})"
            )
        given, values = array_spec(arrays, image.shape[:2])
        if given["sha256"] != spec["sha256"]:
            raise UserError("the severity map given is not the one the recipe recorded (SHA-256 differs)")
        return values
    field = _cached_field(spec, image)
    lo, hi = np.float32(spec["lo"]), np.float32(spec["hi"])
    return np.clip(lo + (hi - lo) * field, 0.0, 1.0).astype(np.float32)


_FIELDS: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
_FIELDS_KEPT = 8
_FIELDS_LOCK = threading.Lock()


def _cached_field(spec: Mapping[str, Any], image: np.ndarray) -> np.ndarray:
    """The generator's [0, 1] field for this spec and image, from a small cache of recent ones.

    The shard builder's tier search degrades one patch at several severities: the spec differs only
    in lo and hi, and the field (a SLIC segmentation for regions, which costs more than the type
    itself) is the same. Keyed by the other parameters and a hash of the image's bytes; the field
    is read only, so a hit returns exactly what a fresh render would.
    """
    params = json.dumps({k: v for k, v in spec.items() if k not in _COMMON}, sort_keys=True)
    key = (params, hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).hexdigest() + str(image.shape))
    with _FIELDS_LOCK:
        field = _FIELDS.get(key)
        if field is not None:
            _FIELDS.move_to_end(key)
            return field
    field = GENERATORS[spec["map"]][1](spec, image)
    field.flags.writeable = False
    with _FIELDS_LOCK:
        _FIELDS[key] = field
        while len(_FIELDS) > _FIELDS_KEPT:
            _FIELDS.popitem(last=False)
    return field


def map_stats(values: np.ndarray) -> dict[str, float]:
    """mean, min and max of a map (the manifest's summary of a stored map)."""
    return {"mean": float(values.mean(dtype=np.float64)), "min": float(values.min()), "max": float(values.max())}
