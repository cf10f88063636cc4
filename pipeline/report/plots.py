"""Training curves as PNG, drawn with OpenCV.

Why not matplotlib: it would be the project's only use of it, a large
dependency for a few line charts in the demo report.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def read_metrics(path: str | Path, split: str = "train") -> list[dict]:
    """Rows of a metrics.jsonl written by the trainer, for one split."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("split") == split]


def line_chart(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str, size: tuple[int, int] = (560, 320)
) -> np.ndarray:
    """An RGB chart of named (x, y) series on shared axes, with a legend."""
    w, h = size
    left, right, top, bottom = 56, 12, 28, 30
    img = np.full((h, w, 3), 255, np.uint8)
    xs = np.concatenate([np.asarray(x, float) for x, _ in series.values()]) if series else np.zeros(1)
    ys = np.concatenate([np.asarray(y, float) for _, y in series.values()]) if series else np.zeros(1)
    ys = ys[np.isfinite(ys)] if np.isfinite(ys).any() else np.zeros(1)
    x0, x1 = float(xs.min()), float(xs.max()) or 1.0
    y0, y1 = float(ys.min()), float(ys.max())
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    if x1 == x0:
        x1 = x0 + 1

    def to_px(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        px = left + (x - x0) / (x1 - x0) * (w - left - right)
        py = h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom)
        return np.stack([px, py], axis=1).round().astype(np.int32)

    cv2.rectangle(img, (left, top), (w - right, h - bottom), (180, 180, 180), 1)
    for frac in (0.0, 0.5, 1.0):
        yv = y0 + frac * (y1 - y0)
        py = int(round(h - bottom - frac * (h - top - bottom)))
        cv2.putText(img, f"{yv:.3g}", (4, py + 4), _FONT, 0.38, (60, 60, 60), 1, cv2.LINE_AA)
        xv = x0 + frac * (x1 - x0)
        px = int(round(left + frac * (w - left - right)))
        label = f"{xv:.0f}"
        px = min(px - 10, w - 8 * len(label))  # keep the last tick's label inside the picture
        cv2.putText(img, label, (px, h - 10), _FONT, 0.38, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.putText(img, title, (left, 18), _FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for i, (name, (x, y)) in enumerate(series.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        pts = to_px(np.asarray(x, float), np.asarray(y, float))
        if len(pts) > 1:
            cv2.polylines(img, [pts], False, colour, 2, cv2.LINE_AA)
        elif len(pts) == 1:
            cv2.circle(img, tuple(int(v) for v in pts[0]), 3, colour, -1)
        cv2.putText(img, name, (w - right - 150, top + 16 + 16 * i), _FONT, 0.42, colour, 1, cv2.LINE_AA)
    return img
