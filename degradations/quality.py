"""Full-reference quality scores of a degraded image against its clean source."""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from degradations.errors import UserError
from degradations.image import as_rgb_uint8

_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2
_WIN = 11  # Gaussian window, sigma 1.5, truncated at 3.5 sigma as scikit-image does
_PAD = (_WIN - 1) // 2
MIN_SIDE = _WIN  # the smallest image side every metric here can score


def _pair(clean: np.ndarray, degraded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    clean = as_rgb_uint8(clean, what="clean image")
    degraded = as_rgb_uint8(degraded, what="degraded image")
    if clean.shape != degraded.shape:
        raise UserError(f"images differ in shape: {clean.shape} vs {degraded.shape}")
    return clean, degraded


def _blur(a: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(a, (_WIN, _WIN), 1.5, borderType=cv2.BORDER_REFLECT)


class SSIMReference:
    """SSIM against one clean image, whose local statistics are computed once.

    Scoring several degraded versions of the same patch (the shard builder's
    tier search tries a few severities per tier) then costs three Gaussian
    blurs per version instead of five. float32 throughout: within 1e-5 of
    float64, and half the memory traffic.
    """

    def __init__(self, clean: np.ndarray) -> None:
        clean = as_rgb_uint8(clean, what="clean image")
        if min(clean.shape[:2]) < _WIN:
            raise UserError(f"SSIM needs images of at least {_WIN}x{_WIN}, got {clean.shape[1]}x{clean.shape[0]}")
        self.shape = clean.shape
        x = clean.astype(np.float32)
        mx = _blur(x)
        mx2 = mx * mx
        self._clean, self._x, self._mx = clean.copy(), x, mx
        # The clean side of the formula, folded once: mx^2 + C1 and vx + C2.
        self._mx2_c1 = mx2 + np.float32(_C1)
        self._vx_c2 = _blur(x * x) - mx2 + np.float32(_C2)

    def __call__(self, degraded: np.ndarray) -> float:
        degraded = self._check(degraded)
        if np.array_equal(degraded, self._clean):
            return 1.0  # exactly, which float32 rounding below need not give
        # The mean leaves out the border, whose windows read mirrored pixels (as scikit-image does).
        return min(1.0, float(self._local(degraded)[_PAD:-_PAD, _PAD:-_PAD].mean(dtype=np.float64)))

    def map(self, degraded: np.ndarray) -> np.ndarray:
        """Local SSIM per pixel, H x W float32 (the mean over RGB of each pixel's window), clipped to
        [0, 1]: the measured quality map whose mean over the interior is the score."""
        degraded = self._check(degraded)
        if np.array_equal(degraded, self._clean):
            return np.ones(self.shape[:2], np.float32)
        return np.clip(self._local(degraded).mean(axis=2), 0.0, 1.0)

    def _check(self, degraded: np.ndarray) -> np.ndarray:
        degraded = as_rgb_uint8(degraded, what="degraded image")
        if degraded.shape != self.shape:
            raise UserError(f"images differ in shape: {self.shape} vs {degraded.shape}")
        return degraded

    def _local(self, degraded: np.ndarray) -> np.ndarray:
        """The SSIM of every pixel's window and channel, H x W x 3 float32."""
        y = degraded.astype(np.float32)
        my = _blur(y)
        eyy = _blur(y * y)
        np.multiply(y, self._x, out=y)
        exy = _blur(y)
        # In place (contiguous arrays are faster to walk than the interior's views):
        # (2 mx my + C1)(2 (exy - mx my) + C2) / ((mx^2 + my^2 + C1)(vx + eyy - my^2 + C2))
        mxy = self._mx * my
        my *= my  # my^2 from here on
        exy -= mxy
        exy *= 2
        exy += np.float32(_C2)
        mxy *= 2
        mxy += np.float32(_C1)
        mxy *= exy  # numerator
        eyy -= my
        eyy += self._vx_c2
        my += self._mx2_c1
        my *= eyy  # denominator
        mxy /= my
        return mxy


def ssim(clean: np.ndarray, degraded: np.ndarray) -> float:
    """Mean SSIM over RGB channels, Gaussian-weighted (Wang et al. 2004).

    The same number as skimage.metrics.structural_similarity(...,
    channel_axis=-1, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=255), to about 1e-5, computed
    with OpenCV's separable filters in float32: several times faster, which
    matters because every stored sample is scored.
    """
    return SSIMReference(clean)(degraded)


def ssim_map(clean: np.ndarray, degraded: np.ndarray) -> np.ndarray:
    """The measured quality map: local SSIM per pixel (H x W float32 in [0, 1]) of `degraded`
    against `clean`; grade it into tiers with `tier_map`."""
    return SSIMReference(clean).map(degraded)


def psnr(clean: np.ndarray, degraded: np.ndarray) -> float:
    """PSNR in dB on RGB, peak 255; +inf for identical images."""
    clean, degraded = _pair(clean, degraded)
    mse = float(np.mean((clean.astype(np.float64) - degraded) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


METRICS = {"ssim": ssim, "psnr": psnr}


def quality_reference(metric: str, clean: np.ndarray) -> Callable[[np.ndarray], float]:
    """A scorer of degraded versions of `clean` under `metric`; SSIM reuses the clean statistics."""
    if metric == "ssim":
        return SSIMReference(clean)
    if metric == "psnr":
        return lambda degraded: psnr(clean, degraded)
    raise UserError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
