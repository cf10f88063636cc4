"""How close a synthetic degradation type comes to a real benchmark's degraded images.

On the benchmark's own clean images, the type's severity is searched (bisection on the mean input
PSNR) until the synthetic set's mean PSNR matches the real inputs'; then real and synthetic are
compared three ways:

* the input PSNR / SSIM distributions: mean, spread and the two-sample Kolmogorov-Smirnov distance;
* statistics of the degradation itself, measured the same way on both (`degradation_stats`);
* a classifier two-sample test: a small CNN learns to tell real from synthetic degraded crops on
  half of the images; its accuracy on the other half is the answer (0.5: indistinguishable).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
import torch
from torch import nn

import degradations as D
from model import seeded_torch
from pipeline.eval.benchmarks import BenchTask, benchmark_tasks
from pipeline.eval.classical import IMMERKAER_SCALE, dark_channel_estimate, immerkaer_response
from pipeline.eval.protocols import PROTOCOLS

STAT_DOC = {
    "residual_std": "std of the luma residual (degraded - clean), 8-bit levels",
    "residual_corr": "lag-1 spatial correlation of the residual's high-pass part (0: white)",
    "luma_ratio": "mean luma of degraded / clean",
    "streak_coverage": "fraction of pixels 8+ levels brighter than clean",
    "streak_width_px": "horizontal half-width of the positive residual's autocorrelation, px",
    "streak_length_px": "vertical half-width of the positive residual's autocorrelation, px",
    "streak_angle_deg": "dominant streak direction from the structure tensor (0: vertical)",
    "airlight_luma": "dark-channel airlight, luma in [0, 1]",
    "airlight_blue_excess": "airlight blue minus red, in [0, 1]",
    "transmission": "mean dark-channel transmission of the degraded image",
    "luma_p95": "95th percentile of the degraded luma, 8-bit levels",
    "dark_noise": "noise level (Immerkaer, luma) in the darker half of the degraded image, 8-bit levels",
}
_TYPE_STATS = {
    "rain": ("streak_coverage", "streak_width_px", "streak_length_px", "streak_angle_deg"),
    "haze": ("airlight_luma", "airlight_blue_excess", "transmission"),
    "low_light": ("luma_p95", "dark_noise"),
}
_COMMON = ("residual_std", "residual_corr", "luma_ratio")


def _luma(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)


def _half_width(signal: np.ndarray, axis: int) -> float:
    """Lag (px) at which the mean autocorrelation of `signal` along `axis` falls to half its zero-lag value."""
    x = signal - signal.mean()
    zero = float((x * x).mean())
    if zero == 0:
        return 0.0
    for lag in range(1, min(64, x.shape[axis] // 2)):
        a = np.take(x, range(lag, x.shape[axis]), axis=axis)
        b = np.take(x, range(x.shape[axis] - lag), axis=axis)
        if float((a * b).mean()) <= zero / 2:
            return float(lag)
    return 64.0


def degradation_stats(task: str, degraded: np.ndarray, clean: np.ndarray) -> dict[str, float]:
    """The statistics of STAT_DOC that apply to `task`, for one pair."""
    yd, yc = _luma(degraded), _luma(clean)
    residual = yd - yc
    high = residual - cv2.GaussianBlur(residual, (0, 0), 3)
    corr = [np.corrcoef(high[:, 1:].ravel(), high[:, :-1].ravel())[0, 1], np.corrcoef(high[1:].ravel(), high[:-1].ravel())[0, 1]]
    stats = {"residual_std": float(residual.std()), "residual_corr": float(np.nan_to_num(np.mean(corr))),
             "luma_ratio": float(yd.mean() / max(yc.mean(), 1e-6))}
    if task == "rain":
        positive = np.clip(residual, 0, None)
        gx, gy = cv2.Sobel(positive, cv2.CV_64F, 1, 0), cv2.Sobel(positive, cv2.CV_64F, 0, 1)
        # Streaks run across their strongest gradient: the angle of the tensor's minor axis, from vertical.
        angle = 0.5 * math.degrees(math.atan2(2 * (gx * gy).sum(), ((gx * gx) - (gy * gy)).sum()))
        stats |= {"streak_coverage": float((residual > 8).mean()), "streak_width_px": _half_width(positive, 1),
                  "streak_length_px": _half_width(positive, 0), "streak_angle_deg": float(-angle)}
    elif task == "haze":
        airlight, t = dark_channel_estimate(degraded.astype(np.float64) / 255)
        stats |= {"airlight_luma": float(airlight @ [0.299, 0.587, 0.114]), "airlight_blue_excess": float(airlight[2] - airlight[0]),
                  "transmission": float(t.mean())}
    elif task == "low_light":
        # Immerkaer's estimate, its Laplacian response averaged only where the whole 3x3 neighbourhood is
        # in the darker half (zeroing the bright half instead would count the mask's edges as noise).
        dark = cv2.erode((yd <= np.median(yd)).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        noise = IMMERKAER_SCALE * float(immerkaer_response(yd)[dark].mean()) if dark.any() else float("nan")
        stats |= {"luma_p95": float(np.percentile(yd, 95)), "dark_noise": noise}
    return stats


def synthesise(clean: np.ndarray, type_name: str, severity: float, seed: int, index: int) -> np.ndarray:
    """Image `index` of the synthetic set: the same draw in the severity search and in the final set."""
    return D.degrade(clean, type_name, severity, seed=D.derive_seed(seed, "synthetic", index))[0]


def match_severity(cleans: Sequence[np.ndarray], target_psnr: float, type_name: str, seed: int = 0, steps: int = 12,
                   indices: Sequence[int] | None = None) -> float:
    """The severity whose synthetic inputs' mean PSNR is closest to `target_psnr` (bisection: PSNR falls
    with severity); `indices` are the images' places in the whole set (their seeds)."""
    psnr = PROTOCOLS["rgb"].psnr
    indices = list(indices if indices is not None else range(len(cleans)))

    def mean_psnr(severity: float) -> float:
        return float(np.mean([psnr(c, synthesise(c, type_name, severity, seed, i)) for i, c in zip(indices, cleans)]))

    lo, hi = 0.0, 1.0
    if mean_psnr(hi) > target_psnr:
        return hi  # the type's strongest setting is still milder than the real set
    if mean_psnr(lo) < target_psnr:
        return lo
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mean_psnr(mid) > target_psnr else (lo, mid)
    return (lo + hi) / 2


class _Critic(nn.Module):
    """A small CNN that says real (1) or synthetic (0) for a crop."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for cin, cout in ((3, 16), (16, 32), (32, 64)):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(64, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)


def _crops(images: Sequence[np.ndarray], n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    out = []
    for _ in range(n):
        img = images[int(rng.integers(len(images)))]
        y, x = int(rng.integers(img.shape[0] - size + 1)), int(rng.integers(img.shape[1] - size + 1))
        out.append(img[y : y + size, x : x + size])
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float().div(255)


def two_sample_accuracy(real: Sequence[np.ndarray], synthetic: Sequence[np.ndarray], seed: int = 0, *, crop: int = 64,
                        steps: int = 300, batch: int = 32) -> float:
    """Held-out accuracy of a CNN trained to tell real from synthetic crops; images i of both lists
    (the same scene) go to the same half, so scenes never cross from training to testing."""
    n = len(real)
    if n < 4:
        raise D.UserError(f"the two-sample test needs at least 4 images, not {n}")
    crop = min(crop, *(min(img.shape[:2]) for img in (*real, *synthetic)))
    order = np.random.default_rng(seed).permutation(n)
    train, test = order[: n // 2], order[n // 2 :]
    rng = np.random.default_rng(D.derive_seed(seed, "crops"))
    generator = torch.Generator().manual_seed(seed)
    with seeded_torch(seed):
        critic = _Critic()
    opt = torch.optim.Adam(critic.parameters(), 1e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    train_real, train_syn = [real[i] for i in train], [synthetic[i] for i in train]
    for _ in range(steps):
        x = torch.cat([_crops(train_real, batch // 2, crop, rng), _crops(train_syn, batch // 2, crop, rng)])
        y = torch.cat([torch.ones(batch // 2), torch.zeros(batch // 2)])
        perm = torch.randperm(batch, generator=generator)
        loss = loss_fn(critic(x[perm]), y[perm])
        opt.zero_grad()
        loss.backward()
        opt.step()
    critic.eval()
    with torch.no_grad():
        x_real, x_syn = _crops([real[i] for i in test], 200, crop, rng), _crops([synthetic[i] for i in test], 200, crop, rng)
        right = (critic(x_real) > 0).sum() + (critic(x_syn) <= 0).sum()
    return float(right) / 400


@dataclass
class RealismReport:
    benchmark: str
    task: str
    type: str
    severity: float
    n: int
    psnr: dict[str, dict[str, float]] = field(default_factory=dict)  # real / synthetic -> mean, std
    ssim: dict[str, dict[str, float]] = field(default_factory=dict)
    ks: dict[str, float] = field(default_factory=dict)  # metric -> two-sample KS distance
    stats: dict[str, dict[str, float]] = field(default_factory=dict)  # stat -> real / synthetic mean
    two_sample_accuracy: float = float("nan")

    def to_record(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        lines = [f"{self.type} against {self.benchmark} ({self.task}, {self.n} images): matched severity {self.severity:.3f}",
                 f"{'':<22}{'real':>16}{'synthetic':>16}"]
        for metric, table in (("PSNR", self.psnr), ("SSIM", self.ssim)):
            r, s = table["real"], table["synthetic"]
            lines.append(f"{'input ' + metric:<22}{r['mean']:>9.3f} +-{r['std']:<5.3f}{s['mean']:>9.3f} +-{s['std']:<5.3f}"
                         f"  KS {self.ks[metric.lower()]:.2f}")
        for name, pair in self.stats.items():
            lines.append(f"{name:<22}{pair['real']:>16.3f}{pair['synthetic']:>16.3f}  {STAT_DOC[name]}")
        lines.append(f"two-sample CNN accuracy on held-out images: {self.two_sample_accuracy:.3f} (0.5: indistinguishable)")
        return "\n".join(lines)


def _summary(values: Sequence[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def measure_realism(task: BenchTask, type_name: str, *, seed: int = 0, max_images: int | None = None,
                    search_images: int = 24) -> tuple[RealismReport, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """The report for `type_name` against one benchmark task, and (clean, real, synthetic) triplets for pictures."""
    from scipy.stats import ks_2samp

    D.get(type_name)  # an unknown type fails here, before any work
    if max_images is not None and max_images < 4:
        raise D.UserError(f"--max-images {max_images}: the two-sample test needs at least 4 images")
    pairs = [(clean, degraded) for _, degraded, clean in itertools.islice(task.images(), max_images)]
    cleans, reals = [c for c, _ in pairs], [d for _, d in pairs]
    rgb = PROTOCOLS["rgb"]
    real_psnr = [rgb.psnr(c, d) for c, d in pairs]
    step = max(1, len(cleans) // search_images)  # the search on an even subset, against that subset's own mean
    picked = range(0, len(cleans), step)
    severity = match_severity([cleans[i] for i in picked], float(np.mean(real_psnr[::step])), type_name, seed, indices=picked)
    synthetic = [synthesise(c, type_name, severity, seed, i) for i, c in enumerate(cleans)]
    syn_psnr = [rgb.psnr(c, s) for c, s in zip(cleans, synthetic)]
    real_ssim = [rgb.ssim(c, d) for c, d in pairs]
    syn_ssim = [rgb.ssim(c, s) for c, s in zip(cleans, synthetic)]
    # The benchmark's task names the statistics; an unregistered set is measured as the type it is compared with.
    kind = task.degradation if task.degradation in _TYPE_STATS or task.benchmark.size is not None else type_name
    real_stats = [degradation_stats(kind, d, c) for c, d in pairs]
    syn_stats = [degradation_stats(kind, s, c) for c, s in zip(cleans, synthetic)]
    names = _COMMON + _TYPE_STATS.get(kind, ())
    report = RealismReport(
        benchmark=task.benchmark.title, task=task.name, type=type_name, severity=severity, n=len(pairs),
        psnr={"real": _summary(real_psnr), "synthetic": _summary(syn_psnr)},
        ssim={"real": _summary(real_ssim), "synthetic": _summary(syn_ssim)},
        ks={"psnr": float(ks_2samp(real_psnr, syn_psnr).statistic), "ssim": float(ks_2samp(real_ssim, syn_ssim).statistic)},
        stats={k: {"real": float(np.mean([s[k] for s in real_stats])), "synthetic": float(np.mean([s[k] for s in syn_stats]))}
               for k in names},
        two_sample_accuracy=two_sample_accuracy(reals, synthetic, seed),
    )
    return report, list(zip(cleans, reals, synthetic))


def realism(spec: str, type_name: str, *, sigma: int = 25, seed: int = 0, max_images: int | None = None) -> tuple[RealismReport, list]:
    """`--bench NAME=DIR` against `type_name`; a noise set uses its sigma-`sigma` task."""
    tasks = benchmark_tasks([spec])
    if tasks[0].benchmark.clean_only:
        tasks = [t for t in tasks if t.sigma == sigma]
        if not tasks:
            raise D.UserError(f"noise sets are evaluated at sigma 15, 25 or 50, not {sigma}")
    if len(tasks) != 1:
        raise D.UserError(f"{spec} holds {len(tasks)} tasks ({', '.join(t.name for t in tasks)}): give one degraded folder "
                          "as NAME=DEGRADED_DIR:CLEAN_DIR")
    return measure_realism(tasks[0], type_name, seed=seed, max_images=max_images)
