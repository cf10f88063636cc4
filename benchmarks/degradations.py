"""Degradation throughput on one core, against albumentations and imagecorruptions in the same run.

    python benchmarks/degradations.py [--repeats 30]

Prints images/s for every type at 256x256 and 512x512 (severity 0.6, fresh
seed per call), then for each pair of (our type, closest imagecorruptions
corruption at severity 3) the images/s of both at 512x512 and the ratio
ours / theirs, and the median ratio; the same against albumentations' nearest
transform (the library a researcher would otherwise pick), at 256x256 and 512x512, with
a profile line per type saying where its time goes (the functions that take most of it,
by cProfile). Both sides are timed interleaved in one process, so machine noise hits them alike. imagecorruptions is optional
(`make bench` installs it); its fog and glass_blur fail on NumPy 2 /
scikit-image 0.26 and are reported as such.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: before numpy and OpenCV start their pools
# Run as a file, this folder comes first on sys.path and this file would shadow the package.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import cv2
import numpy as np

import degradations as D

cv2.setNumThreads(1)

# ours (type, explicit variant or None) -> imagecorruptions name
PAIRS = [
    ("noise", {"model": "gaussian"}, "gaussian_noise"),
    ("noise", {"model": "poisson_gaussian"}, "shot_noise"),
    ("blur", {"kind": "gaussian"}, "gaussian_blur"),
    ("blur", {"kind": "defocus"}, "defocus_blur"),
    ("blur", {"kind": "motion"}, "motion_blur"),
    ("haze", None, "fog"),
    ("haze", None, "contrast"),
    ("low_light", None, "brightness"),
    ("jpeg", None, "jpeg_compression"),
    ("snow", None, "snow"),
]


def photo(size: int) -> np.ndarray:
    return cv2.resize(D.builtin_photo("astronaut"), (size, size), interpolation=cv2.INTER_AREA)


def ours(name: str, variant: dict | None, image: np.ndarray) -> Callable[[int], np.ndarray]:
    """A call of our type at severity 0.6; a variant pins the model/kind with its severity-0.6 size."""
    if variant is None:
        return lambda i: D.degrade(image, name, 0.6, seed=i)[0]
    kind = D.get(name)
    seed = next(s for s in range(1000) if all(kind.params(D.rng(s), 0.6).get(k) == v for k, v in variant.items()))
    params = kind.params(D.rng(seed), 0.6)
    return lambda i: D.degrade(image, name, params=params, seed=i)[0]


def theirs(corruption: str, image: np.ndarray) -> Callable[[int], np.ndarray] | str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from imagecorruptions import corrupt
    except ImportError:
        return "imagecorruptions not installed (make bench installs it)"
    try:
        corrupt(image, corruption_name=corruption, severity=3)
    except Exception as err:  # noqa: BLE001 - report whatever breaks the baseline
        return f"fails: {type(err).__name__}: {str(err)[:60]}"
    return lambda i: corrupt(image, corruption_name=corruption, severity=3)


def _blur_size(kind: str) -> float:
    """Our blur size (sigma, disk radius, trajectory extent) of that kind at severity 0.6."""
    params = next(p for s in range(1000) if (p := D.get("blur").params(D.rng(s), 0.6))["kind"] == kind)
    return float(params["size"])


# ours (type, variant) -> (albumentations transform, what the two do alike and what ours does more)
def albumentations_pairs() -> list[tuple[str, dict | None, Callable[[], object], str]]:
    import albumentations as A

    motion = int(_blur_size("motion")) | 1  # an odd kernel side of our trajectory's extent
    return [
        ("noise", {"model": "gaussian"}, lambda: A.GaussNoise(std_range=(0.1, 0.1), p=1), "Gaussian noise, same sigma"),
        ("blur", {"kind": "gaussian"}, lambda: A.GaussianBlur(sigma_limit=(_blur_size("gaussian"),) * 2, blur_limit=0, p=1),
         "Gaussian blur, same sigma"),
        ("blur", {"kind": "defocus"}, lambda: A.Defocus(radius=(int(_blur_size("defocus")),) * 2, alias_blur=(0.1, 0.1), p=1),
         "defocus disk, same radius (ours anti-aliased rim)"),
        ("blur", {"kind": "motion"}, lambda: A.MotionBlur(blur_limit=(motion, motion), p=1),
         f"motion blur {motion} px (ours a camera-shake trajectory, theirs a line)"),
        ("haze", None, lambda: A.RandomFog(fog_coef_range=(0.6, 0.6), p=1), "haze (ours: scattering model on a depth proxy)"),
        ("rain", None, lambda: A.RandomRain(p=1), "rain streaks (ours: 1-2 blurred layers, streak brightness drawn per particle, screen blend)"),
        ("snow", None, lambda: A.RandomSnow(p=1), "snow"),
        ("jpeg", None, lambda: A.ImageCompression(quality_range=(30, 30), p=1), "JPEG at a fixed quality"),
        ("low_light", None, lambda: A.Compose([A.RandomGamma(gamma_limit=(250, 250), p=1), A.ISONoise(p=1)]),
         "darkening + sensor noise (ours in linear light)"),
    ]


def rate(fns: list[Callable[[int], np.ndarray]], repeats: int) -> list[float]:
    """Images/s of each fn, timed interleaved; the median of `repeats` rounds."""
    times: list[list[float]] = [[] for _ in fns]
    for r in range(repeats):
        for k, fn in enumerate(fns):
            t = time.perf_counter()
            fn(r)
            times[k].append(time.perf_counter() - t)
    return [1.0 / statistics.median(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()

    print(f"one core; severity 0.6; median of {args.repeats} calls")
    print(f"{'type':<12} {'256x256 img/s':>14} {'512x512 img/s':>14}")
    for name in D.available():
        r256 = rate([ours(name, None, photo(256))], args.repeats)[0]
        r512 = rate([ours(name, None, photo(512))], args.repeats)[0]
        print(f"{name:<12} {r256:>14.1f} {r512:>14.1f}")

    print("\nvs imagecorruptions 1.1.2 (severity 3), 512x512")
    print(f"{'ours':<28} {'img/s':>8}   {'imagecorruptions':<18} {'img/s':>8} {'ratio':>7}")
    image = photo(512)
    ratios = []
    for name, variant, corruption in PAIRS:
        label = name + (f" ({next(iter(variant.values()))})" if variant else "")
        baseline = theirs(corruption, image)
        if isinstance(baseline, str):
            r_ours = rate([ours(name, variant, image)], args.repeats)[0]
            print(f"{label:<28} {r_ours:>8.1f}   {corruption:<18} {baseline}")
            continue
        r_ours, r_theirs = rate([ours(name, variant, image), baseline], args.repeats)
        ratios.append(r_ours / r_theirs)
        print(f"{label:<28} {r_ours:>8.1f}   {corruption:<18} {r_theirs:>8.1f} {r_ours / r_theirs:>6.2f}x")
    if ratios:
        print(f"median ratio ours/imagecorruptions: {statistics.median(ratios):.2f}x over {len(ratios)} pairs")

    try:
        import albumentations
    except ImportError:
        print("\nalbumentations not installed: no comparison with it")
        return
    for size in (256, 512):
        image = photo(size)
        print(f"\nvs albumentations {albumentations.__version__}, {size}x{size}")
        print(f"{'ours':<28} {'img/s':>8}   {'albumentations img/s':>21} {'ratio':>7}   what both do")
        ratios = []
        for name, variant, make, alike in albumentations_pairs():
            label = name + (f" ({next(iter(variant.values()))})" if variant else "")
            transform = make()
            r_ours, r_theirs = rate([ours(name, variant, image), lambda i, t=transform: t(image=image)["image"]], args.repeats)
            ratios.append(r_ours / r_theirs)
            print(f"{label:<28} {r_ours:>8.1f}   {r_theirs:>21.1f} {r_ours / r_theirs:>6.2f}x   {alike}")
        print(f"median ratio ours/albumentations at {size}: {statistics.median(ratios):.2f}x over {len(ratios)} pairs (target >= 1.5 at 512)")
    print("\nwhere the time goes, 512x512 (share of each type's time, by cProfile; C calls count in their caller)")
    image = photo(512)
    for name, variant, _, _ in albumentations_pairs():
        label = name + (f" ({next(iter(variant.values()))})" if variant else "")
        print(f"{label:<28} {profile_line(ours(name, variant, image), 10)}")


def profile_line(fn: Callable[[int], np.ndarray], calls: int, top: int = 4) -> str:
    """The `top` functions by own time over `calls` calls, with their share: `GaussianBlur 41%, ...`."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(calls):
        fn(i)
    profiler.disable()
    stats = pstats.Stats(profiler)
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:top]
    return ", ".join(f"{_function_name(key)} {own / stats.total_tt:.0%}" for key, (_, _, own, _, _) in rows)


def _function_name(key: tuple[str, int, str]) -> str:
    name = key[2]
    if name.startswith("<"):  # a C function: <built-in method cv2.filter2D>, <method 'take' of ...>
        name = name.strip("<>").replace("built-in method ", "").replace("method ", "").split(" of ")[0].strip("'")
    return name


if __name__ == "__main__":
    main()
