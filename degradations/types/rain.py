"""Rain streaks in layers, as Rain100L/H-style synthesis draws them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from degradations.base import Degradation, ParamLevels, lerp, require_range
from degradations.errors import UserError
from degradations.kernels import draw_streaks, particle_positions, screen
from degradations.registry import register


def streak_layer(
    rng: np.random.Generator, shape: tuple[int, int], *, density: float | np.ndarray, length: float, angle: float, width: int,
    blur: float, brightness: float = 1.0,
) -> np.ndarray:
    """Streaks drawn at sparse seeds (at `brightness` times their intensity) and softened: one rain layer, float32."""
    rows, cols, intensity = particle_positions(rng, shape, density)
    layer = draw_streaks(shape, rows, cols, intensity * np.float32(brightness), length, angle, width)
    if blur > 0:
        layer = cv2.GaussianBlur(layer, (0, 0), sigmaX=blur)
    return layer


@register
class Rain(Degradation):
    """Rain streaks: `layers` (1 or 2) of straight streaks screened onto the image.

    density: fraction of pixels that start a streak; length (px); angle
    (degrees from vertical); width (px, line thickness); blur (Gaussian sigma,
    px); brightness (peak streak intensity in [0, 1]). A second layer is the
    far rain: half as long, thinner, 60 % as bright, its own positions.
    Defaults: angle 0, width 1, blur 0.8, layers 1.
    """

    name = "rain"
    defaults = {"angle": 0.0, "width": 1, "blur": 0.8, "layers": 1}
    required = ("density", "length", "brightness")
    min_size = 16

    def check(self, params: Mapping[str, Any]) -> None:
        require_range(self.name, "density", params["density"], 0.0, 0.2)
        require_range(self.name, "length", params["length"], 1.0, 200.0)
        require_range(self.name, "angle", params["angle"], -80.0, 80.0)
        require_range(self.name, "width", params["width"], 1, 5)
        require_range(self.name, "blur", params["blur"], 0.0, 5.0)
        require_range(self.name, "brightness", params["brightness"], 0.0, 1.0)
        if params["layers"] not in (1, 2):
            raise UserError(f"rain layers must be 1 or 2, got {params['layers']!r}")

    def params(self, rng: np.random.Generator, severity: float) -> dict[str, Any]:
        # Drawn to look like Rain100L at low severity (measured by `perceive-ir realism`): long, thin,
        # sparse streaks; severity adds streaks, brightness and length. The earlier ranges (8-40 px,
        # 1-2 px wide) drew short bright bars a CNN told from Rain100L's streaks 70 % of the time.
        angle, blur, layers = rng.uniform(-20, 20), rng.uniform(0.5, 1.0), rng.integers(1, 3)
        return {
            "density": lerp(0.0008, 0.006, severity),
            "length": lerp(30.0, 60.0, severity) * float(rng.uniform(0.8, 1.2)),
            "angle": float(angle),
            "width": 1 if rng.random() >= 0.5 * severity else 2,  # heavy rain (Rain100H) has some thicker streaks
            "blur": float(blur),
            "brightness": lerp(0.45, 0.9, severity),
            "layers": int(layers),
        }

    def apply(self, image: np.ndarray, params: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
        return screen(image, self._layer(image.shape[:2], params, params["density"], params["brightness"], rng))

    def apply_map(self, image: np.ndarray, levels: ParamLevels, severity_map: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Density and brightness per region; a streak's length, angle and width are the strongest level's."""
        density, brightness = levels.at("density", severity_map), levels.at("brightness", severity_map)
        density[severity_map <= 0] = 0.0  # no rain where the map is 0 (level 0 still draws sparse streaks)
        return screen(image, self._layer(image.shape[:2], levels.top, density, brightness, rng))

    @staticmethod
    def _layer(shape: tuple[int, int], params: Mapping[str, Any], density: Any, brightness: Any, rng: np.random.Generator) -> np.ndarray:
        # A scalar brightness scales the streaks as they are drawn; a map (per region) multiplies the layer.
        scalar = not isinstance(brightness, np.ndarray)
        near, far = (float(brightness), 0.6 * float(brightness)) if scalar else (1.0, 0.6)
        layer = streak_layer(
            rng, shape, density=density, length=params["length"], angle=params["angle"], width=params["width"],
            blur=params["blur"], brightness=near,
        )
        if params["layers"] == 2:
            distant = streak_layer(
                rng, shape, density=density, length=params["length"] / 2, angle=params["angle"], width=1, blur=params["blur"],
                brightness=far,
            )
            np.maximum(layer, distant, out=layer)
        if not scalar:
            layer *= brightness
        return layer
