"""The whole path on the builtin photos, offline, on a CPU: shards -> perceiver -> restorer -> eval -> report.

Everything is small (96 px patches, a ResNet CLIP of a few million parameters,
a 0.1 M-parameter NAFNet, random weights everywhere) so it runs in minutes on 2 cores; the
numbers show the machinery works, not what the paper's models reach.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import degradations as D
import shards
from pipeline.eval.metrics import to_uint8
from pipeline.eval.shards import evaluate_restorer, split_loader
from pipeline.eval.tables import format_table, write_table
from pipeline.report.contact_sheet import grid, save_png, tile
from pipeline.report.plots import training_curves
from pipeline.report.sheets import build_sheet
from pipeline.train import get_stage, resolve, train

TINY_SEMANTIC = {"semantic_size": 56, "semantic_kwargs": {"depth": 3, "embed_dim": 64, "num_heads": 2}}
NAFNET_TINY = {"width": 12, "encoder_blocks": [1, 1, 1], "middle_blocks": 1, "decoder_blocks": [1, 1, 1]}


def demo_configs(out: Path, steps: tuple[int, int], workers: int) -> tuple[dict, dict]:
    shards = str(out / "shards")
    data = [f"data.source={shards}", f"data.num_workers={workers}", "run.log_every=5", "run.device=cpu"]
    # The perceiver's batches are tiny 64 px crops: decoding in-process beats restarting workers every short epoch.
    perceiver = resolve(get_stage("perceiver").defaults(), None, data + [
        "data.num_workers=0", "model.clip_model=perceive-ir-tiny", "model.n_ctx=4", "model.train_visual=true",
        "data.crop=64", "data.batch_size=32",
        f"optim.steps={steps[0]}", "optim.lr=1e-3", "optim.warmup_steps=20",
        f"run.out={out / 'perceiver'}", f"run.checkpoint_every={steps[0]}",
    ])
    restorer = resolve(get_stage("restorer").defaults(), None, data + [
        "model.backbone=nafnet", f"model.backbone_kwargs={json.dumps(NAFNET_TINY)}",
        f"model.semantic_size={TINY_SEMANTIC['semantic_size']}",
        f"model.semantic_kwargs={json.dumps(TINY_SEMANTIC['semantic_kwargs'])}",
        f"loss.perceiver={out / 'perceiver' / 'perceiver.safetensors'}",
        # The paper's 0.05 (CLIP) and 0.1 (perceptual) assume a trained perceiver and a pretrained
        # VGG. The CLIP quality loss stays, at 0.01 (at 0.05 the tiny perceiver pulls away from the
        # clean image). The perceptual loss is off: features of a random VGG measure nothing
        # perceptual, and they cost two thirds of each step (0.31 s against 0.10 s, measured).
        "loss.quality=0.01", "loss.perceptual=0",
        # Repeat factors, as the paper gives per type: noise and blur, whose damage is local and
        # mild, are drawn 3x and 5x as often as the types that change the whole image (with equal
        # draws, the restorer made noisy images 3 dB worse: it learnt the global corrections first).
        'data.types={"noise": 3, "blur": 5, "haze": 1, "low_light": 1, "rain": 1}',
        "data.crop=64", "data.batch_size=8",
        f"optim.steps={steps[1]}", "optim.lr=1e-3", "optim.warmup_steps=20", "optim.weight_decay=0.0",
        f"run.out={out / 'restorer'}", f"run.checkpoint_every={steps[1]}",
    ])
    return perceiver, restorer


def _curves(out: Path) -> Path:
    runs = {stage: out / stage for stage in ("perceiver", "restorer")}
    return training_curves(runs, out / "training_curves.png", ("loss", "accuracy", "reconstruction"),
                           ("tier_accuracy", "val_psnr", "val_input_psnr"))


def _before_after(out: Path, restorer: torch.nn.Module, loader: Any, n: int = 6) -> Path:
    batch = next(iter(loader))
    with torch.no_grad():
        restored = restorer(batch["lq"][:n]).clamp(0, 1)
    rows = []
    for lq, r, hq, t in zip(to_uint8(batch["lq"][:n]), to_uint8(restored), to_uint8(batch["hq"][:n]), batch["type"]):
        rows.append([
            tile(lq, [f"{t} input {min(D.psnr(hq, lq), 99):.1f} dB"], 128),
            tile(r, [f"restored {min(D.psnr(hq, r), 99):.1f} dB"], 128),
            tile(hq, ["clean"], 128),
        ])
    return save_png(grid(rows), out / "before_after.png")


def run_demo(out: str | Path = "demo_out", workers: int = 2, steps: tuple[int, int] = (800, 1000),
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every stage into `out`; returns the summary that is printed and written to report.md."""
    out = shards.output_folder(out, "demo folder")
    started = time.perf_counter()
    times = {}

    log("== 1/5 build tiered shards from the builtin photos")
    t = time.perf_counter()
    # With 7 photos a hash split is lumpy: these fractions put the astronaut and the cat in
    # validation and the five others in training (on fewer, a tiny model takes the pale
    # microscopy slide for haze).
    config = shards.BuildConfig(patch=96, patches_per_image=24, samples_per_shard=64, splits=(("train", 0.95), ("val", 0.05)))
    built = shards.build("builtin", out / "shards", config, workers=workers, overwrite=True)
    log(built.summary())
    save_png(build_sheet(out / "shards"), out / "shards_preview.png")
    times["build"] = time.perf_counter() - t

    perceiver_cfg, restorer_cfg = demo_configs(out, steps, workers)
    log("== 2/5 train the quality perceiver (tiny CLIP, random init, image tower trained)")
    t = time.perf_counter()
    perceiver = train("perceiver", perceiver_cfg)
    times["perceiver"] = time.perf_counter() - t

    log("== 3/5 train the restorer (tiny NAFNet + SGM + CFE, losses: L1, InfoNCE, CLIP quality; type repeat factors)")
    t = time.perf_counter()
    train("restorer", restorer_cfg)
    times["restorer"] = time.perf_counter() - t

    log("== 4/5 evaluate the restorer on the validation split")
    t = time.perf_counter()
    restorer = get_stage("restorer").load_trained(out / "restorer", torch.device("cpu"))
    val = split_loader(out / "shards", "val", batch_size=8, crop=None)
    rows = evaluate_restorer(restorer, val)

    write_table(rows, out, "restorer_val")
    times["eval"] = time.perf_counter() - t

    log("== 5/5 figures and report")
    _curves(out)
    _before_after(out, restorer, val)
    average = rows[-1]
    by_type = {r["type"]: r["psnr_gain"] for r in rows if r["tier"] == "all" and r["type"] != "average"}
    summary = {
        "perceiver_val_tier_accuracy": perceiver.get("tier_accuracy", float("nan")),
        "perceiver_val_srocc": perceiver.get("srocc_quality_vs_severity", float("nan")),
        "restorer_val_psnr": average["psnr"],
        "restorer_val_input_psnr": average["input_psnr"],
        "restorer_val_psnr_gain_db": average["psnr_gain"],
        "restorer_val_psnr_gain_by_type": by_type,  # mean over the mq and lq tiers
        "samples": built.report.samples,
        "seconds": {k: round(v, 1) for k, v in {**times, "total": time.perf_counter() - started}.items()},
    }
    _report(out, summary, format_table(rows), built.summary())
    return summary


def gains_by_type(summary: dict[str, Any]) -> str:
    """`blur +0.41, haze +2.10, ...` dB."""
    return ", ".join(f"{t} {g:+.2f}" for t, g in summary["restorer_val_psnr_gain_by_type"].items())


def _report(out: Path, summary: dict[str, Any], table: str, build_summary: str) -> Path:
    secs = summary["seconds"]
    text = f"""# perceive-ir demo

All models are tiny and **randomly initialised** (no pretrained weights are downloaded):
the numbers show that the pipeline works end to end, not what the paper's models reach.

| | |
|---|---|
| perceiver validation tier accuracy (3 tiers, chance 0.33) | {summary['perceiver_val_tier_accuracy']:.3f} |
| perceiver validation Spearman(quality, -severity) | {summary['perceiver_val_srocc']:.3f} |
| restorer validation PSNR: input -> restored | {summary['restorer_val_input_psnr']:.2f} dB -> {summary['restorer_val_psnr']:.2f} dB |
| restorer validation PSNR gain | {summary['restorer_val_psnr_gain_db']:+.2f} dB |
| gain per type (mean over mq and lq) | {gains_by_type(summary)} |
| time: build / perceiver / restorer / eval / total | {secs['build']} / {secs['perceiver']} / {secs['restorer']} / {secs['eval']} / {secs['total']} s |

## Shards

```
{build_summary}
```

![shards](shards_preview.png)

## Restorer on the validation split (mq and lq inputs, per type)

```
{table}
```

![before and after](before_after.png)

## Training curves

![curves](training_curves.png)
"""
    path = out / "report.md"
    path.write_text(text)
    return path
