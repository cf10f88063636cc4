"""Snow: falling flakes over a whitening veil."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from degradations.base import Degradation, ParamLevels, lerp, require_range
from degradations.kernels import blend, line_kernel, particle_seeds, screen
from degradations.registry import register

_VEIL_LEVEL = 235.0  # the veil's grey, 8-bit


@register
class Snow(Degradation):
    """Flakes: sparse seeds grown to round flakes (Gaussian, `flake_size` sigma
    in px) smeared along the fall direction (`length` px at `angle` degrees),
    screened onto the image at `brightness`; `veil` in [0, 1] first blends the
    scene toward white, the low contrast of air full of snow.
    Defaults: angle 0, length 1, veil 0.
    """

    name = "snow"
    defaults = {"angle": 0.0, "length": 1.0, "veil": 0.0}
    required = ("density", "flake_size", "brightness")
    min_size = 16

    def check(self, params: Mapping[str, Any]) -> None:
        require_range(self.name, "density", params["density"], 0.0, 0.1)
        require_range(self.name, "flake_size", params["flake_size"], 0.3, 10.0)
        require_range(self.name, "brightness", params["brightness"], 0.0, 1.0)
        require_range(self.name, "angle", params["angle"], -80.0, 80.0)
        require_range(self.name, "length", params["length"], 1.0, 50.0)
        require_range(self.name, "veil", params["veil"], 0.0, 1.0)

    def params(self, rng: np.random.Generator, severity: float) -> dict[str, Any]:
        angle, length = rng.uniform(-30, 30), rng.uniform(1.0, 8.0)
        return {
            "density": lerp(0.0005, 0.008, severity),
            "flake_size": lerp(0.8, 2.0, severity),
            "brightness": lerp(0.7, 1.0, severity),
            "angle": float(angle),
            "length": float(length),
            "veil": lerp(0.0, 0.45, severity),
        }

    def apply(self, image: np.ndarray, params: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
        flakes = self._flakes(image.shape[:2], params, params["density"], rng)
        veil = float(params["veil"])
        base = cv2.convertScaleAbs(image, alpha=1.0 - veil, beta=veil * _VEIL_LEVEL)  # rounds to uint8
        return screen(base, flakes * np.float32(params["brightness"]))

    def apply_map(self, image: np.ndarray, levels: ParamLevels, severity_map: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Flake density, brightness and the veil per region; flake size and fall are the strongest level's."""
        density = levels.at("density", severity_map)
        density[severity_map <= 0] = 0.0
        flakes = self._flakes(image.shape[:2], levels.top, density, rng)
        base = blend(image, (int(_VEIL_LEVEL),) * 3, levels.at("veil", severity_map))
        return screen(base, flakes * levels.at("brightness", severity_map))

    @staticmethod
    def _flakes(shape: tuple[int, int], params: Mapping[str, Any], density: Any, rng: np.random.Generator) -> np.ndarray:
        seeds = particle_seeds(rng, shape, density)
        sigma = float(params["flake_size"])
        # Scale so that an isolated flake peaks at 1 after the Gaussian spreads it.
        flakes = cv2.GaussianBlur(seeds, (0, 0), sigmaX=sigma) * np.float32(2 * np.pi * sigma**2)
        if params["length"] > 1:
            streak = line_kernel(params["length"], params["angle"])
            flakes = cv2.filter2D(flakes, -1, streak / streak.max() / max(1.0, params["length"] / 2))
        return flakes
