"""How stored images are encoded: PNG (default), lossless WebP, or JPEG at a quality.

A lossy codec changes the very noise statistics the tiers describe, so it is
never the default and a dataset built with one says so in its build record.
Encoders are deterministic: the same pixels give the same bytes (no
timestamps or other ancillary chunks are written).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

import degradations as D

# Lossless WebP effort: method 2 is ~5x faster than libwebp's default (4) for ~the same size on photos.
_WEBP_METHOD = 2
_WEBP_EFFORT = 50


@dataclass(frozen=True)
class Codec:
    spec: str  # as given: png, webp, jpeg:90
    name: str  # png, webp, jpeg
    extension: str  # member suffix: png, webp, jpg
    level: int | None = None  # PNG zlib level
    quality: int | None = None  # JPEG quality

    @property
    def lossy(self) -> bool:
        return self.name == "jpeg"

    def encode(self, image: np.ndarray) -> bytes:
        """uint8 RGB -> encoded bytes."""
        if self.name == "webp":
            from PIL import Image

            buf = io.BytesIO()
            Image.fromarray(image).save(buf, format="WEBP", lossless=True, quality=_WEBP_EFFORT, method=_WEBP_METHOD)
            return buf.getvalue()
        if self.name == "png":
            ext, flags = ".png", [cv2.IMWRITE_PNG_COMPRESSION, self.level]
        else:
            ext, flags = ".jpg", [cv2.IMWRITE_JPEG_QUALITY, self.quality]
        ok, buf = cv2.imencode(ext, np.ascontiguousarray(image[:, :, ::-1]), flags)
        if not ok:
            raise RuntimeError(f"OpenCV could not encode a {image.shape} image as {self.name}")
        return buf.tobytes()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"spec": self.spec, "name": self.name, "extension": self.extension, "lossy": self.lossy}
        if self.level is not None:
            d["level"] = self.level
        if self.quality is not None:
            d["quality"] = self.quality
        if self.name == "webp":
            d["method"] = _WEBP_METHOD
        return d


def parse_codec(spec: str, png_level: int = 1) -> Codec:
    """`png`, `webp` (lossless) or `jpeg:Q` (Q in 1-100, lossy)."""
    name, _, arg = spec.strip().lower().partition(":")
    if name == "png" and not arg:
        return Codec(spec, "png", "png", level=png_level)
    if name == "webp" and not arg:
        return Codec(spec, "webp", "webp")
    if name in ("jpeg", "jpg"):
        if not arg.isdigit() or not 1 <= int(arg) <= 100:
            raise D.UserError(f"--codec {spec!r}: give the JPEG quality as jpeg:Q with Q in 1-100, e.g. jpeg:95")
        return Codec(spec, "jpeg", "jpg", quality=int(arg))
    raise D.UserError(f"unknown --codec {spec!r}; choose png, webp (lossless) or jpeg:Q (lossy)")


_PILLOW_LIMIT = threading.Lock()


@contextmanager
def pillow_pixel_limit_lifted() -> Iterator[None]:
    """Pillow's own pixel limit (89.5 MP warns, 179 MP raises) off while a header is read: the callers
    apply their own limit from the header (--max-pixels, the manifest's size) before decoding.
    Pillow's limit is process-global, so the change is made under a lock and undone."""
    from PIL import Image

    with _PILLOW_LIMIT:
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from an encoded image's header, without decoding; None when unreadable."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with pillow_pixel_limit_lifted(), Image.open(io.BytesIO(data)) as im:  # reads the header only
            return im.size
    except (UnidentifiedImageError, OSError, ValueError):
        return None  # decode() then says what is wrong


def decode_map(data: bytes) -> np.ndarray:
    """A stored severity or quality map (8-bit greyscale PNG) as H x W float32 in [0, 1]; ValueError if it is not one."""
    grey = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if grey is None:
        raise ValueError("not a greyscale PNG map")
    return grey.astype(np.float32) / np.float32(255)


def decode(data: bytes, *, view: bool = False) -> np.ndarray:
    """Encoded bytes of any of these codecs -> uint8 RGB (OpenCV: the fastest PNG decoder at hand).

    view=True may return the common 8-bit RGB case as a strided view of the
    BGR buffer, for callers (the loader's batch conversion) that read it once anyway.
    """
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError("not an image OpenCV can decode")
    if image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
        return image[:, :, ::-1] if view else np.ascontiguousarray(image[:, :, ::-1])
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return D.as_rgb_uint8(image[:, :, ::-1] if image.ndim == 3 else image, what="stored image")
