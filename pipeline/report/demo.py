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
from pipeline.train.config import merge

TINY_SEMANTIC = {"semantic_size": 56, "semantic_kwargs": {"depth": 3, "embed_dim": 64, "num_heads": 2}}
# Training steps of the perceiver, the restorer and (paper tiers) each medium fold: the paper path
# trains three models, and its steps are cut so that it too ends within 5 minutes on 2 cores.
DEFAULT_STEPS = {"bands": (800, 1000), "paper": (500, 700, 200)}
NAFNET_TINY = {"width": 12, "encoder_blocks": [1, 1, 1], "middle_blocks": 1, "decoder_blocks": [1, 1, 1]}


TINY_CLEARAIR = {"width": 12, "blocks": [1, 1, 1, 1], "heads": [1, 1, 2, 2], "refinement_blocks": 1}
RESTORERS = ("perceive-ir", "clearair")
# A tiny Restormer step costs about 0.35 s on 2 cores against the tiny NAFNet's 0.18 s: ClearAIR
# trains half the steps, within the same time.
CLEARAIR_RESTORER_STEPS = 500


def default_steps(tiers: str, restorer_arch: str = "perceive-ir") -> tuple[int, ...]:
    steps = DEFAULT_STEPS[tiers]
    return (steps[0], CLEARAIR_RESTORER_STEPS, *steps[2:]) if restorer_arch == "clearair" else steps


def demo_configs(out: Path, steps: tuple[int, ...], workers: int, tiers: str = "bands",
                 restorer_arch: str = "perceive-ir") -> tuple[dict, dict]:
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
    if tiers == "bands" and restorer_arch == "perceive-ir":
        # NAFNet's PSNR loss (minus each image's PSNR) instead of L1: L1 is dominated by the large
        # errors of dark and hazy inputs, and the restorer learnt to damage mild ones (engine 3 data,
        # the same seeds: noise mq 28.70 -> 26.37 dB with L1). Per image, the loss weighs a mild
        # input's error as much as a heavy one's. Its 40 dB ceiling keeps a near-clean patch from
        # outweighing a whole batch under gradient clipping (a dark patch under mild haze is within
        # 36 dB of its clean image). Noise, learnt fastest under this loss, is drawn as often as the
        # global types, and the learning rate is 2e-3: of the settings tried, the only one in which
        # every type gained in two seeds of three (the README's demo section gives the runs).
        restorer = merge(restorer, {"loss": {"reconstruction_kind": "psnr", "psnr_ceiling": 40.0},
                                    "data": {"types": {"noise": 1}}, "optim": {"lr": 2e-3}})
    if tiers == "paper":
        # The perceiver sees the three tiers of each sample under one crop (30 images a batch, as
        # the bands demo's 32); the restorer learns on lq with the authors' perceptual loss, its
        # medium negative the fold model's mq, weighted against a probe set's mean PSNR. The VGG
        # is random here, as every network of the demo: it shows the machinery, not its value.
        perceiver = merge(perceiver, {"data": {"mode": "triplets", "batch_size": 10}})
        # The VGG on 32 px boxes of the 64 px crops: a quarter of its cost, within the demo's 5 minutes.
        # Weighted 0.01, not the paper's 0.1: a random VGG's distances measure nothing perceptual, and
        # at 0.1 they cost the restorer 1.9 dB (measured: -1.13 dB against +0.88 dB without the term;
        # at 0.01, +0.40 dB).
        restorer = merge(restorer, {"loss": {"perceptual": 0.01, "perceptual_kind": "paper", "perceptual_kwargs": {}, "perceptual_crop": 32,
                                             "probe_per_type": 8, "quality_logit_scale": False, "temperature": 0.1}})
    if restorer_arch == "clearair":
        # ClearAIR's own recipe (L1 + 0.25 internal clue reuse, no CLIP or perceptual loss) with the
        # offline providers, the demo's perceiver among them: its embedding and tier probabilities
        # steer QGM and are the content DAM attends to; SLIC superpixels are the regions.
        perceiver_file = str(out / "perceiver" / "perceiver.safetensors")
        restorer = merge(restorer, {
            "model": {"arch": "clearair", "clearair": {**TINY_CLEARAIR, "quality_kwargs": {"perceiver": perceiver_file},
                                                        "task_kwargs": {"perceiver": perceiver_file}}},
            "loss": {"contrastive": 0.0, "quality": 0.0, "perceptual": 0.0, "internal": 0.25},
        })
    return perceiver, restorer


def medium_config(out: Path, steps: int) -> dict:
    """The demo's medium restorer: a tiny plain NAFNet with L1, in 2 folds."""
    return resolve(get_stage("medium").defaults(), None, [
        f"data.source={out / 'shards'}", "data.num_workers=0", "run.log_every=5", "run.device=cpu",
        "model.backbone=nafnet", f"model.backbone_kwargs={json.dumps(NAFNET_TINY)}",
        "data.crop=64", "data.batch_size=8", f"optim.steps={steps}", "optim.lr=1e-3", "optim.warmup_steps=20",
        f"run.out={out / 'medium'}", f"run.checkpoint_every={steps}",
    ])


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


def run_demo(out: str | Path = "demo_out", workers: int = 2, steps: tuple[int, ...] | None = None,
             log: Callable[[str], None] = print, tiers: str = "bands", restorer_arch: str = "perceive-ir") -> dict[str, Any]:
    """Run every stage into `out`; returns the summary that is printed and written to report.md.

    tiers="paper" runs Perceive-IR's path: a paper-scheme build, the medium restorer in 2 folds
    (`steps[2]` steps each), its rendering, then the perceiver and the restorer on it.
    restorer_arch="clearair" trains a tiny ClearAIR as the restorer, guided by the demo's perceiver."""
    if restorer_arch not in RESTORERS:
        raise D.UserError(f"restorer {restorer_arch!r}: choose one of {', '.join(RESTORERS)}")
    out = shards.output_folder(out, "demo folder")
    steps = steps or default_steps(tiers, restorer_arch)
    started = time.perf_counter()
    times = {}
    n = 7 if tiers == "paper" else 5

    log(f"== 1/{n} build tiered shards from the builtin photos ({tiers} tiers)")
    t = time.perf_counter()
    # With 7 photos a hash split is lumpy: these fractions put the astronaut and the cat in
    # validation and the five others in training (on fewer, a tiny model takes the pale
    # microscopy slide for haze).
    config = shards.BuildConfig(patch=96, patches_per_image=24, samples_per_shard=64, splits=(("train", 0.95), ("val", 0.05)),
                                tiers=tiers)
    built = shards.build("builtin", out / "shards", config, workers=workers, overwrite=True)
    log(built.summary())
    times["build"] = time.perf_counter() - t
    if tiers == "paper":
        from pipeline.render import render_medium

        log(f"== 2/{n} train the medium restorer in 2 folds (tiny NAFNet, L1; fold k trains on the other fold)")
        t = time.perf_counter()
        train("medium", medium_config(out, (steps[2:] or DEFAULT_STEPS["paper"][2:])[0]))
        times["medium"] = time.perf_counter() - t
        log(f"== 3/{n} render mq: each sample's lq restored by the model of its fold")
        t = time.perf_counter()
        log(render_medium(out / "shards", runs=out / "medium", workers=workers, overwrite=True).summary())
        times["render"] = time.perf_counter() - t
    save_png(build_sheet(out / "shards"), out / "shards_preview.png")
    step = n - 3  # the perceiver's number: after the build (and the medium restorer and its rendering)

    perceiver_cfg, restorer_cfg = demo_configs(out, steps, workers, tiers, restorer_arch)
    log(f"== {step}/{n} train the quality perceiver (tiny CLIP, random init, image tower trained)")
    t = time.perf_counter()
    perceiver = train("perceiver", perceiver_cfg)
    times["perceiver"] = time.perf_counter() - t

    losses = "L1, InfoNCE, CLIP quality, the paper's perceptual loss (mq as proxy)" if tiers == "paper" else "L1, InfoNCE, CLIP quality"
    what = "tiny NAFNet + SGM + CFE"
    if restorer_arch == "clearair":
        what, losses = "tiny ClearAIR: QGM on the perceiver, SCA on superpixels, DAM on CFE + perceiver", "L1, internal clue reuse"
    log(f"== {step + 1}/{n} train the restorer ({what}, losses: {losses}; type repeat factors)")
    t = time.perf_counter()
    train("restorer", restorer_cfg)
    times["restorer"] = time.perf_counter() - t

    log(f"== {step + 2}/{n} evaluate the restorer on the validation split")
    t = time.perf_counter()
    restorer = get_stage("restorer").load_trained(out / "restorer", torch.device("cpu"))
    val = split_loader(out / "shards", "val", batch_size=8, crop=None, mode=get_stage("restorer").validation_mode(restorer_cfg))
    rows = evaluate_restorer(restorer, val)

    write_table(rows, out, "restorer_val")
    times["eval"] = time.perf_counter() - t

    log(f"== {n}/{n} figures and report")
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
        "restorer_val_psnr_gain_by_type": by_type,  # mean over the tiers restored (mq and lq; lq alone on paper tiers)
        "samples": built.report.samples,
        "skipped_samples": built.report.skipped_samples,
        "tiers": tiers,
        "restorer": restorer_arch,
        "seconds": {k: round(v, 1) for k, v in {**times, "total": time.perf_counter() - started}.items()},
    }
    _report(out, summary, format_table(rows), built.summary())
    return summary


def gains_by_type(summary: dict[str, Any]) -> str:
    """`blur +0.41, haze +2.10, ...` dB."""
    return ", ".join(f"{t} {g:+.2f}" for t, g in summary["restorer_val_psnr_gain_by_type"].items())


def _report(out: Path, summary: dict[str, Any], table: str, build_summary: str) -> Path:
    secs = summary["seconds"]
    paper = summary["tiers"] == "paper"
    inputs = "lq inputs" if paper else "mq and lq inputs"
    stages = ["build", *(["medium", "render"] if paper else []), "perceiver", "restorer", "eval", "total"]
    times = f"| time: {' / '.join(stages)} | {' / '.join(str(secs[k]) for k in stages)} s |"
    restorer = ", ClearAIR restorer" if summary["restorer"] == "clearair" else ""
    text = f"""# perceive-ir demo ({summary['tiers']} tiers{restorer})

All models are tiny and **randomly initialised** (no pretrained weights are downloaded):
the numbers show that the pipeline works end to end, not what the paper's models reach.

| | |
|---|---|
| perceiver validation tier accuracy (3 tiers, chance 0.33) | {summary['perceiver_val_tier_accuracy']:.3f} |
| perceiver validation Spearman(quality, -severity) | {summary['perceiver_val_srocc']:.3f} |
| restorer validation PSNR: input -> restored | {summary['restorer_val_input_psnr']:.2f} dB -> {summary['restorer_val_psnr']:.2f} dB |
| restorer validation PSNR gain | {summary['restorer_val_psnr_gain_db']:+.2f} dB |
| gain per type ({inputs}) | {gains_by_type(summary)} |
| samples skipped by the build | {summary['skipped_samples']} |
{times}

## Shards

```
{build_summary}
```

![shards](shards_preview.png)

## Restorer on the validation split ({inputs}, per type)

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
