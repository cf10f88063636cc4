"""Image conventions at every public boundary: uint8, H x W x 3, RGB.

Also the sRGB <-> linear-light conversions that the physical models (noise,
low light) work in, as lookup tables so they cost one gather per pixel.
"""

from __future__ import annotations

import cv2
import numpy as np

from degradations.errors import UserError


def as_rgb_uint8(image: np.ndarray, *, what: str = "image") -> np.ndarray:
    """Return `image` as a contiguous uint8 H x W x 3 RGB array.

    Grayscale (H x W or H x W x 1) is broadcast to three channels, an alpha
    channel is dropped, uint16 is scaled to 8 bits. Anything else raises a
    UserError (a ValueError) saying what was wrong.
    """
    if not isinstance(image, np.ndarray):
        raise UserError(f"{what} must be a numpy array, got {type(image).__name__}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise UserError(f"{what} must be H x W or H x W x C, got shape {image.shape}")
    channels = image.shape[2]
    if channels not in (1, 3, 4):
        raise UserError(f"{what} must have 1, 3 or 4 channels, got {channels} (shape {image.shape})")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise UserError(f"{what} is empty (shape {image.shape})")
    if image.dtype == np.uint16:
        # Round to nearest: 65535 -> 255, 0 -> 0, and a 16-bit ramp keeps its order.
        image = ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise UserError(f"{what} must be uint8 or uint16, got {image.dtype}")
    if channels == 1:
        image = np.repeat(image, 3, axis=2)
    elif channels == 4:
        image = image[:, :, :3]
    return np.ascontiguousarray(image)


def check_size(image: np.ndarray, min_size: int, name: str) -> None:
    """Raise if `image` is smaller than what a degradation's kernels need."""
    h, w = image.shape[:2]
    if min(h, w) < min_size:
        raise UserError(f"{name} needs images of at least {min_size}x{min_size} pixels, got {w}x{h}")


def _srgb_to_linear(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * np.power(v, 1 / 2.4) - 0.055)


_SRGB_TO_LINEAR = _srgb_to_linear(np.arange(256, dtype=np.float64) / 255.0).astype(np.float32)
# Linear values are quantised to 16 bits before the lookup: even near black,
# where sRGB is steepest, a step is 1/20 of an 8-bit level.
_LIN_LEVELS = 1 << 16
_LINEAR_TO_SRGB = (_linear_to_srgb(np.arange(_LIN_LEVELS) / (_LIN_LEVELS - 1)) * 255.0 + 0.5).astype(np.uint8)


def srgb_to_linear(image: np.ndarray) -> np.ndarray:
    """uint8 sRGB -> float32 linear light in [0, 1]."""
    return cv2.LUT(image, _SRGB_TO_LINEAR) if image.ndim == 3 and image.shape[2] == 3 else _SRGB_TO_LINEAR[image]


def linear_to_srgb_uint8(linear: np.ndarray) -> np.ndarray:
    """float linear light (any range; clipped to [0, 1]) -> uint8 sRGB."""
    idx = np.multiply(linear, np.float32(_LIN_LEVELS - 1), dtype=np.float32)
    idx += 0.5
    np.clip(idx, 0.0, _LIN_LEVELS - 1, out=idx)
    return np.take(_LINEAR_TO_SRGB, idx.astype(np.uint16))
