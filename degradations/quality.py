"""Full-reference quality scores of a degraded image against its clean source."""

from __future__ import annotations

import math

import cv2
import numpy as np

from degradations.image import as_rgb_uint8

_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2
_WIN = 11  # Gaussian window, sigma 1.5, truncated at 3.5 sigma as scikit-image does
_PAD = (_WIN - 1) // 2


def _pair(clean: np.ndarray, degraded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    clean = as_rgb_uint8(clean, what="clean image")
    degraded = as_rgb_uint8(degraded, what="degraded image")
    if clean.shape != degraded.shape:
        raise ValueError(f"images differ in shape: {clean.shape} vs {degraded.shape}")
    return clean, degraded


def ssim(clean: np.ndarray, degraded: np.ndarray) -> float:
    """Mean SSIM over RGB channels, Gaussian-weighted (Wang et al. 2004).

    The same number as skimage.metrics.structural_similarity(...,
    channel_axis=-1, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=255), to about 1e-6, computed
    with OpenCV's separable filters: several times faster, which matters
    because every stored sample is scored.
    """
    clean, degraded = _pair(clean, degraded)
    if min(clean.shape[:2]) < _WIN:
        raise ValueError(f"SSIM needs images of at least {_WIN}x{_WIN}, got {clean.shape[1]}x{clean.shape[0]}")
    x = clean.astype(np.float64)
    y = degraded.astype(np.float64)

    def blur(a: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(a, (_WIN, _WIN), 1.5, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    s = ((2 * mx * my + _C1) * (2 * cxy + _C2)) / ((mx * mx + my * my + _C1) * (vx + vy + _C2))
    return float(s[_PAD:-_PAD, _PAD:-_PAD].mean())


def psnr(clean: np.ndarray, degraded: np.ndarray) -> float:
    """PSNR in dB on RGB, peak 255; +inf for identical images."""
    clean, degraded = _pair(clean, degraded)
    mse = float(np.mean((clean.astype(np.float64) - degraded) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


METRICS = {"ssim": ssim, "psnr": psnr}
