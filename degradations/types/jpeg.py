"""JPEG compression artefacts at a quality factor."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from degradations.base import Degradation, require_range
from degradations.errors import UserError
from degradations.registry import register


_DECODE_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10


@register
class Jpeg(Degradation):
    """Encode and decode with libjpeg (through OpenCV, as albumentations' ImageCompression
    does) at `quality` 1-100; 4:2:0 chroma subsampling, the libjpeg default."""

    name = "jpeg"
    required = ("quality",)
    min_size = 8

    def check(self, params: Mapping[str, Any]) -> None:
        require_range(self.name, "quality", params["quality"], 1, 100)
        if int(params["quality"]) != params["quality"]:
            raise UserError(f"jpeg quality must be an integer, got {params['quality']}")

    def params(self, rng: np.random.Generator, severity: float) -> dict[str, Any]:
        return {"quality": int(round(95 - 94 * severity))}

    def apply(self, image: np.ndarray, params: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
        # libjpeg reads BGR: cvtColor, not a [..., ::-1] view, which OpenCV would copy slowly. (Encoding
        # the RGB array as it is would be a pass less, as albumentations does, and would convert the
        # wrong channels to luma and chroma.) Decoding gives RGB directly where OpenCV can.
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(params["quality"])])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        if _DECODE_RGB is not None:
            return cv2.imdecode(data, _DECODE_RGB)
        return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
