"""Sensor noise: additive Gaussian in sRGB, or Poisson-Gaussian in linear light."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from degradations.base import Degradation, ParamLevels, lerp, require_choice, require_range
from degradations.image import linear_to_srgb_uint8, srgb_to_linear
from degradations.random_fields import normal_field
from degradations.registry import register

_MODELS = ("gaussian", "poisson_gaussian")


def add_gaussian(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """uint8 image + N(0, sigma^2) per pixel and channel (sigma on the 0-255 scale)."""
    # cv2.add rounds and saturates to uint8 in the same pass as the sum.
    return cv2.add(image, normal_field(rng, image.shape, sigma), dtype=cv2.CV_8U)


def add_poisson_gaussian(linear: np.ndarray, std: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Linear signal + heteroscedastic noise of per-pixel `std`, back to uint8 sRGB."""
    noisy = normal_field(rng, linear.shape)
    noisy *= std
    noisy += linear
    return linear_to_srgb_uint8(noisy)


@register
class Noise(Degradation):
    """Gaussian or Poisson-Gaussian noise.

    `gaussian`: sigma on the 0-255 scale, the protocol of denoising benchmarks
    (`params={"sigma": 25}`). `poisson_gaussian`: in linear light, variance
    `shot * x + read**2` for signal x in [0, 1] (the heteroscedastic model of
    Foi et al. 2008, which approximates photon shot noise plus read noise).
    Defaults: model "gaussian"; read 0.
    """

    name = "noise"
    min_size = 1

    def schema(self, params: Mapping[str, Any]) -> tuple[Mapping[str, Any], tuple[str, ...]]:
        model = params.get("model", "gaussian")
        require_choice(self.name, "model", model, _MODELS)
        if model == "gaussian":
            return {"model": "gaussian"}, ("sigma",)
        return {"model": "poisson_gaussian", "read": 0.0}, ("shot",)

    def check(self, params: Mapping[str, Any]) -> None:
        if params["model"] == "gaussian":
            require_range(self.name, "sigma", params["sigma"], 0.0, 255.0)
        else:
            require_range(self.name, "shot", params["shot"], 0.0, 1.0)
            require_range(self.name, "read", params["read"], 0.0, 1.0)

    def params(self, rng: np.random.Generator, severity: float) -> dict[str, Any]:
        # SSIM falls steeply with the first few grey levels of noise: a power
        # curve spreads the tiers over the severity axis (sigma 26 at 0.5).
        strength = severity**1.5
        if rng.random() < 0.7:
            return {"model": "gaussian", "sigma": lerp(0.0, 75.0, strength)}
        return {
            "model": "poisson_gaussian",
            "shot": lerp(0.0, 0.08, strength),
            "read": lerp(0.0, 0.02, strength) * float(rng.uniform(0.5, 1.0)),
        }

    def apply(self, image: np.ndarray, params: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
        if params["model"] == "gaussian":
            return add_gaussian(image, params["sigma"], rng)
        linear = srgb_to_linear(image)
        std = np.sqrt(linear * np.float32(params["shot"]) + np.float32(params["read"]) ** 2)
        return add_poisson_gaussian(linear, std, rng)

    def apply_map(self, image: np.ndarray, levels: ParamLevels, severity_map: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """sigma (or shot and read) per pixel."""
        if levels.top["model"] == "gaussian":
            field = normal_field(rng, image.shape)
            field *= levels.at("sigma", severity_map)[..., None]
            return cv2.add(image, field, dtype=cv2.CV_8U)
        linear = srgb_to_linear(image)
        read = levels.at("read", severity_map)[..., None]
        std = np.sqrt(linear * levels.at("shot", severity_map)[..., None] + read * read)
        return add_poisson_gaussian(linear, std, rng)
