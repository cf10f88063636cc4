"""The maps demo: a build with severity and quality maps, the perceiver's dense head trained on them,
its per-pixel validation, and a picture of image | severity map | measured quality | predicted quality.

Tiny and randomly initialised like the main demo (pipeline.report.demo): it shows that the
machinery learns where an image is bad, at toy scale, in about a minute on 2 cores.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import degradations as D
import shards
from pipeline.eval.metrics import to_uint8
from pipeline.eval.shards import evaluate_perceiver, split_loader
from pipeline.report.contact_sheet import colour_map, grid, save_png, tile
from pipeline.report.sheets import build_sheet
from pipeline.train import get_stage, resolve, train

MAPS_STEPS = 800
DENSE_BLOCK = -3  # block 3 of 5 of the tiny ResNet CLIP: an 8 x 8 grid at its 64 px input (the last block gives 2 x 2)


def maps_build_config() -> shards.BuildConfig:
    """The main demo's build (same photos, patches and splits) with a severity map drawn per image."""
    return shards.BuildConfig(patch=96, patches_per_image=24, samples_per_shard=64, splits=(("train", 0.95), ("val", 0.05)),
                              maps="mixed")


def dense_perceiver_config(out: Path, steps: int) -> dict[str, Any]:
    return resolve(get_stage("perceiver").defaults(), None, [
        f"data.source={out / 'shards'}", "data.num_workers=0", "data.maps=true", "data.crop=64", "data.batch_size=32",
        "model.clip_model=perceive-ir-tiny", "model.n_ctx=4", "model.train_visual=true",
        "model.dense_head=true", f"model.dense_block={DENSE_BLOCK}",
        f"optim.steps={steps}", "optim.lr=1e-3", "optim.warmup_steps=20",
        "run.log_every=5", "run.device=cpu", f"run.out={out / 'perceiver'}", f"run.checkpoint_every={steps}",
    ])


def quality_map_figure(perceiver: torch.nn.Module, loader: Any, path: Path, n: int = 6) -> Path:
    """Rows of validation images: the degraded image | its severity map | its measured quality map |
    the dense head's predicted quality map (viridis, 0 dark, 1 yellow)."""
    batch = next(iter(loader))
    rows = []
    with torch.no_grad():
        for tier in ("lq", "mq"):
            images = batch[tier][: n // 2]
            predicted = perceiver.quality_map(images)
            for image, sev, measured, guess, kind in zip(
                to_uint8(images), batch[f"{tier}_sev"], batch[f"{tier}_qmap"], predicted, batch["type"]
            ):
                corr = float(torch.corrcoef(torch.stack([measured.flatten(), guess.flatten()]))[0, 1])
                rows.append([
                    tile(image, [f"{kind} {tier}"], 128),
                    tile(colour_map(sev[0].numpy()), ["severity map"], 128),
                    tile(colour_map(measured[0].numpy()), [f"measured quality {float(measured.mean()):.2f}"], 128),
                    tile(colour_map(guess.numpy()), [f"predicted, r={corr:.2f}"], 128),
                ])
    return save_png(grid(rows), path)


def run_maps_demo(out: str | Path = "demo_maps", workers: int = 2, steps: int = MAPS_STEPS,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build with maps, train the dense head, validate it per pixel, draw the picture; returns the summary."""
    out = shards.output_folder(out, "demo folder")
    started = time.perf_counter()
    times = {}
    log("== 1/3 build tiered shards with severity and quality maps from the builtin photos")
    t = time.perf_counter()
    built = shards.build("builtin", out / "shards", maps_build_config(), workers=workers, overwrite=True)
    log(built.summary())
    save_png(build_sheet(out / "shards", samples=1, size=128), out / "shards_preview.png")
    times["build"] = time.perf_counter() - t

    log("== 2/3 train the quality perceiver with its dense head (tiny CLIP, random init; tiers and per-patch tiers)")
    t = time.perf_counter()
    train("perceiver", dense_perceiver_config(out, steps))
    times["perceiver"] = time.perf_counter() - t

    log("== 3/3 validate per pixel and draw image | severity map | measured quality | predicted quality")
    t = time.perf_counter()
    perceiver = get_stage("perceiver").load_trained(out / "perceiver", torch.device("cpu"))
    val = split_loader(out / "shards", "val", batch_size=8, crop=None, maps=True)
    metrics = evaluate_perceiver(perceiver, val)
    quality_map_figure(perceiver, val, out / "quality_maps.png")
    times["eval"] = time.perf_counter() - t
    summary = {
        "samples": built.report.samples,
        "skipped_samples": built.report.skipped_samples,
        "tier_accuracy": metrics["tier_accuracy"],
        "dense_pixel_accuracy": metrics["dense_pixel_accuracy"],
        "dense_quality_corr": metrics["dense_quality_corr"],
        "flat_quality_corr": metrics["flat_quality_corr"],
        "seconds": {k: round(v, 1) for k, v in {**times, "total": time.perf_counter() - started}.items()},
    }
    (out / "report.md").write_text(_report(summary))
    return summary


def _report(s: dict[str, Any]) -> str:
    secs = s["seconds"]
    return f"""# perceive-ir maps demo

A tiny, **randomly initialised** CLIP perceiver with a dense head, trained on a build whose
degraded images carry severity maps (a generator drawn per image) and measured quality maps
(local SSIM). Validation, per pixel of every lq, mq and hq image of the validation split:

| | |
|---|---|
| global tier accuracy (chance 0.33) | {s['tier_accuracy']:.3f} |
| dense head: per-pixel tier accuracy | {s['dense_pixel_accuracy']:.3f} |
| dense head: Pearson r, predicted vs measured quality map | {s['dense_quality_corr']:.3f} |
| flat baseline: the global score spread over the image | {s['flat_quality_corr']:.3f} |
| samples (skipped) | {s['samples']} ({s['skipped_samples']}) |
| time: build / perceiver / eval / total | {secs['build']} / {secs['perceiver']} / {secs['eval']} / {secs['total']} s |

![quality maps](quality_maps.png)

![shards](shards_preview.png)
"""


def check_steps(steps: int) -> int:
    if steps < 1:
        raise D.UserError(f"--steps must be a positive integer, got {steps}")
    return steps
