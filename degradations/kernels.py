"""Convolution kernels and particle layers shared by the blur, rain and snow types.

Kernels are drawn with OpenCV's primitives (cv2.line, cv2.circle) at 1/16-pixel precision, so
they are identical on every run. OpenCV anti-aliases only 8-bit images: the defocus disk is drawn
on one, so its rim is anti-aliased; streaks are one-pixel lines (rain softens its layers with a blur).
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

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
    """A straight streak `length` px long at `angle` degrees from vertical; peak 1, not normalised.
    A one-pixel line (`width` thick): OpenCV does not anti-alias a float32 canvas."""
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


def gaussian_taps(sigma: float, float_image: bool = False) -> np.ndarray:
    """The 1-D Gaussian (a column, sum 1) cv2.GaussianBlur takes for `sigma`: 6 sigma + 1 taps on
    8-bit images, 8 sigma + 1 on float ones."""
    return cv2.getGaussianKernel(int(round(sigma * (8 if float_image else 6) + 1)) | 1, sigma)


def disk_kernel(radius: float) -> np.ndarray:
    """Defocus: a uniform disk of `radius` px with anti-aliased rim, sum 1."""
    size = _odd(2 * radius + 3)
    # 8-bit, because OpenCV's LINE_AA anti-aliases 8-bit images only (on float32 it drew a hard rim
    # until engine version 3).
    canvas = np.zeros((size, size), np.uint8)
    c = (size - 1) / 2
    scale = 1 << _SUBPIXEL
    cv2.circle(canvas, (round(c * scale), round(c * scale)), max(1, round(radius * scale)), 255, -1, cv2.LINE_AA, _SUBPIXEL)
    return _normalised(canvas.astype(np.float32))


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
    # Python floats and lists in the loop: it is sequential, and indexing NumPy arrays element by
    # element cost three times as much.
    normal = rng.standard_normal((steps, 2)).tolist()
    uniform = rng.random((steps, 2)).tolist()
    v = complex(math.cos(2 * math.pi * uniform[0][0]), math.sin(2 * math.pi * uniform[0][0])) * step
    x = [0j] * steps
    for t in range(1, steps):
        shake = 0j
        if uniform[t][0] < big_shakes * anxiety:
            shake = 2 * v * complex(math.cos(math.pi + uniform[t][1] - 0.5), math.sin(math.pi + uniform[t][1] - 0.5))
        jitter = complex(normal[t][0], normal[t][1]) * gaussian_term
        v = v + shake + anxiety * (jitter - centripetal * x[t - 1]) * step
        v = v / abs(v) * step
        x[t] = x[t - 1] + v
    x = np.array(x, np.complex128)
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
    """Convolve a uint8 RGB image with a normalised 2-D kernel (mirrored borders).

    cv2.filter2D on the 8-bit image whatever the kernel's size: for kernels of 11 x 11 and more it
    works through its own DFT, and on 8-bit input that measured as fast as or faster than the float
    FFT (scipy) of the padded image that engine version 2 used, without the conversions. The
    kernel's all-zero rows and columns are cropped, its anchor kept where its centre was: a
    camera-shake kernel is often a long thin path in a square, and its work shrinks with it.
    """
    rows, cols = np.flatnonzero(kernel.any(axis=1)), np.flatnonzero(kernel.any(axis=0))
    top, left = int(rows[0]), int(cols[0])
    tight = kernel[top : int(rows[-1]) + 1, left : int(cols[-1]) + 1]
    anchor = (kernel.shape[1] // 2 - left, kernel.shape[0] // 2 - top)
    if not (0 <= anchor[0] < tight.shape[1] and 0 <= anchor[1] < tight.shape[0]):
        tight, anchor = kernel, (-1, -1)  # the centre outside the path's box: filter2D wants its anchor inside
    return cv2.filter2D(image, -1, tight, anchor=anchor, borderType=cv2.BORDER_REFLECT_101)


def particle_positions(
    rng: np.random.Generator, shape: tuple[int, int], density: float | np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, columns, intensities in [0.5, 1]) of the particles seeded when each pixel seeds one with
    probability `density` (a number, or an H x W map).

    Why not a uniform draw per pixel: particles are sparse (rain seeds 0.1-0.6 % of the pixels), and
    drawing their count (binomial) and positions costs O(particles), not O(pixels): at 512 x 512
    the per-pixel draw and its thresholding were a fifth of a rain image's time. A map thins a draw
    at its largest density, pixel by pixel (rejection), which is the same distribution. Two
    particles on one pixel (rare) both count.
    """
    h, w = shape
    peak = float(np.max(density)) if isinstance(density, np.ndarray) else float(density)
    if peak <= 0:
        empty = np.empty(0, np.int64)
        return empty, empty, np.empty(0, np.float32)
    count = int(rng.binomial(h * w, min(peak, 1.0)))
    flat = rng.integers(0, h * w, size=count)
    intensity = rng.uniform(0.5, 1.0, size=count).astype(np.float32)
    rows, cols = np.divmod(flat, w)
    if isinstance(density, np.ndarray):
        keep = rng.random(count) * peak < density[rows, cols]
        rows, cols, intensity = rows[keep], cols[keep], intensity[keep]
    return rows, cols, intensity


def particle_seeds(rng: np.random.Generator, shape: tuple[int, int], density: float | np.ndarray) -> np.ndarray:
    """A sparse float32 map: each pixel seeds a particle of intensity in [0.5, 1] with probability
    `density` (a number, or an H x W map): the positions of `particle_positions`, rendered."""
    rows, cols, intensity = particle_positions(rng, shape, density)
    seeds = np.zeros(shape, np.float32)
    seeds[rows, cols] = intensity
    return seeds


def draw_streaks(
    shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray, intensity: np.ndarray, length: float, angle: float, width: int,
) -> np.ndarray:
    """A float32 layer of straight streaks `length` px long at `angle` degrees from vertical, one
    centred on each particle at its intensity, overlapping streaks adding up: what correlating the
    particle map with `line_kernel` gives (the same one-pixel lines, stepped along their major axis).

    Why not that correlation: the particle map is sparse, and rasterising the streaks' pixels and
    summing them with one bincount costs O(streak pixels) instead of a full-image FFT per layer
    (at 512 x 512, most of a rain image's time).
    """
    h, w = shape
    if not len(rows):
        return np.zeros(shape, np.float32)
    dx = 0.5 * length * math.sin(math.radians(angle))
    dy = 0.5 * length * math.cos(math.radians(angle))
    steps = int(math.ceil(2 * max(abs(dx), abs(dy)))) + 1  # one pixel per step along the major axis
    t = np.linspace(-1.0, 1.0, steps)
    # Particles sit on whole pixels, so every streak is the same pixel offsets from its particle.
    off_x, off_y = np.rint(t * dx).astype(np.int32), np.rint(t * dy).astype(np.int32)
    if width > 1:  # thicker streaks: the line shifted across its minor axis, as wide as cv2.line draws it
        spread = np.arange(-math.ceil(width / 2), math.ceil(width / 2) + 1, dtype=np.int32)  # 2 -> 3 px, 3 and 4 -> 5
        across_x = abs(dy) >= abs(dx)  # a steep streak widens along x
        off_x = (off_x[None, :] + spread[:, None] * across_x).ravel()
        off_y = (off_y[None, :] + spread[:, None] * (not across_x)).ravel()
    xs = cols.astype(np.int32)[:, None] + off_x
    ys = rows.astype(np.int32)[:, None] + off_y
    inside = (xs.view(np.uint32) < w) & (ys.view(np.uint32) < h)  # negatives wrap to huge unsigned values
    weights = np.repeat(intensity, len(off_x)).reshape(xs.shape)
    layer = np.bincount((ys * w + xs)[inside], weights=weights[inside], minlength=h * w)
    return layer.astype(np.float32).reshape(h, w)


def blend(image: np.ndarray, colour: tuple[int, int, int], weight: np.ndarray) -> np.ndarray:
    """image (1 - weight) + colour weight per pixel: uint8 RGB, an 8-bit colour, H x W float32 weight in [0, 1].

    One OpenCV pass (cv2.blendLinear) instead of numpy broadcasting an
    H x W x 1 weight over three channels, which is several times slower and
    allocates full-size temporaries.
    """
    flat = _flat(image.shape[:2], tuple(int(c) for c in colour))
    return cv2.blendLinear(image, flat, 1.0 - weight, weight)


@lru_cache(maxsize=4)
def _flat(shape: tuple[int, int], colour: tuple[int, int, int]) -> np.ndarray:
    """A read-only image of one colour, kept for the next image of this size (rain and snow blend
    towards white every call: building it was a tenth of their time)."""
    flat = cv2.merge([np.full(shape, c, np.uint8) for c in colour])
    flat.flags.writeable = False
    return flat


def screen(image: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """Screen blend of uint8 RGB with a single-channel float32 light layer, clipped to [0, 1]:
    255 - (255 - J)(1 - L), which is J + (255 - J) L.

    In 8-bit steps, five OpenCV passes: the layer rounded to 1/255 (an error of at most half a grey
    level), spread to three channels, times the headroom 255 - J, added. A float blend
    (cv2.blendLinear with its 1 - L weight) took three times as long, a fifth of a rain image.
    """
    light = cv2.cvtColor(cv2.convertScaleAbs(layer, alpha=255.0), cv2.COLOR_GRAY2RGB)  # saturates: L clipped to [0, 1]
    return cv2.add(image, cv2.multiply(cv2.bitwise_not(image), light, scale=1.0 / 255))
