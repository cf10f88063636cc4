"""Haze from the atmospheric scattering model over a depth proxy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from degradations.base import Degradation, ParamLevels, lerp, require_range
from degradations.errors import UserError
from degradations.kernels import blend
from degradations.registry import register

# Proxy depth runs from NEAR to FAR units; at beta 0.3 the farthest point
# keeps exp(-3) = 5 % of its radiance, about RESIDE's thickest haze; severity 1
# (beta 0.45) goes past it, to haze no benchmark photo shows.
NEAR, FAR = 1.0, 10.0
_PROXY_SCALE = 4  # the proxy is smooth: compute it at 1/4 resolution


def depth_proxy(image: np.ndarray, vertical_weight: float) -> np.ndarray:
    """Relative depth in [0, 1] (1 = far) from the clean image itself.

    No depth network: a blend of two cues that hold for most outdoor photos.
    Higher rows are farther (the ground plane recedes towards the horizon),
    and regions with a bright dark channel (sky, distant low-contrast
    surfaces; the dark channel prior of He et al.) are farther than dark or
    saturated foreground. The dark channel is eroded and smoothed so depth
    varies slowly and does not follow texture.
    """
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, w // _PROXY_SCALE), max(1, h // _PROXY_SCALE)), interpolation=cv2.INTER_AREA)
    dark = small.min(axis=2).astype(np.float32) / 255.0
    dark = cv2.erode(dark, np.ones((5, 5), np.uint8), borderType=cv2.BORDER_REPLICATE)
    dark = cv2.GaussianBlur(dark, (0, 0), sigmaX=4.0, borderType=cv2.BORDER_REPLICATE)
    rows = np.linspace(1.0, 0.0, dark.shape[0], dtype=np.float32)[:, None]
    proxy = vertical_weight * rows + (1.0 - vertical_weight) * dark
    proxy = cv2.resize(proxy, (w, h), interpolation=cv2.INTER_LINEAR)
    lo, hi = float(proxy.min()), float(proxy.max())
    return (proxy - lo) / (hi - lo) if hi > lo else np.full((h, w), 0.5, np.float32)


@register
class Haze(Degradation):
    """I = J t + A (1 - t), t = exp(-beta d), d = NEAR + (FAR - NEAR) * depth_proxy.

    beta (scattering coefficient per proxy unit) in [0, 0.45]; airlight A per
    channel in 8-bit units, drawn in 190-250 (RESIDE draws A in 0.7-1.0 of
    full scale, i.e. 179-255); vertical_weight mixes the two depth cues.
    Defaults: airlight [230, 230, 230], vertical_weight 0.5.
    """

    name = "haze"
    defaults = {"airlight": [230, 230, 230], "vertical_weight": 0.5}
    required = ("beta",)
    min_size = 16

    def check(self, params: Mapping[str, Any]) -> None:
        require_range(self.name, "beta", params["beta"], 0.0, 2.0)
        require_range(self.name, "vertical_weight", params["vertical_weight"], 0.0, 1.0)
        airlight = params["airlight"]
        if not (isinstance(airlight, (list, tuple)) and len(airlight) == 3):
            raise UserError(f"haze airlight must be 3 values (R, G, B), got {airlight!r}")
        for a in airlight:
            if isinstance(a, bool) or int(a) != a or not 0 <= a <= 255:
                raise UserError(f"haze airlight values are 8-bit integers 0-255, got {airlight!r}")

    def params(self, rng: np.random.Generator, severity: float) -> dict[str, Any]:
        grey = rng.uniform(190, 250)
        tint = rng.uniform(-8, 8, size=3)  # slightly warm or blue haze
        return {
            "beta": lerp(0.0, 0.45, severity),
            "airlight": [int(np.clip(round(grey + t), 0, 255)) for t in tint],
            "vertical_weight": float(rng.uniform(0.3, 0.7)),
        }

    def apply(self, image: np.ndarray, params: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
        t = np.exp(_distance(image, params) * np.float32(-params["beta"]))
        return blend(image, tuple(params["airlight"]), 1.0 - t)

    def apply_map(self, image: np.ndarray, levels: ParamLevels, severity_map: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """beta (the haze's density) per pixel: t = exp(-beta(x) d(x))."""
        t = np.exp(-levels.at("beta", severity_map) * _distance(image, levels.top))
        return blend(image, tuple(levels.top["airlight"]), 1.0 - t)


def _distance(image: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """d = NEAR + (FAR - NEAR) * depth proxy, per pixel, float32."""
    depth = depth_proxy(image, float(params["vertical_weight"]))
    depth *= np.float32(FAR - NEAR)
    depth += np.float32(NEAR)
    return depth
