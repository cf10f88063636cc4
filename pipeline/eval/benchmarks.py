"""All-in-one evaluation: a restorer on the standard benchmark layouts or on a shard split.

Benchmark folders are read as their authors ship them: BSD68 is a folder of
clean images, noised here at sigma 15 / 25 / 50 with fixed seeds; the others
(Rain100L, SOTS-outdoor, GoPro, LOL, or any pair set) are a degraded folder
and a clean folder, matched by relative path, or else by the first number in
the file name (SOTS's `0001_0.8_0.2.jpg` -> `0001.png`, Rain100L's
`rain-001.png` -> `norain-001.png`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

import degradations as D
from pipeline.eval.metrics import RestorationScores, to_tensor
from shards import image_files, load_image

BSD68_SIGMAS = (15, 25, 50)
_DEGRADED_NAMES = ("input", "rainy", "rain", "hazy", "haze", "low", "blur", "degraded", "lq")
_CLEAN_NAMES = ("target", "gt", "groundtruth", "norain", "clear", "high", "sharp", "clean", "hq")


def _number(path: Path) -> int | None:
    m = re.search(r"\d+", path.stem)
    return int(m.group()) if m else None


def split_pair_folder(root: Path) -> tuple[Path, Path]:
    """(degraded, clean) subfolders of a benchmark folder, by their usual names."""
    subdirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    degraded = next((subdirs[n] for n in _DEGRADED_NAMES if n in subdirs), None)
    clean = next((subdirs[n] for n in _CLEAN_NAMES if n in subdirs), None)
    if degraded is None or clean is None:
        raise D.UserError(
            f"{root}: expected a degraded subfolder ({'/'.join(_DEGRADED_NAMES)}) and a clean one "
            f"({'/'.join(_CLEAN_NAMES)}); or give DEGRADED_DIR:CLEAN_DIR"
        )
    return degraded, clean


def match_pairs(degraded_dir: Path, clean_dir: Path) -> list[tuple[Path, Path]]:
    """Pair every degraded image with its clean image; UserError naming what does not match."""
    degraded, clean = image_files(degraded_dir), image_files(clean_dir)
    if not degraded or not clean:
        raise D.UserError(f"no images in {degraded_dir if not degraded else clean_dir}")
    by_rel = {p.relative_to(clean_dir).with_suffix("").as_posix(): p for p in clean}
    pairs = [(d, by_rel.get(d.relative_to(degraded_dir).with_suffix("").as_posix())) for d in degraded]
    if all(c is not None for _, c in pairs):
        return pairs  # type: ignore[return-value]
    by_number: dict[int, Path] = {}
    for c in clean:
        n = _number(c)
        if n is None or n in by_number:
            raise D.UserError(f"cannot match {degraded_dir} to {clean_dir}: names differ and {c.name} has no unique number")
        by_number[n] = c
    pairs = [(d, by_number.get(_number(d))) for d in degraded]  # type: ignore[arg-type]
    missing = [d.name for d, c in pairs if c is None]
    if missing:
        raise D.UserError(f"no clean image in {clean_dir} for {len(missing)} degraded images, e.g. {missing[:3]}")
    return pairs  # type: ignore[return-value]


def bsd68_pairs(folder: Path, sigma: int) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(name, noisy, clean) with Gaussian noise at `sigma`, seeded by (name, sigma): the same on every run."""
    for path in image_files(folder):
        clean = load_image(path)
        noisy, _ = D.degrade(clean, "noise", params={"sigma": sigma}, seed=D.derive_seed("bsd68", path.name, sigma))
        yield path.name, noisy, clean


def folder_pairs(degraded_dir: Path, clean_dir: Path) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    for d, c in match_pairs(degraded_dir, clean_dir):
        degraded, clean = load_image(d), load_image(c)
        if degraded.shape != clean.shape:
            raise D.UserError(f"{d.name} is {degraded.shape[:2]} but its clean image {c.name} is {clean.shape[:2]}")
        yield d.name, degraded, clean


@torch.no_grad()
def evaluate_tasks(
    model: nn.Module, tasks: Mapping[str, Iterator[tuple[str, np.ndarray, np.ndarray]]], device: torch.device
) -> list[dict[str, float | str]]:
    """The all-in-one table: PSNR / SSIM (RGB) per task and their average, with the inputs' scores."""
    scores = RestorationScores()
    for task, pairs in tasks.items():
        for _, degraded, clean in pairs:
            x = to_tensor(degraded, device)
            scores.add(model(x), x, to_tensor(clean, device), [task], "test")
    return [r for r in scores.table() if r["tier"] == "all"]


def benchmark_tasks(specs: Sequence[str]) -> dict[str, Iterator[tuple[str, np.ndarray, np.ndarray]]]:
    """`bsd68=DIR`, `NAME=DIR` (with degraded/clean subfolders) or `NAME=DEGRADED_DIR:CLEAN_DIR`."""
    tasks: dict[str, Iterator[tuple[str, np.ndarray, np.ndarray]]] = {}
    for spec in specs:
        if "=" not in spec:
            raise D.UserError(f"benchmark {spec!r} must look like NAME=DIR or NAME=DEGRADED_DIR:CLEAN_DIR")
        name, where = spec.split("=", 1)
        if name.lower() == "bsd68":
            folder = Path(where)
            if not folder.is_dir():
                raise D.InputNotFound(f"BSD68 folder {folder} does not exist")
            for sigma in BSD68_SIGMAS:
                tasks[f"bsd68_sigma{sigma}"] = bsd68_pairs(folder, sigma)
            continue
        if ":" in where:
            degraded, clean = (Path(p) for p in where.split(":", 1))
        else:
            if not Path(where).is_dir():
                raise D.InputNotFound(f"benchmark folder {where} does not exist")
            degraded, clean = split_pair_folder(Path(where))
        tasks[name] = folder_pairs(degraded, clean)
    return tasks
