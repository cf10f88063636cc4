"""Convolution kernels and particle layers shared by the blur, rain and snow types.

Kernels are drawn with OpenCV's anti-aliased primitives (cv2.line,
cv2.circle) so their shape is exact to a sub-pixel and identical on every run.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import scipy.fft

_SUBPIXEL = 4  # cv2 drawing shift: coordinates in 1/16 pixel


def _odd(n: float) -> int:
    k = int(math.ceil(n))
    return k + 1 - k % 2


def _normalised(kernel: np.ndarray) -> np.ndarray:
    total = kernel.sum()
    if total <= 0:
        raise ValueError("kernel is empty")
    return (kernel / total).astype(np.float32)


def line_kernel(length: float, angle: float, width: int = 1) -> np.ndarray:
    """A straight streak `length` px long at `angle` degrees from vertical; peak 1, not normalised."""
    size = _odd(length + 2 * width + 1)
    kernel = np.zeros((size, size), np.float32)
    c = (size - 1) / 2
    dx = 0.5 * length * math.sin(math.radians(angle))
    dy = 0.5 * length * math.cos(math.radians(angle))
    scale = 1 << _SUBPIXEL
    p0 = (round((c - dx) * scale), round((c - dy) * scale))
    p1 = (round((c + dx) * scale), round((c + dy) * scale))
    cv2.line(kernel, p0, p1, 1.0, int(width), cv2.LINE_AA, _SUBPIXEL)
    return kernel


def disk_kernel(radius: float) -> np.ndarray:
    """Defocus: a uniform disk of `radius` px with anti-aliased rim, sum 1."""
    size = _odd(2 * radius + 3)
    kernel = np.zeros((size, size), np.float32)
    c = (size - 1) / 2
    scale = 1 << _SUBPIXEL
    cv2.circle(kernel, (round(c * scale), round(c * scale)), max(1, round(radius * scale)), 1.0, -1, cv2.LINE_AA, _SUBPIXEL)
    return _normalised(kernel)


def trajectory_kernel(
    length: float,
    rng: np.random.Generator,
    *,
    anxiety: float,
    centripetal: float,
    gaussian_term: float,
    big_shakes: float,
    steps: int = 500,
) -> np.ndarray:
    """Motion blur from a random camera-shake trajectory (Boracchi & Foi, 2012).

    The camera's velocity is a random walk with inertia, a pull back to the
    start (`centripetal`), Gaussian jitter (`gaussian_term`) and rare abrupt
    reversals (`big_shakes`), all scaled by `anxiety`. The path is scaled so
    its longest extent is `length` px and splatted bilinearly into the kernel.
    """
    step = length / (steps - 1)
    normal = rng.standard_normal((steps, 2))
    uniform = rng.random((steps, 2))
    v = complex(math.cos(2 * math.pi * uniform[0, 0]), math.sin(2 * math.pi * uniform[0, 0])) * step
    x = np.zeros(steps, np.complex128)
    for t in range(1, steps):
        shake = 0j
        if uniform[t, 0] < big_shakes * anxiety:
            shake = 2 * v * complex(math.cos(math.pi + uniform[t, 1] - 0.5), math.sin(math.pi + uniform[t, 1] - 0.5))
        jitter = complex(normal[t, 0], normal[t, 1]) * gaussian_term
        v = v + shake + anxiety * (jitter - centripetal * x[t - 1]) * step
        v = v / abs(v) * step
        x[t] = x[t - 1] + v
    pts = np.stack([x.real, x.imag], axis=1)
    pts -= pts.min(axis=0)
    extent = float(pts.max())
    if extent > 0:
        pts *= length / extent
    size = _odd(pts.max() + 3)
    pts += (size - 1) / 2 - pts.max(axis=0) / 2
    kernel = np.zeros((size, size), np.float64)
    i0 = np.floor(pts).astype(np.int64)
    frac = pts - i0
    for dx in (0, 1):
        for dy in (0, 1):
            w = (frac[:, 0] if dx else 1 - frac[:, 0]) * (frac[:, 1] if dy else 1 - frac[:, 1])
            np.add.at(kernel, (i0[:, 1] + dy, i0[:, 0] + dx), w)
    return _normalised(kernel)


def convolve(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve a uint8 RGB image with a normalised 2-D kernel (mirrored borders)."""
    if kernel.size <= _DIRECT_MAX:
        return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    out = correlate(image.astype(np.float32), kernel, cv2.BORDER_REFLECT_101)
    return np.clip(np.rint(out, out=out), 0, 255, out=out).astype(np.uint8)  # rint: cv2's rounding


# Kernels up to this many taps are applied directly by cv2.filter2D; larger ones through one FFT.
_DIRECT_MAX = 11 * 11


def correlate(image: np.ndarray, kernel: np.ndarray, border: int) -> np.ndarray:
    """float32 H x W (x C) `image` correlated with `kernel`, its anchor at the centre, borders
    extended by OpenCV's `border` mode: what cv2.filter2D computes, to float rounding.

    Small kernels go to cv2.filter2D. Large ones (blur and streak kernels span 13-60 px) go through
    one real FFT of the whole padded image (scipy's pocketfft, in float32): 2-4x faster here than
    cv2.filter2D, whose DFT path works tile by tile (benchmarks/degradations.py times the types).
    """
    if kernel.size <= _DIRECT_MAX:
        return cv2.filter2D(image, cv2.CV_32F, kernel, borderType=border)
    kh, kw = kernel.shape
    top, left = kh // 2, kw // 2
    padded = cv2.copyMakeBorder(image, top, kh - 1 - top, left, kw - 1 - left, border)
    shape = (scipy.fft.next_fast_len(padded.shape[0], real=True), scipy.fft.next_fast_len(padded.shape[1], real=True))
    spectrum = scipy.fft.rfft2(padded, shape, axes=(0, 1))
    taps = scipy.fft.rfft2(np.ascontiguousarray(kernel[::-1, ::-1], dtype=np.float32), shape)  # correlation
    spectrum *= taps if spectrum.ndim == 2 else taps[:, :, None]
    full = scipy.fft.irfft2(spectrum, shape, axes=(0, 1))
    h, w = image.shape[:2]
    return np.ascontiguousarray(full[kh - 1 : kh - 1 + h, kw - 1 : kw - 1 + w])


def particle_seeds(rng: np.random.Generator, shape: tuple[int, int], density: float | np.ndarray) -> np.ndarray:
    """A sparse float32 map: a fraction `density` of pixels seed a particle with intensity in [0.5, 1].
    `density` may be an H x W map: each pixel seeds with its own probability."""
    u = rng.random(shape, dtype=np.float32)
    # The same uniform draw decides whether a pixel seeds and how bright it is.
    seeds = np.where(u < density, 1.0 - 0.5 * u / np.maximum(np.float32(density), np.float32(1e-12)), 0.0)
    return seeds.astype(np.float32, copy=False)


def blend(image: np.ndarray, colour: tuple[int, int, int], weight: np.ndarray) -> np.ndarray:
    """image (1 - weight) + colour weight per pixel: uint8 RGB, an 8-bit colour, H x W float32 weight in [0, 1].

    One OpenCV pass (cv2.blendLinear) instead of numpy broadcasting an
    H x W x 1 weight over three channels, which is several times slower and
    allocates full-size temporaries.
    """
    h, w = image.shape[:2]
    flat = cv2.merge([np.full((h, w), int(c), np.uint8) for c in colour])
    return cv2.blendLinear(image, flat, 1.0 - weight, weight)


def screen(image: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """Screen blend of uint8 RGB with a single-channel light layer in [0, 1]:
    255 - (255 - J)(1 - L), which is J (1 - L) + 255 L."""
    return blend(image, (255, 255, 255), np.clip(layer, 0.0, 1.0))
