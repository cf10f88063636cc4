"""Blur: Gaussian (optics), defocus disk, and camera-shake motion."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from degradations.base import Degradation, lerp, require_choice, require_range
from degradations.kernels import convolve, disk_kernel, gaussian_taps, trajectory_kernel
from degradations.registry import register

_KINDS = ("gaussian", "defocus", "motion")
# The severity-1 size of each kind: sigma, disk radius, trajectory extent (px).
_MAX_SIZE = {"gaussian": 8.0, "defocus": 14.0, "motion": 56.0}
_SHAKE_DEFAULTS = {"anxiety": 0.005, "centripetal": 0.35, "gaussian_term": 5.0, "big_shakes": 0.1}


@register
class Blur(Degradation):
    """`kind` gaussian (size = sigma, px), defocus (size = disk radius, px) or
    motion (size = trajectory extent, px). A motion kernel is a camera-shake
    trajectory in the manner of Boracchi & Foi (2012); its shape parameters
    (anxiety, centripetal, gaussian_term, big_shakes) are recorded and its
    random walk is regenerated from the recipe's seed, so `kernel()` gives the
    same kernel again. Defaults: kind "gaussian"; shake parameters as
    _SHAKE_DEFAULTS.
    """

    name = "blur"
    min_size = 64  # the largest kernels span about 60 px

    def schema(self, params: Mapping[str, Any]) -> tuple[Mapping[str, Any], tuple[str, ...]]:
        kind = params.get("kind", "gaussian")
        require_choice(self.name, "kind", kind, _KINDS)
        if kind == "motion":
            return {"kind": "motion", **_SHAKE_DEFAULTS}, ("size",)
        return {"kind": kind}, ("size",)

    def check(self, params: Mapping[str, Any]) -> None:
        require_range(self.name, "size", params["size"], 0.0, 64.0)
        if params["kind"] == "motion":
            require_range(self.name, "anxiety", params["anxiety"], 0.0, 1.0)

    def params(self, rng: np.random.Generator, severity: float) -> dict[str, Any]:
        kind = _KINDS[int(rng.choice(3, p=[0.3, 0.3, 0.4]))]
        params: dict[str, Any] = {"kind": kind, "size": lerp(0.0, _MAX_SIZE[kind], severity)}
        if kind == "motion":
            params.update(
                anxiety=float(rng.uniform(0.001, 0.01)),
                centripetal=float(rng.uniform(0.0, 0.7)),
                gaussian_term=float(rng.uniform(0.0, 10.0)),
                big_shakes=float(rng.uniform(0.0, 0.2)),
            )
        return params

    def kernel(self, params: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray | None:
        """The normalised kernel for complete params; None for a Gaussian (applied separably)."""
        kind, size = params["kind"], float(params["size"])
        if kind == "gaussian":
            return None
        if kind == "defocus":
            return disk_kernel(size)
        return trajectory_kernel(
            max(size, 1.0), rng, anxiety=params["anxiety"], centripetal=params["centripetal"],
            gaussian_term=params["gaussian_term"], big_shakes=params["big_shakes"],
        )

    def apply(self, image: np.ndarray, params: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
        kernel = self.kernel(params, rng)
        if kernel is None:
            sigma = float(params["size"])
            if sigma <= 0:
                return image.copy()
            # The kernel cv2.GaussianBlur takes for 8-bit images (6 sigma + 1 taps), applied by
            # sepFilter2D: GaussianBlur's bit-exact fixed-point path is 1.6x slower on 8-bit images
            # at these sizes (benchmarks/degradations.py), and the result differs by at most one level.
            taps = gaussian_taps(sigma)
            return cv2.sepFilter2D(image, -1, taps, taps, borderType=cv2.BORDER_REFLECT_101)
        return convolve(image, kernel)
