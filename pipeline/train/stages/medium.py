"""Perceive-IR's medium restorer: a plain backbone trained with L1, cross-fold, whose outputs on
lq become a paper-scheme build's mq tier (`perceive-ir render-medium`).

Fold k's model trains on the samples outside fold k (`shards.fold_of`) and renders fold k only,
so no mq image comes from a model that saw its sample. One command trains every fold in turn
into RUN/fold-K (or one fold, `folds.fold=K`, for one job per GPU). Each fold run records what it
may have seen: fold.json, and the keys of every training sample outside its fold in
trained_keys.txt.gz, which the renderer checks before it uses the model.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import degradations as D
from pipeline.data.catalog import load_catalog
from pipeline.train.stages import register_stage
from pipeline.train.stages.restorer import RestorerStage, RestorerTask, build_restorer
from shards import fold_of

FOLD_RECORD = "fold.json"
TRAINED_KEYS = "trained_keys.txt.gz"


def fold_dir(out: str | Path, fold: int) -> Path:
    return Path(out) / f"fold-{fold}"


def outside_fold(fold: int, folds: int) -> Callable[[Any], np.ndarray]:
    """keys -> mask of the samples fold `fold`'s model trains on: those of the other folds."""
    return lambda keys: np.fromiter((fold_of(k, folds) != fold for k in keys), dtype=bool, count=len(keys))


class MediumTask(RestorerTask):
    """Restore lq toward hq with L1 alone; validated like the restorer (PSNR per type)."""

    def __init__(self, config: Mapping[str, Any], val_loader: Any | None, device: torch.device) -> None:
        self.model = build_restorer(config["model"])
        self.reconstruction = nn.L1Loss()
        self.probe = None  # no difficulty threshold: L1 alone
        self.val_loader = val_loader
        self.val_batches = int(config["data"]["val_batches"])

    def loss(self, model: nn.Module, batch: Mapping[str, Any], rng: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        loss = self.reconstruction(model(batch["lq"]), batch["hq"])
        return loss, {"reconstruction": float(loss.detach())}


@register_stage
class MediumStage(RestorerStage):
    name = "medium"
    mode = "pairs"

    def validation_mode(self, config: Mapping[str, Any]) -> str:
        return "pairs"  # a paper build has no mq before this stage's models render it

    def task(self, config: Mapping[str, Any], val_loader: Any | None, device: torch.device) -> MediumTask:
        return MediumTask(config, val_loader, device)

    def runs(self, config: Mapping[str, Any]) -> list[dict[str, Any]]:
        folds, only = config["folds"]["folds"], config["folds"]["fold"]
        fold_of("x-0", folds)  # UserError for a bad fold count
        if only is not None and (isinstance(only, bool) or not isinstance(only, int) or not 0 <= only < folds):
            raise D.UserError(f"folds.fold must be null or an integer in 0..{folds - 1}, got {only!r}")
        runs = []
        for fold in range(folds) if only is None else [only]:
            run = copy.deepcopy(dict(config))
            run["folds"]["fold"] = fold
            run["run"]["out"] = str(fold_dir(config["run"]["out"], fold))
            runs.append(run)
        return runs

    def where(self, config: Mapping[str, Any]) -> Callable[[Any], np.ndarray]:
        return outside_fold(config["folds"]["fold"], config["folds"]["folds"])

    def export(self, model: nn.Module, out: Path, config: Mapping[str, Any]) -> None:
        """fold.json and the keys this fold's model may have trained on (every training sample outside its fold)."""
        data, folds = config["data"], config["folds"]
        keys = sorted(str(k) for k in load_catalog(data["source"], data["split"], self.where(config)).keys)
        text = "".join(k + "\n" for k in keys).encode()
        with gzip.GzipFile(out / TRAINED_KEYS, "wb", mtime=0) as f:
            f.write(text)
        record = {"stage": self.name, "fold": folds["fold"], "folds": folds["folds"], "source": data["source"],
                  "split": data["split"], "trained_keys": len(keys), "trained_keys_sha256": hashlib.sha256(text).hexdigest()}
        (out / FOLD_RECORD).write_text(json.dumps(record, indent=1) + "\n")


def read_fold_run(run: str | Path) -> tuple[dict[str, Any], set[str]]:
    """A medium fold run's record and the keys it may have trained on; UserError when it is not one."""
    run = Path(run)
    try:
        record = json.loads((run / FOLD_RECORD).read_text())
        with gzip.open(run / TRAINED_KEYS, "rt") as f:
            keys = set(f.read().split())
    except (OSError, ValueError) as err:
        raise D.InputNotFound(
            f"{run} is not a finished fold run of `perceive-ir train medium` (no readable {FOLD_RECORD} and {TRAINED_KEYS}: {err})"
        ) from None
    return record, keys
