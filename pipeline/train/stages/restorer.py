"""Stage 2: the restorer, trained with L1 + contrastive (CFE) + CLIP quality (the frozen stage-1
perceiver) + difficulty-adaptive perceptual losses, on mq and lq inputs."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

import degradations as D
from model import Restorer
from model.losses import DifficultyAdaptivePerceptualLoss, InfoNCE, LossWeights, PSNRLoss, QualityLoss
from pipeline.eval.shards import evaluate_restorer, first_batches
from pipeline.train import checkpoint
from pipeline.train.stages import Stage, build_model, get_stage, register_stage
from pipeline.train.trainer import LAST


def build_restorer(config: Mapping[str, Any], *, weights_follow: bool = False) -> Restorer:
    """A Restorer from the stage's `model` section (backbone_kwargs go to the backbone)."""
    config = dict(config)
    backbone_kwargs = config.pop("backbone_kwargs")
    return build_model(Restorer, {**config, **backbone_kwargs}, weights_follow=weights_follow)  # type: ignore[return-value]


class RestorerTask:
    """Restore lq toward hq, with mq as medium-quality negatives and the perceiver as a judge."""

    def __init__(self, config: Mapping[str, Any], val_loader: Any | None, device: torch.device) -> None:
        loss_cfg = config["loss"]
        self.model = build_restorer(config["model"])
        self.weights = LossWeights(
            reconstruction=loss_cfg["reconstruction"], contrastive=loss_cfg["contrastive"],
            quality=loss_cfg["quality"], perceptual=loss_cfg["perceptual"],
        )
        kinds = {"l1": nn.L1Loss, "psnr": PSNRLoss}
        if loss_cfg["reconstruction_kind"] not in kinds:
            raise D.UserError(f"loss.reconstruction_kind is {loss_cfg['reconstruction_kind']!r}; choose one of {', '.join(kinds)}")
        self.reconstruction = kinds[loss_cfg["reconstruction_kind"]]()
        self.infonce = InfoNCE() if config["model"]["cfe"] and self.weights.contrastive else None
        self.quality = None
        if self.weights.quality and loss_cfg["perceiver"]:
            self.quality = QualityLoss(get_stage("perceiver").load_trained(loss_cfg["perceiver"], device)).to(device)
        elif self.weights.quality:
            warnings.warn(
                f"loss.quality is {self.weights.quality} but loss.perceiver names no trained perceiver: training without "
                "the CLIP quality loss; give loss.perceiver=RUN/perceiver.safetensors (stage 1), or loss.quality=0",
                stacklevel=2,
            )
        self.perceptual = None
        if self.weights.perceptual:
            perceptual = {"feature_model": loss_cfg["perceptual_model"], "pretrained": loss_cfg["perceptual_pretrained"]}
            self.perceptual = build_model(
                DifficultyAdaptivePerceptualLoss, {**perceptual, **loss_cfg["perceptual_kwargs"]}, "loss.perceptual"
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
        terms = {"reconstruction": self.reconstruction(restored, hq)}
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
        result = {f"val_{k}": float(v) for k, v in mean.items() if k in ("psnr", "ssim", "input_psnr", "psnr_gain")}
        # Per type and tier too ("val_psnr_gain/noise/lq"): an average can hide a type made worse.
        for row in rows[:-1]:
            for k in ("psnr", "psnr_gain"):
                result[f"val_{k}/{row['type']}/{row['tier']}"] = float(row[k])
        return result

    def examples(self, model: nn.Module, n: int = 4) -> torch.Tensor | None:
        """lq | restored | hq side by side for the first `n` samples of the validation split."""
        if self.val_loader is None:
            return None
        batch = next(iter(first_batches(self.val_loader, 1)))
        device = next(model.parameters()).device
        lq, hq = batch["lq"][:n].to(device), batch["hq"][:n].to(device)
        return torch.cat([lq, model(lq).clamp(0, 1), hq], dim=-1).cpu()


def _type_ids(types: list[str], device: torch.device) -> torch.Tensor:
    """Stable small integers per type name (the same on every rank, for InfoNCE's cross-rank groups)."""
    return torch.tensor([D.derive_seed(t) % (1 << 31) for t in types], device=device)


@register_stage
class RestorerStage(Stage):
    name = "restorer"
    mode = "triplets"

    def task(self, config: Mapping[str, Any], val_loader: Any | None, device: torch.device) -> RestorerTask:
        return RestorerTask(config, val_loader, device)

    def evaluate(self, model: nn.Module, loader: Any, limit: int = 0) -> list[dict[str, float | str]]:
        return evaluate_restorer(model, loader, limit)

    def load_trained(self, path: str | Path, device: torch.device) -> nn.Module:
        """The restorer of a run folder (config.yaml + last.pt)."""
        run = Path(path)
        if not (run / "config.yaml").is_file():
            raise D.InputNotFound(f"{run} is not a restorer run folder (no config.yaml); give the folder `train restorer -o` wrote")
        config = yaml.safe_load((run / "config.yaml").read_text())
        # Every weight, the frozen semantic network's too, is in the checkpoint: nothing from a hub.
        model = build_restorer({**config["model"], "semantic_pretrained": None}, weights_follow=True)
        model.load_state_dict(checkpoint.load(run / LAST, device)["model"])
        return model.to(device).eval()
