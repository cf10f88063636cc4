"""Contact sheets: labelled tiles in a grid, written as PNG. A picture to check at a glance."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

import degradations as D
from shards import output_folder

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_LINE = 16  # px per label line


def fit(image: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to size x size."""
    h, w = image.shape[:2]
    side = min(h, w)
    y, x = (h - side) // 2, (w - side) // 2
    return cv2.resize(np.ascontiguousarray(image[y : y + side, x : x + side]), (size, size), interpolation=cv2.INTER_AREA)


def colour_map(values: np.ndarray) -> np.ndarray:
    """An H x W map in [0, 1] as an RGB picture (viridis: dark blue 0, yellow 1)."""
    grey = np.clip(np.rint(values * 255), 0, 255).astype(np.uint8)
    return cv2.applyColorMap(grey, cv2.COLORMAP_VIRIDIS)[:, :, ::-1]


def tile(image: np.ndarray, lines: Sequence[str], size: int) -> np.ndarray:
    """An RGB tile: the image fitted to `size`, with text lines on a dark band below."""
    band = np.full((_LINE * max(1, len(lines)) + 4, size, 3), 24, np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(band, line, (4, _LINE * (i + 1) - 3), _FONT, 0.42, (235, 235, 235), 1, cv2.LINE_AA)
    return np.vstack([fit(image, size), band])


def grid(rows: Sequence[Sequence[np.ndarray]], row_labels: Sequence[str] | None = None, gap: int = 4) -> np.ndarray:
    """Stack equally sized tiles into rows (short rows padded), with an optional label column."""
    th, tw = rows[0][0].shape[:2]
    ncols = max(len(r) for r in rows)
    label_w = 110 if row_labels else 0
    out = np.full((len(rows) * (th + gap) + gap, label_w + ncols * (tw + gap) + gap, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        y = gap + r * (th + gap)
        if row_labels:
            cv2.putText(out, row_labels[r], (6, y + th // 2), _FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        for c, t in enumerate(row):
            x = label_w + gap + c * (tw + gap)
            out[y : y + th, x : x + tw] = t
    return out


def save_png(image: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    if not cv2.haveImageWriter(str(path)):
        raise D.UserError(f"cannot write {path}: give an image name ending in .png")
    output_folder(path.parent)
    if not cv2.imwrite(str(path), image[:, :, ::-1]):
        raise D.NotWritable(f"cannot write {path} (an image name ending in .png, in a folder you can write)")
    return path
