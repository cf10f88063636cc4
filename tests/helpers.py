"""Plain helpers shared by test modules (fixtures are in conftest.py): tiny model settings and stage configs.

Plain functions, not fixtures, because subprocess tests (DDP over gloo) call them in a child process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import shards
from pipeline.train import get_stage

# The small build several modules make or read: 64 px patches, a few per photo, 3 samples per shard (dozens of shards).
SMALL_BUILD = shards.BuildConfig(patch=64, patches_per_image=3, samples_per_shard=3, seed=5)
# A small build with severity and quality maps (a generator drawn per image), for the map tests.
MAPS_BUILD = shards.BuildConfig(types=("noise", "haze", "rain"), patch=64, patches_per_image=2, samples_per_shard=4, seed=3, maps="mixed")
SMALL_BUILD_ARGS = ["--patch", "64", "--patches-per-image", "3", "--samples-per-shard", "3", "--seed", "5", "--quiet"]

TINY_PERCEIVER = {"clip_model": "perceive-ir-tiny", "pretrained": None, "n_ctx": 4, "train_visual": True}
TINY_NAFNET = {"width": 8, "encoder_blocks": [1, 1, 1], "middle_blocks": 1, "decoder_blocks": [1, 1, 1]}
TINY_RESTORER = {
    "backbone": "nafnet", "sgm": True, "cfe": True, "semantic_model": "vit_small_patch14_dinov2",
    "semantic_pretrained": None, "semantic_size": 28, "semantic_kwargs": {"depth": 3, "embed_dim": 32, "num_heads": 2},
    "backbone_kwargs": TINY_NAFNET,
}
TINY_LOSS = {"perceptual_kwargs": {"depths": [0, 1], "layer_weights": [0.5, 1.0]}}
TINY_CLEARAIR = {"width": 8, "blocks": [1, 1, 1, 1], "heads": [1, 1, 2, 2], "refinement_blocks": 1}


def stage_config(stage: str, out: Path, steps: int = 4, **run: Any) -> dict[str, Any]:
    """The stage's defaults with tiny random models, `steps` steps, logging every step, no bf16.
    Stage "clearair" is the restorer stage with a tiny ClearAIR and the internal clue reuse loss."""
    cfg = get_stage("restorer" if stage == "clearair" else stage).defaults()
    if stage == "clearair":
        cfg["model"].update(arch="clearair", clearair={**cfg["model"]["clearair"], **TINY_CLEARAIR})
        cfg["loss"].update(internal=0.25, perceptual=0.0)
    else:
        cfg["model"] = dict(TINY_PERCEIVER if stage == "perceiver" else TINY_RESTORER)
    if stage == "restorer":
        cfg["loss"].update(TINY_LOSS)
    cfg["optim"].update(steps=steps, warmup_steps=2, lr=3e-3)
    cfg["run"].update({"out": str(out), "checkpoint_every": 1000, "log_every": 1, "bf16": False, **run})
    return cfg


def find_window(image: np.ndarray, crop: np.ndarray) -> tuple[int, int, bool, bool] | None:
    """(y, x, flip left-right, flip up-down) of the window of `image` that, flipped so, is `crop`; None if none is."""
    h, w = crop.shape[:2]
    for flip_lr in (False, True):
        for flip_ud in (False, True):
            c = crop[::-1 if flip_ud else 1, ::-1 if flip_lr else 1]
            for y in range(image.shape[0] - h + 1):
                for x in range(image.shape[1] - w + 1):
                    if np.array_equal(image[y : y + h, x : x + w], c):
                        return y, x, flip_lr, flip_ud
    return None
