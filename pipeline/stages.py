"""The two training stages of Perceive-IR as `Task`s for `pipeline.trainer.fit`.

Stage 1 trains the quality perceiver to tell the three tiers apart;
stage 2 trains the restorer with L1 + contrastive (CFE) + CLIP quality (the
frozen stage-1 perceiver) + difficulty-adaptive perceptual losses.
"""

from __future__ import annotations

import contextlib
import itertools
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from model import QualityPerceiver, RandomWeightsWarning, Restorer
from model.losses import DifficultyAdaptivePerceptualLoss, InfoNCE, LossWeights, QualityLoss
from pipeline.metrics import RestorationScores, spearman

_RUN = {"out": None, "checkpoint_every": 500, "log_every": 10, "eval_every": 0, "bf16": True, "resume": False, "device": "auto"}
_DATA = {"source": None, "split": "train", "val_split": "val", "crop": 128, "num_workers": 2, "types": None, "val_batches": 0}

PERCEIVER_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "data": {**_DATA, "batch_size": 32},
    "model": {"clip_model": "ViT-B-32", "pretrained": None, "n_ctx": 16, "train_visual": False},
    "optim": {"steps": 2000, "lr": 2e-3, "weight_decay": 0.0, "warmup_steps": 100, "min_lr_ratio": 0.0, "grad_accum": 1, "clip_grad": 1.0},
    "run": {**_RUN, "out": "runs/perceiver"},
}

RESTORER_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "data": {**_DATA, "batch_size": 8},
    "model": {
        "backbone": "restormer", "sgm": True, "cfe": True,
        "semantic_model": "vit_small_patch14_dinov2", "semantic_pretrained": None, "semantic_size": 224,
        "semantic_kwargs": {}, "backbone_kwargs": {},
    },
    "loss": {
        "reconstruction": 1.0, "contrastive": 0.1, "quality": 0.05, "perceptual": 0.1,
        "perceiver": None, "perceptual_model": "vgg16", "perceptual_pretrained": None, "perceptual_kwargs": {},
    },
    "optim": {"steps": 10000, "lr": 2e-4, "weight_decay": 1e-4, "warmup_steps": 500, "min_lr_ratio": 0.01, "grad_accum": 1, "clip_grad": 1.0},
    "run": {**_RUN, "out": "runs/restorer"},
}

DEFAULTS = {"perceiver": PERCEIVER_DEFAULTS, "restorer": RESTORER_DEFAULTS}


@contextlib.contextmanager
def seeded_torch(seed: int) -> Iterator[None]:
    """Seed torch's generator inside the block only: the caller's random state is restored after.

    Module initialisation draws from torch's global generator and takes no
    Generator argument; scoping the seed makes models reproducible from the
    config without leaving global state behind. (Training draws come from
    per-step generators; see `Task.loss`.)
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.random.manual_seed(seed)
        yield


def build_perceiver(cfg: Mapping[str, Any]) -> QualityPerceiver:
    with warnings.catch_warnings():
        warnings.simplefilter("once", RandomWeightsWarning)
        return QualityPerceiver(**cfg)


def build_restorer(cfg: Mapping[str, Any]) -> Restorer:
    cfg = dict(cfg)
    backbone_kwargs = cfg.pop("backbone_kwargs")
    with warnings.catch_warnings():
        warnings.simplefilter("once", RandomWeightsWarning)
        return Restorer(**cfg, **backbone_kwargs)


def _batches(loader: Any, limit: int) -> Iterator[Mapping[str, Any]]:
    """The first `limit` batches (0: all) of epoch 0: a loader with `rewind` is rewound, so every
    validation pass sees the same batches."""
    if hasattr(loader, "rewind"):
        loader.rewind(0)
    return itertools.islice(loader, limit or None)


class PerceiverTask:
    """Cross-entropy over (lq, mq, hq) on single tier images; validation: accuracy and rank correlation."""

    def __init__(self, config: Mapping[str, Any], val_loader: Any | None) -> None:
        self.model = build_perceiver(config["model"])
        self.val_loader = val_loader
        self.val_batches = int(config["data"]["val_batches"])

    def loss(self, model: nn.Module, batch: Mapping[str, Any], rng: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        logits = model(batch["image"])
        loss = F.cross_entropy(logits, batch["tier"])
        accuracy = (logits.argmax(dim=1) == batch["tier"]).float().mean()
        return loss, {"accuracy": float(accuracy)}

    def validate(self, model: nn.Module) -> dict[str, float]:
        return evaluate_perceiver(model, self.val_loader, self.val_batches) if self.val_loader is not None else {}


@torch.no_grad()
def evaluate_perceiver(model: nn.Module, loader: Any, limit: int = 0) -> dict[str, float]:
    """Tier accuracy over every image of triplet batches (lq, mq and hq of each sample), and the
    Spearman correlation of the predicted quality with -severity (clean images count as
    severity 0; higher is better, 1 is a perfect ranking). Reads the first `limit` batches
    (0: all) of epoch 0, rewinding a loader that has `rewind`."""
    device = next(model.parameters()).device
    correct = total = 0
    scores, severities = [], []
    for batch in _batches(loader, limit):
        tiers = {"lq": batch["severity"], "mq": batch["severity_mq"], "hq": torch.zeros(len(batch["hq"]))}
        for label, (tier, severity) in enumerate(tiers.items()):
            logits = model(batch[tier].to(device))
            correct += int((logits.argmax(dim=1) == label).sum())
            total += len(logits)
            scores += (logits.softmax(dim=1) @ torch.tensor([0.0, 0.5, 1.0], device=device)).tolist()
            severities += [-float(s) for s in severity]
    return {"tier_accuracy": correct / max(total, 1), "srocc_quality_vs_severity": spearman(scores, severities), "n": total}


class RestorerTask:
    """Restore lq toward hq, with mq as medium-quality negatives and the perceiver as a judge."""

    def __init__(self, config: Mapping[str, Any], val_loader: Any | None, device: torch.device) -> None:
        loss_cfg = config["loss"]
        self.model = build_restorer(config["model"])
        self.weights = LossWeights(
            reconstruction=loss_cfg["reconstruction"], contrastive=loss_cfg["contrastive"],
            quality=loss_cfg["quality"], perceptual=loss_cfg["perceptual"],
        )
        self.l1 = nn.L1Loss()
        self.infonce = InfoNCE() if config["model"]["cfe"] and self.weights.contrastive else None
        self.quality = None
        if loss_cfg["perceiver"] and self.weights.quality:
            self.quality = QualityLoss(QualityPerceiver.load(loss_cfg["perceiver"], device)).to(device)
        self.perceptual = None
        if self.weights.perceptual:
            with warnings.catch_warnings():
                warnings.simplefilter("once", RandomWeightsWarning)
                self.perceptual = DifficultyAdaptivePerceptualLoss(
                    loss_cfg["perceptual_model"], loss_cfg["perceptual_pretrained"], **loss_cfg["perceptual_kwargs"]
                ).to(device)
        self.val_loader = val_loader
        self.val_batches = int(config["data"]["val_batches"])

    def loss(self, model: nn.Module, batch: Mapping[str, Any], rng: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        lq, mq, hq = batch["lq"], batch["mq"], batch["hq"]
        # Restore both grades: each sample's input is its mq or its lq image, half and half, so
        # the restorer learns how much to do (trained on lq alone, it over-corrects mild damage).
        # Both stay the negatives of the perceptual loss.
        pick_mq = (torch.rand(len(lq), generator=rng) < 0.5).view(-1, 1, 1, 1).to(lq.device)
        degraded = torch.where(pick_mq, mq, lq)
        # The CFE's positive: another crop (three quarters of each side) of the same degraded image.
        h, w = degraded.shape[-2:]
        ch, cw = max(8, 3 * h // 4), max(8, 3 * w // 4)
        y, x = (int(torch.randint(0, n + 1, (1,), generator=rng)) for n in (h - ch, w - cw))
        positive = degraded[..., y : y + ch, x : x + cw] if self.infonce else None
        restored, aux = model(degraded, return_aux=True, positive=positive)
        terms = {"reconstruction": self.l1(restored, hq)}
        if self.infonce is not None:
            groups = _type_ids(batch["type"], degraded.device)
            terms["contrastive"] = self.infonce(aux["embedding"], aux["positive_embedding"], groups)
        if self.quality is not None:
            terms["quality"] = self.quality(restored.clamp(0, 1))
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual(restored, hq, lq, [mq])
        return self.weights.total(terms), {k: float(v.detach()) for k, v in terms.items()}

    def validate(self, model: nn.Module) -> dict[str, float]:
        if self.val_loader is None:
            return {}
        rows = evaluate_restorer(model, self.val_loader, self.val_batches)
        mean = rows[-1] if rows else {}
        return {f"val_{k}": float(v) for k, v in mean.items() if k in ("psnr", "ssim", "input_psnr", "psnr_gain")}


def _type_ids(types: list[str], device: torch.device) -> torch.Tensor:
    """Stable small integers per type name (the same on every rank, for InfoNCE's cross-rank groups)."""
    import degradations as D

    return torch.tensor([D.derive_seed(t) % (1 << 31) for t in types], device=device)


@torch.no_grad()
def evaluate_restorer(model: nn.Module, loader: Any, limit: int = 0) -> list[dict[str, float | str]]:
    """PSNR / SSIM per type and tier of restored mq and lq inputs (triplet batches) against hq.
    Reads the first `limit` batches (0: all) of epoch 0, rewinding a loader that has `rewind`."""
    device = next(model.parameters()).device
    scores = RestorationScores()
    for batch in _batches(loader, limit):
        hq = batch["hq"].to(device)
        for tier in ("mq", "lq"):
            if tier in batch:
                degraded = batch[tier].to(device)
                scores.add(model(degraded), degraded, hq, batch["type"], tier)
    return scores.table()


def load_trained_restorer(run: str | Path, device: torch.device) -> Restorer:
    """The restorer of a stage-2 run directory (config.yaml + last.pt)."""
    import yaml

    from pipeline import checkpoint

    run = Path(run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    model = build_restorer(config["model"])
    model.load_state_dict(checkpoint.load(run / "last.pt", device)["model"])
    return model.to(device).eval()
