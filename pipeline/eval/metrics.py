"""Image-quality and perceiver metrics used by validation and `perceive-ir eval`.

Validation on shards scores with the engine's PSNR and Gaussian-window SSIM
(`degradations.ssim`, the tiers' own score). Benchmark tables use the papers'
protocols instead (`pipeline.eval.protocols`: scikit-image's default SSIM).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np
import torch

import degradations as D
from pipeline.eval.protocols import rgb_psnr


def to_tensor(image: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """H x W x 3 uint8 -> 1 x 3 x H x W float32 in [0, 1] on `device`."""
    return torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255).to(device)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """B x 3 x H x W float in [0, 1] -> B x H x W x 3 uint8 (rounded, clipped)."""
    return (images.detach().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


class RestorationScores:
    """Running PSNR / SSIM of restored and input images against clean, grouped by (type, tier)."""

    def __init__(self) -> None:
        self._sums: dict[tuple[str, str], np.ndarray] = defaultdict(lambda: np.zeros(5))

    def add(self, restored: torch.Tensor, degraded: torch.Tensor, clean: torch.Tensor, types: Iterable[str], tier: str) -> None:
        for r, d, c, t in zip(to_uint8(restored), to_uint8(degraded), to_uint8(clean), types):
            self._sums[(t, tier)] += (rgb_psnr(c, r), D.ssim(c, r), rgb_psnr(c, d), D.ssim(c, d), 1)

    def table(self) -> list[dict[str, float | str]]:
        """One row per (type, tier), then per type over tiers, then the average over types."""
        rows = []
        for (t, tier), s in sorted(self._sums.items()):
            rows.append(_row(t, tier, s))
        by_type: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(5))
        for (t, _), s in self._sums.items():
            by_type[t] += s
        per_type = [_row(t, "all", s) for t, s in sorted(by_type.items())]
        if per_type:
            mean = {k: float(np.mean([r[k] for r in per_type])) for k in ("psnr", "ssim", "input_psnr", "input_ssim", "psnr_gain")}
            rows += per_type + [{"type": "average", "tier": "all", "n": sum(int(r["n"]) for r in per_type), **mean}]
        return rows




def _row(t: str, tier: str, s: np.ndarray) -> dict[str, float | str]:
    n = s[4]
    return {
        "type": t, "tier": tier, "n": int(n),
        "psnr": s[0] / n, "ssim": s[1] / n, "input_psnr": s[2] / n, "input_ssim": s[3] / n,
        "psnr_gain": (s[0] - s[2]) / n,
    }


def spearman(a: Iterable[float], b: Iterable[float]) -> float:
    """Spearman rank correlation (scipy's, ties averaged); nan when either side is constant."""
    from scipy.stats import spearmanr

    a, b = np.asarray(list(a), float), np.asarray(list(b), float)
    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(spearmanr(a, b).statistic)
