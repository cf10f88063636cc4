"""perceive-ir's degradation engine: graded, replayable degradations and quality tiers.

    import degradations as D
    noisy, recipe = D.degrade(image, "noise", severity=0.4, seed=7)
    assert (D.replay(image, recipe) == noisy).all()
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from degradations import types as _types  # noqa: F401  (registers the built-in types)
from degradations.base import Degradation, lerp, require_choice, require_range
from degradations.calibration import DEFAULT_SEVERITIES, calibrate, severity_at
from degradations.errors import InputNotFound, NotWritable, OutputExists, UserError
from degradations.image import as_rgb_uint8
from degradations.photos import BUILTIN_PHOTOS, builtin_photo, builtin_photos
from degradations.quality import MIN_SIDE as SCORE_MIN_SIDE
from degradations.quality import SSIMReference, psnr, quality_reference, ssim, ssim_map
from degradations.recipe import ENGINE_VERSION, Recipe, Step, degrade, replay, severity_map_of
from degradations.severity_maps import GENERATORS as MAP_GENERATORS
from degradations.severity_maps import map_stats, render as render_severity_map
from degradations.registry import (
    CANONICAL_ORDER,
    Composite,
    available,
    canonical_name,
    get,
    register,
)
from degradations.seeds import derive_seed, rng
from degradations.tiers import (
    DEFAULT_BANDS,
    DEGRADED_TIERS,
    TIERS,
    Calibration,
    check_tier,
    default_calibration,
    load_calibration,
    severity_range,
    tier_areas,
    tier_map,
    tier_of,
)


def degrade_batch(
    images: torch.Tensor, name: str, severity: float | Sequence[float], seeds: Sequence[int],
    device: str | torch.device | None = None,
) -> tuple[torch.Tensor, list[Recipe]]:
    """The built-in types as batched torch operations on any device; see degradations.torch_engine.
    Imported on first use: the NumPy engine does not need torch."""
    from degradations.torch_engine import degrade_batch as batched

    return batched(images, name, severity, seeds, device)


if TYPE_CHECKING:  # torch only for the annotations: importing degradations does not import torch
    import torch

__all__ = [
    "BUILTIN_PHOTOS", "CANONICAL_ORDER", "MAP_GENERATORS", "DEFAULT_BANDS", "DEFAULT_SEVERITIES", "DEGRADED_TIERS", "ENGINE_VERSION", "SCORE_MIN_SIDE", "TIERS",
    "Calibration", "Composite", "Degradation", "InputNotFound", "NotWritable", "OutputExists", "Recipe", "SSIMReference",
    "Step", "UserError",
    "as_rgb_uint8", "available", "builtin_photo", "builtin_photos", "calibrate", "canonical_name", "check_tier",
    "default_calibration", "degrade", "degrade_batch", "derive_seed", "get", "lerp", "load_calibration", "map_stats", "psnr", "quality_reference", "register",
    "render_severity_map", "replay", "require_choice", "require_range", "rng", "severity_at", "severity_map_of",
    "severity_range", "ssim", "ssim_map", "tier_areas", "tier_map", "tier_of",
]
