"""Evaluation protocols: how a restored image is scored against its clean image.

Published all-in-one tables differ at the third decimal, so a table is only comparable with a
paper's when it is computed the paper's way. Both protocols score uint8 images, full size, no
border crop, and call scikit-image's metrics (the implementation the papers' scripts call). Restored
outputs are rounded to uint8 first, as saved images are (PromptIR's script scores the unrounded
float output: the two differ by about 0.01 dB):

* `rgb` (the default): PSNR on RGB, data range 255, and scikit-image's `structural_similarity`
  with its defaults (7 x 7 uniform window, sample covariance) over the colour channels, as
  Perceive-IR's and PromptIR's evaluation scripts compute them.
* `y`: the MATLAB convention of deraining and low-light papers: both images converted to BT.601
  luma (16-235, kept in floating point), PSNR on it, and SSIM with an 11 x 11 Gaussian window
  (sigma 1.5, population covariance), as MATLAB's `ssim` and BasicSR's `calculate_ssim`.

The tiers keep their own scoring (`degradations.ssim`, Gaussian-weighted on RGB): it is part of
the build format, not of a benchmark's protocol.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import degradations as D

Metric = Callable[[np.ndarray, np.ndarray], float]
PSNR_CAP = 100.0  # identical images score +inf: capped so that means stay finite


@dataclass(frozen=True)
class Protocol:
    """One way of scoring: `psnr(clean, other)` and `ssim(clean, other)` on H x W x 3 uint8 images."""

    name: str
    description: str
    psnr: Metric
    ssim: Metric


def _psnr(clean: np.ndarray, other: np.ndarray) -> float:
    mse = float(np.mean((clean.astype(np.float64) - other.astype(np.float64)) ** 2))
    return PSNR_CAP if mse == 0 else min(10.0 * math.log10(255.0**2 / mse), PSNR_CAP)


def _checked(clean: np.ndarray, other: np.ndarray, window: int = 1) -> None:
    if clean.shape != other.shape:
        raise D.UserError(f"cannot score a {other.shape} image against a {clean.shape} clean image")
    if min(clean.shape[:2]) < window:
        raise D.UserError(f"a {clean.shape[1]}x{clean.shape[0]} image is smaller than the {window} px SSIM window")


def rgb_psnr(clean: np.ndarray, other: np.ndarray) -> float:
    """PSNR on RGB, data range 255, capped at PSNR_CAP."""
    _checked(clean, other)
    return _psnr(clean, other)


def rgb_ssim(clean: np.ndarray, other: np.ndarray) -> float:
    from skimage.metrics import structural_similarity  # here: `perceive-ir --help` lists the protocols without it

    _checked(clean, other, 7)
    return float(structural_similarity(clean, other, channel_axis=-1, data_range=255))


def bt601_luma(image: np.ndarray) -> np.ndarray:
    """BT.601 luma in [16, 235] (float64) of an RGB uint8 image, as MATLAB's rgb2ycbcr computes it before rounding."""
    rgb = image.astype(np.float64) / 255.0
    return 16.0 + rgb @ np.array([65.481, 128.553, 24.966])


def y_psnr(clean: np.ndarray, other: np.ndarray) -> float:
    _checked(clean, other)
    return _psnr(bt601_luma(clean), bt601_luma(other))


def y_ssim(clean: np.ndarray, other: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    _checked(clean, other, 11)
    return float(structural_similarity(
        bt601_luma(clean), bt601_luma(other), data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    ))


PROTOCOLS: dict[str, Protocol] = {
    "rgb": Protocol("rgb", "PSNR on RGB; SSIM: scikit-image defaults (7x7 uniform window) over RGB "
                           "(Perceive-IR, PromptIR)", rgb_psnr, rgb_ssim),
    "y": Protocol("y", "PSNR and SSIM on BT.601 luma; SSIM with an 11x11 Gaussian window, sigma 1.5 "
                       "(MATLAB; deraining papers)", y_psnr, y_ssim),
}
DEFAULT_PROTOCOL = "rgb"


def get_protocol(name: str | Protocol = DEFAULT_PROTOCOL) -> Protocol:
    if isinstance(name, Protocol):
        return name
    if name not in PROTOCOLS:
        raise D.UserError(f"unknown evaluation protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]
