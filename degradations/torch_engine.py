"""The built-in types as batched torch operations, on any device: on-the-fly synthesis at training scale.

    degraded, recipes = D.degrade_batch(images, "rain", severity=[0.3, 0.8], seeds=[1, 2], device="cuda")

Parameters are drawn by the same `params()` as the NumPy engine, from the same generators, so a
recipe here is the recipe `D.degrade` makes for that seed and severity (recorded per sample),
and the kernels of blur, rain and snow are the NumPy engine's own (drawn on the CPU, not computed
on the device). Pixel randomness (noise fields, streak and flake positions) comes from one torch
generator per sample, seeded from the recipe's seed and the component: a batch is the same for a
given seed and device, whatever else is in it. The bytes are not the NumPy engine's; the
statistics are (tested: mean PSNR against the clean image within 0.2 dB, noise standard deviation
within 1 %).

Why not kornia's augmentations: they draw their own parameters, so their recipes could not be the
NumPy engine's; the operations here are a few convolutions, FFTs and pointwise maps in torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from degradations.errors import UserError
from degradations.kernels import gaussian_taps, line_kernel
from degradations.recipe import Recipe, Step, _check_seed, _check_severity, _components, _streams, scalar_step
from degradations.registry import get
from degradations.seeds import derive_seed
from degradations.types.haze import FAR, NEAR
from degradations.types.snow import _VEIL_LEVEL

_DIRECT_MAX = 15  # kernels up to this side go to a grouped convolution; larger ones through one FFT


def degrade_batch(
    images: torch.Tensor, name: str, severity: float | Sequence[float], seeds: Sequence[int],
    device: str | torch.device | None = None,
) -> tuple[torch.Tensor, list[Recipe]]:
    """Degrade a batch: `images` uint8 B x 3 x H x W, or float in [0, 1] (the same dtype comes
    back, on `device`, default the images' own), a severity per image (or one for all) and a seed
    per image. Returns the batch and each image's recipe (`D.replay` makes the NumPy engine's
    version of it)."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise UserError(f"images must be a B x 3 x H x W tensor, got {getattr(images, 'shape', type(images).__name__)}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise UserError(f"images must be uint8 or float in [0, 1], got {images.dtype}")
    b = images.shape[0]
    if isinstance(severity, torch.Tensor):  # a batch's own tensors of severities and seeds are welcome too
        severity = severity.tolist()
    severities = [severity] * b if isinstance(severity, (int, float)) else list(severity)
    seeds = seeds.tolist() if isinstance(seeds, torch.Tensor) else list(seeds)
    if len(severities) != b or len(seeds) != b:
        raise UserError(f"give one severity and one seed per image: {b} images, {len(severities)} severities, {len(seeds)} seeds")
    severities = [_check_severity(s) for s in severities]
    seeds = [_check_seed(s) for s in seeds]
    kind = get(name)
    components = _components(kind)
    unknown = [c.name for c in components if c.name not in _OPS]
    if unknown:
        raise UserError(f"the torch engine has the built-in types only; {', '.join(unknown)} runs on the NumPy engine (D.degrade)")
    if min(images.shape[-2:]) < kind.min_size:
        raise UserError(f"{kind.name} needs images of at least {kind.min_size} px a side, got {images.shape[-1]}x{images.shape[-2]}")
    device = torch.device(device) if device is not None else images.device
    x = images.to(device)
    x = x.float() / 255 if images.dtype == torch.uint8 else x.float()
    steps: list[list[Step]] = [[] for _ in range(b)]
    for i, comp in enumerate(components):
        params, apply_rngs = [], []
        for n in range(b):
            params_rng, apply_rng = _streams(seeds[n], i, comp.name)
            step = scalar_step(comp, params_rng, severities[n])
            params.append(step.params)
            apply_rngs.append(apply_rng)
            steps[n].append(step)
        active = torch.tensor([s > 0 for s in severities], device=device)  # severity 0 is the clean image, exactly
        gens = [_generator(derive_seed(seeds[n], i, comp.name, "torch"), device) for n in range(b)]
        out = _OPS[comp.name](x, params, apply_rngs, gens)
        x = torch.where(active[:, None, None, None], out, x)
    recipes = [Recipe(kind.name, severities[n], seeds[n], tuple(steps[n])) for n in range(b)]
    if images.dtype == torch.uint8:
        return (x * 255).round_().clamp_(0, 255).to(torch.uint8), recipes
    return x.clamp(0, 1).to(images.dtype), recipes


def _generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _per_sample(fn, gens: list[torch.Generator], shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """One draw of `shape` per sample, each from its own generator, stacked: (B, *shape)."""
    return torch.stack([fn(shape, generator=g, device=device) for g in gens])


def _column(values: Sequence[float], x: torch.Tensor) -> torch.Tensor:
    """Per-sample scalars as a (B, 1, 1, 1) tensor on x's device."""
    return torch.tensor(values, dtype=torch.float32, device=x.device).view(-1, 1, 1, 1)


# sRGB <-> linear light, the formulas of degradations.image (which tabulates them).
def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(v: torch.Tensor) -> torch.Tensor:
    v = v.clamp(0, 1)
    return torch.where(v <= 0.0031308, v * 12.92, 1.055 * v.clamp_min(1e-12) ** (1 / 2.4) - 0.055)


def correlate(x: torch.Tensor, kernels: torch.Tensor, border: str) -> torch.Tensor:
    """x (B, C, H, W) correlated with one kernel per sample, (B, k, k), its anchor at the centre;
    border "reflect" (OpenCV's REFLECT_101) or "constant" (zeros): what cv2.filter2D computes."""
    b, c, h, w = x.shape
    k = kernels.shape[-1]
    pad = k // 2
    padded = F.pad(x, (pad, pad, pad, pad), mode=border) if border == "reflect" else F.pad(x, (pad, pad, pad, pad))
    if k <= _DIRECT_MAX:
        weight = kernels.repeat_interleave(c, dim=0)[:, None].to(x.dtype)
        return F.conv2d(padded.reshape(1, b * c, h + 2 * pad, w + 2 * pad), weight, groups=b * c).reshape(b, c, h, w)
    # One FFT of the padded batch: correlation is convolution with the kernel turned 180 degrees.
    size = (h + 2 * pad, w + 2 * pad)
    spectrum = torch.fft.rfft2(padded, s=size) * torch.fft.rfft2(kernels.flip(-1, -2).to(x.dtype), s=size)[:, None]
    full = torch.fft.irfft2(spectrum, s=size)
    return full[..., k - 1 : k - 1 + h, k - 1 : k - 1 + w]


def _stack(kernels: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    """Kernels of different odd sides, centred in zeros to the largest side: (B, k, k)."""
    side = max(max(k.shape) for k in kernels)
    side += 1 - side % 2
    out = np.zeros((len(kernels), side, side), np.float32)
    for n, k in enumerate(kernels):
        top, left = (side - k.shape[0]) // 2, (side - k.shape[1]) // 2
        out[n, top : top + k.shape[0], left : left + k.shape[1]] = k
    return torch.from_numpy(out).to(device)


def gaussian_kernel(sigma: float, float_image: bool = False) -> np.ndarray:
    """The 2-D Gaussian cv2.GaussianBlur uses for `sigma`: side 6 sigma + 1 on 8-bit images, 8 sigma + 1 on float."""
    if sigma <= 0:
        return np.ones((1, 1), np.float32)
    g = gaussian_taps(sigma, float_image).astype(np.float32)
    return g @ g.T


def _noise(x, params, rngs, gens):
    field = _per_sample(torch.randn, gens, tuple(x.shape[1:]), x.device)
    pg = _column([p["model"] == "poisson_gaussian" for p in params], x) > 0
    sigma = _column([p.get("sigma", 0.0) / 255 for p in params], x)
    gaussian = x + field * sigma
    if not pg.any():
        return gaussian
    shot, read = _column([p.get("shot", 0.0) for p in params], x), _column([p.get("read", 0.0) for p in params], x)
    linear = srgb_to_linear(x)
    noisy = linear_to_srgb(linear + field * torch.sqrt(linear * shot + read * read))
    return torch.where(pg, noisy, gaussian)


def depth_proxy(x: torch.Tensor, vertical_weight: torch.Tensor) -> torch.Tensor:
    """The haze type's depth proxy, batched: (B, 1, H, W) in [0, 1], 1 far."""
    b, _, h, w = x.shape
    small = F.interpolate(x, size=(max(1, h // 4), max(1, w // 4)), mode="area")
    dark = small.amin(dim=1, keepdim=True)
    dark = -F.max_pool2d(F.pad(-dark, (2, 2, 2, 2), mode="replicate"), 5, stride=1)  # a 5 x 5 erosion
    g = torch.from_numpy(gaussian_taps(4.0, float_image=True).astype(np.float32)).to(x.device)  # 33 taps, as the NumPy proxy's
    dark = F.conv2d(F.pad(dark, (16, 16, 0, 0), mode="replicate"), g.view(1, 1, 1, -1))
    dark = F.conv2d(F.pad(dark, (0, 0, 16, 16), mode="replicate"), g.view(1, 1, -1, 1))
    rows = torch.linspace(1.0, 0.0, dark.shape[-2], device=x.device).view(1, 1, -1, 1)
    proxy = vertical_weight * rows + (1 - vertical_weight) * dark
    proxy = F.interpolate(proxy, size=(h, w), mode="bilinear", align_corners=False)
    lo, hi = proxy.amin(dim=(2, 3), keepdim=True), proxy.amax(dim=(2, 3), keepdim=True)
    return torch.where(hi > lo, (proxy - lo) / (hi - lo).clamp_min(1e-12), torch.full_like(proxy, 0.5))


def _haze(x, params, rngs, gens):
    depth = NEAR + (FAR - NEAR) * depth_proxy(x, _column([p["vertical_weight"] for p in params], x))
    t = torch.exp(-_column([p["beta"] for p in params], x) * depth)
    airlight = torch.tensor([p["airlight"] for p in params], dtype=torch.float32, device=x.device).view(-1, 3, 1, 1) / 255
    return x * t + airlight * (1 - t)


def _blur(x, params, rngs, gens):
    from degradations.types.blur import Blur

    kinds = [Blur().kernel(p, r) for p, r in zip(params, rngs)]  # the NumPy engine's kernels, drawn as it draws them
    kernels = [gaussian_kernel(float(p["size"])) if k is None else k for p, k in zip(params, kinds)]
    return correlate(x, _stack(kernels, x.device), "reflect")


def _seeds(x: torch.Tensor, density: torch.Tensor, gens: list[torch.Generator]) -> torch.Tensor:
    """Sparse particle seeds per sample, (B, 1, H, W): a pixel seeds with probability `density`, intensity in [0.5, 1]."""
    u = _per_sample(torch.rand, gens, (1, *x.shape[-2:]), x.device)
    return torch.where(u < density, 1 - 0.5 * u / density.clamp_min(1e-12), torch.zeros_like(u))


def _blurred(layer: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    return correlate(layer, _stack([gaussian_kernel(s, float_image=True) for s in sigmas], layer.device), "reflect")


def screen(x: torch.Tensor, layer: torch.Tensor) -> torch.Tensor:
    layer = layer.clamp(0, 1)
    return x * (1 - layer) + layer


def _rain(x, params, rngs, gens):
    density = _column([p["density"] for p in params], x)
    brightness = _column([p["brightness"] for p in params], x)

    def streaks(kernels: list[np.ndarray]) -> torch.Tensor:  # one softened layer, as rain.streak_layer
        seeds = _seeds(x, density, gens)
        return _blurred(correlate(seeds, _stack(kernels, x.device), "constant"), [p["blur"] for p in params])

    layer = streaks([line_kernel(p["length"], p["angle"], p["width"]) for p in params]) * brightness
    two = _column([p["layers"] == 2 for p in params], x) > 0
    if two.any():
        far = streaks([line_kernel(p["length"] / 2, p["angle"], 1) for p in params])
        layer = torch.where(two, torch.maximum(layer, 0.6 * brightness * far), layer)
    return screen(x, layer)


def _snow(x, params, rngs, gens):
    seeds = _seeds(x, _column([p["density"] for p in params], x), gens)
    sigmas = [float(p["flake_size"]) for p in params]
    flakes = _blurred(seeds, sigmas) * _column([2 * math.pi * s * s for s in sigmas], x)
    streaks = []
    for p in params:
        streak = line_kernel(p["length"], p["angle"]) if p["length"] > 1 else np.ones((1, 1), np.float32)
        streaks.append(streak / streak.max() / max(1.0, p["length"] / 2) if p["length"] > 1 else streak)
    flakes = correlate(flakes, _stack(streaks, x.device), "reflect")
    veil = _column([p["veil"] for p in params], x)
    base = x * (1 - veil) + veil * (_VEIL_LEVEL / 255)
    return screen(base, flakes * _column([p["brightness"] for p in params], x))


def _low_light(x, params, rngs, gens):
    column = lambda key: _column([p[key] for p in params], x)  # noqa: E731
    dark = column("exposure") * srgb_to_linear(x) ** column("gamma")
    std = torch.sqrt(dark * column("shot") + column("read") ** 2)
    return linear_to_srgb(dark + _per_sample(torch.randn, gens, tuple(x.shape[1:]), x.device) * std)


def _jpeg(x, params, rngs, gens):
    from torchvision.io import decode_jpeg, encode_jpeg  # libjpeg(-turbo) on the CPU, nvJPEG on CUDA

    pixels = (x * 255).round().clamp(0, 255).to(torch.uint8)
    out = torch.empty_like(x)
    for quality in sorted({int(p["quality"]) for p in params}):
        index = [n for n, p in enumerate(params) if int(p["quality"]) == quality]
        encoded = encode_jpeg([pixels[n] for n in index], quality=quality)
        decoded = decode_jpeg(encoded, device=x.device)
        for n, image in zip(index, decoded):
            out[n] = image.to(x.device).float() / 255
    return out


_OPS: dict[str, Any] = {
    "noise": _noise, "haze": _haze, "blur": _blur, "rain": _rain, "snow": _snow, "low_light": _low_light, "jpeg": _jpeg,
}


def batch_score(metric: str, clean: torch.Tensor, degraded: torch.Tensor) -> torch.Tensor:
    """The build's metric per image of float batches in [0, 1]: SSIM as D.ssim computes it (an 11-tap
    Gaussian window, sigma 1.5, on the 0-255 scale, the border left out of the mean), or PSNR."""
    x, y = clean * 255, degraded * 255
    if metric == "psnr":
        mse = ((x - y) ** 2).mean(dim=(1, 2, 3))
        return torch.where(mse > 0, 10 * torch.log10(255.0**2 / mse.clamp_min(1e-12)), torch.full_like(mse, float("inf")))
    taps = torch.exp(-((torch.arange(11, device=x.device, dtype=x.dtype) - 5) ** 2) / (2 * 1.5**2))
    taps = taps / taps.sum()

    def blur(a: torch.Tensor) -> torch.Tensor:  # separable, mirrored borders as cv2's BORDER_REFLECT
        channels = a.shape[1]
        a = F.pad(a, (5, 5, 5, 5), mode="replicate") if min(a.shape[-2:]) <= 5 else _reflect(a, 5)
        a = F.conv2d(a, taps.view(1, 1, 1, -1).expand(channels, 1, 1, 11), groups=channels)
        return F.conv2d(a, taps.view(1, 1, -1, 1).expand(channels, 1, 11, 1), groups=channels)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    local = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return local[..., 5:-5, 5:-5].mean(dim=(1, 2, 3)).clamp(max=1.0)


def _reflect(a: torch.Tensor, pad: int) -> torch.Tensor:
    """OpenCV's BORDER_REFLECT (edge pixel repeated: abc|cba), which torch's "reflect" (abc|ba) is not."""
    left, right = a[..., :pad].flip(-1), a[..., -pad:].flip(-1)
    a = torch.cat([left, a, right], dim=-1)
    top, bottom = a[..., :pad, :].flip(-2), a[..., -pad:, :].flip(-2)
    return torch.cat([top, a, bottom], dim=-2)


def tier_index(values: torch.Tensor, bands: Any) -> torch.Tensor:
    """The tier index (0 lq, 1 mq, 2 hq) of each score or quality-map value under `bands`, as
    D.tier_of and D.tier_map grade them: the torch counterpart, on the values' device."""
    return (values >= bands["mq"][0]).long() + (values >= bands["hq"][0]).long()
