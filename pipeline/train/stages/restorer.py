"""Stage 2: the restorer, trained with L1 + contrastive (CFE) + CLIP quality (the frozen stage-1
perceiver) + difficulty-adaptive perceptual losses, on mq and lq inputs."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn

import degradations as D
import shards
from model import ClearAIR, Restorer
from model.restorer import ORACLE_MAPS
from model.losses import (
    DifficultyAdaptivePerceptualLoss,
    InfoNCE,
    InternalClueLoss,
    LossWeights,
    PaperPerceptualLoss,
    PSNRLoss,
    QualityLoss,
    difficulty_weights,
)
from pipeline.data import make_loader
from pipeline.data.catalog import load_catalog
from pipeline.eval.shards import evaluate_restorer, first_batches
from pipeline.precompute import ProviderCache
from pipeline.train import checkpoint
from pipeline.train.stages import Stage, build_model, get_stage, register_stage
from pipeline.train.trainer import LAST


ARCHS = ("perceive-ir", "clearair")


def build_restorer(config: Mapping[str, Any], *, weights_follow: bool = False) -> Restorer | ClearAIR:
    """The restorer of the stage's `model` section: `arch` perceive-ir builds a Restorer (its
    backbone_kwargs go to the backbone), clearair a ClearAIR from the `clearair` subsection."""
    config = dict(config)
    arch, clearair = config.pop("arch", "perceive-ir"), config.pop("clearair", {})
    _choice("model.arch", arch, ARCHS)
    if arch == "clearair":
        return build_model(ClearAIR, clearair, "model.clearair", weights_follow=weights_follow)  # type: ignore[return-value]
    backbone_kwargs = config.pop("backbone_kwargs")
    return build_model(Restorer, {**config, **backbone_kwargs}, weights_follow=weights_follow)  # type: ignore[return-value]


PERCEPTUAL_KINDS = ("hardness", "paper")
INPUTS = ("auto", "lq", "lq+mq")


def tier_scheme(source: Any) -> str:
    """The tier scheme of the build at `source` (a shard URL list has no record: bands)."""
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        return shards.open_build(source).tiers
    return "bands"


class RestorerTask:
    """Restore lq toward hq, with mq as medium-quality negatives and the perceiver as a judge."""

    oracle: str | None = None  # the stored map kind an oracle map-guided restorer reads ("qmap", "sev")

    def __init__(self, config: Mapping[str, Any], val_loader: Any | None, device: torch.device) -> None:
        loss_cfg, data = config["loss"], config["data"]
        self.model = build_restorer(config["model"])
        self.weights = LossWeights(
            reconstruction=loss_cfg["reconstruction"], contrastive=loss_cfg["contrastive"],
            quality=loss_cfg["quality"], perceptual=loss_cfg["perceptual"], internal=loss_cfg["internal"],
        )
        kinds = {"l1": nn.L1Loss, "psnr": lambda: PSNRLoss(loss_cfg["psnr_ceiling"])}
        _choice("loss.reconstruction_kind", loss_cfg["reconstruction_kind"], kinds)
        _choice("loss.perceptual_kind", loss_cfg["perceptual_kind"], PERCEPTUAL_KINDS)
        _choice("data.inputs", data["inputs"], INPUTS)
        self.reconstruction = kinds[loss_cfg["reconstruction_kind"]]()
        # A paper build's mq is a restoration, not a degradation to learn from: only lq is an input there.
        inputs = data["inputs"] if data["inputs"] != "auto" else ("lq" if tier_scheme(data["source"]) == "paper" else "lq+mq")
        self.mq_inputs = inputs == "lq+mq"
        self.infonce = InfoNCE(loss_cfg["temperature"]) if self.model.trains_code and self.weights.contrastive else None
        self.internal = InternalClueLoss(loss_cfg["internal_gamma"]) if self.weights.internal else None
        self.clearair = isinstance(self.model, ClearAIR)
        self.oracle = ORACLE_MAPS.get(getattr(self.model, "map_guidance", None))  # the stored map kind an oracle restorer reads
        if self.oracle and not data.get("maps"):
            raise D.UserError(f"model.map_guidance={self.model.map_guidance} reads the stored maps: set data.maps=true (a build made with --maps)")
        self.cache = provider_cache(data.get("provider_cache"), config["model"], self.model)
        if self.cache is not None:
            self.cache.check_build(data["source"])
        self.quality = None
        if self.weights.quality and loss_cfg["perceiver"]:
            perceiver = get_stage("perceiver").load_trained(loss_cfg["perceiver"], device)
            self.quality = QualityLoss(perceiver, logit_scale=loss_cfg["quality_logit_scale"]).to(device)
        elif self.weights.quality:
            warnings.warn(
                f"loss.quality is {self.weights.quality} but loss.perceiver names no trained perceiver: training without "
                "the CLIP quality loss; give loss.perceiver=RUN/perceiver.safetensors (stage 1), or loss.quality=0",
                stacklevel=2,
            )
        self.perceptual: nn.Module | None = None
        self.probe: ProbeSet | None = None
        if self.weights.perceptual and loss_cfg["perceptual_kind"] == "paper":
            pretrained = loss_cfg["perceptual_pretrained"]
            vgg = {"weights": "IMAGENET1K_V1" if pretrained is True else pretrained or None}
            self.perceptual = build_model(PaperPerceptualLoss, {**vgg, **loss_cfg["perceptual_kwargs"]}, "loss.perceptual").to(device)
            if loss_cfg["probe_per_type"]:
                self.probe = ProbeSet(config, int(loss_cfg["probe_per_type"]))
        elif self.weights.perceptual:
            perceptual = {"feature_model": loss_cfg["perceptual_model"], "pretrained": loss_cfg["perceptual_pretrained"]}
            self.perceptual = build_model(
                DifficultyAdaptivePerceptualLoss, {**perceptual, **loss_cfg["perceptual_kwargs"]}, "loss.perceptual"
            ).to(device)
        self.perceptual_crop = loss_cfg["perceptual_crop"]
        self.val_loader = val_loader
        self.val_batches = int(config["data"]["val_batches"])

    def on_epoch(self, model: nn.Module, epoch: int) -> None:
        """The paper's difficulty threshold: the model's mean PSNR on the probe set, at each epoch's start."""
        if self.probe is not None:
            self.probe.measure(model)

    def loss(self, model: nn.Module, batch: Mapping[str, Any], rng: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        lq, mq, hq = batch["lq"], batch["mq"], batch["hq"]
        degraded = lq
        if self.mq_inputs:
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
        given: dict[str, Any] = {"rng": rng} if self.clearair else {}  # ClearAIR's mask dropout draws from the step's generator
        if self.oracle:
            lq_map = batch[f"lq_{self.oracle}"]
            given["quality_map"] = torch.where(pick_mq, batch[f"mq_{self.oracle}"], lq_map) if self.mq_inputs else lq_map
        if self.cache is not None:  # ClearAIR's provider outputs, computed once by `perceive-ir precompute`
            tiers = ["mq" if p else "lq" for p in pick_mq.flatten().tolist()] if self.mq_inputs else ["lq"] * len(lq)
            given.update(self.cache.given(batch["key"], tiers, lq.device))
        restored, aux = model(degraded, return_aux=True, positive=positive, **given)
        terms = {"reconstruction": self.reconstruction(restored, hq)}
        if self.internal is not None:
            terms["internal"] = self.internal(restored, rng)
        if self.infonce is not None:
            groups = _type_ids(batch["type"], degraded.device)
            terms["contrastive"] = self.infonce(aux["embedding"], aux["positive_embedding"], groups)
        if self.quality is not None:
            terms["quality"] = self.quality(restored.clamp(0, 1))
        if self.perceptual is not None:
            r, h, d, m, low = _same_crop((restored, hq, degraded, mq, lq), self.perceptual_crop, rng)
            if isinstance(self.perceptual, PaperPerceptualLoss):
                # mq is the proxy: the medium restorer's output on this sample (the authors' stage-1 proxy).
                weights = None
                if self.probe is not None and self.probe.tau is not None:
                    weights = difficulty_weights(image_psnr(m, h)[:, None], self.probe.tau)
                terms["perceptual"] = self.perceptual(r, h, d, [m], weights)
            else:
                terms["perceptual"] = self.perceptual(r, h, low, [m])
        logged = {k: float(v.detach()) for k, v in terms.items()}
        if self.probe is not None and self.probe.tau is not None:
            logged["probe_psnr"] = self.probe.tau
        return self.weights.total(terms), logged

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
        given = {"quality_map": batch[f"lq_{self.oracle}"][:n].to(device)} if self.oracle else {}
        return torch.cat([lq, model(lq, **given).clamp(0, 1), hq], dim=-1).cpu()


def provider_cache(folder: str | None, model_config: Mapping[str, Any], model: nn.Module) -> ProviderCache | None:
    """The precomputed provider outputs at `folder` (data.provider_cache), checked against the model."""
    if not folder:
        return None
    if not isinstance(model, ClearAIR):
        raise D.UserError("data.provider_cache holds ClearAIR's provider outputs: it needs model.arch=clearair")
    cache = ProviderCache(folder)
    settings = model_config["clearair"]
    for kind, switch in (("quality", "qgm"), ("task", "dam")):
        if kind in cache.records:
            if not settings[switch]:
                raise D.UserError(f"data.provider_cache holds {kind} outputs, but model.clearair.{switch} is off")
            cache.check(kind, settings[kind], settings[f"{kind}_kwargs"])
    return cache


def _same_crop(images: tuple[torch.Tensor, ...], side: int | None, rng: torch.Generator) -> tuple[torch.Tensor, ...]:
    """The same random `side` x `side` box of every batch in `images` (all of them when None or larger)."""
    h, w = images[0].shape[-2:]
    if side is None or side >= min(h, w):
        return images
    y, x = (int(torch.randint(0, n - side + 1, (1,), generator=rng)) for n in (h, w))
    return tuple(im[..., y : y + side, x : x + side] for im in images)


def _choice(key: str, value: Any, choices: Any) -> None:
    if value not in choices:
        raise D.UserError(f"{key} is {value!r}; choose one of {', '.join(choices)}")


def image_psnr(images: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of each image of a batch in [0, 1] against its clean one, shape (B,)."""
    mse = (images.float().clamp(0, 1) - clean.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


class ProbeSet:
    """The authors' fixed probe set: `per_type` training samples of each type, chosen evenly over
    the order of their input PSNR (lq against hq), read as centre crops. `measure` sets `tau`, the
    model's mean PSNR on them, which `difficulty_weights` compares each proxy with."""

    def __init__(self, config: Mapping[str, Any], per_type: int) -> None:
        data = config["data"]
        keys = probe_keys(data["source"], data["split"], per_type, data["types"])
        self.keys = frozenset(keys)
        self.loader = make_loader(
            data["source"], split=data["split"], mode="pairs", batch_size=data["batch_size"], crop=data["crop"],
            num_workers=0, rank=0, world_size=1, augment=False, drop_last=False, where=lambda k: k.isin(self.keys),
        )
        self.tau: float | None = None

    def measure(self, model: nn.Module) -> float:
        device = next(model.parameters()).device
        values = [image_psnr(model(b["lq"].to(device)), b["hq"].to(device)) for b in first_batches(self.loader, 0)]
        self.tau = float(torch.cat(values).mean())
        return self.tau


def probe_keys(source: Any, split: str, per_type: int, types: Any = None) -> list[str]:
    """`per_type` keys of each type of `split` (or of `types`), at evenly spaced ranks of input PSNR."""
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        rows = shards.open_build(source).manifest(["key", "type", "psnr"], filters=[("split", "=", split), ("tier", "=", "lq")])
        frame = rows.to_pandas().rename(columns={"psnr": "quality"})
    else:  # a URL list: the stored score (the build's metric) stands in for PSNR
        catalog = load_catalog(source, split)
        sample_type = np.repeat(catalog.shard_type, np.diff(catalog.shard_start))
        frame = pd.DataFrame({"key": catalog.keys, "type": [catalog.types[t] for t in sample_type],
                              "quality": catalog.score[:, D.TIERS.index("lq")]})
    if types:
        frame = frame[frame["type"].isin([D.canonical_name(t) for t, w in (types.items() if isinstance(types, Mapping) else ((t, 1) for t in types)) if w])]
    keys = []
    for _, group in frame.sort_values(["type", "quality", "key"], kind="stable").groupby("type", sort=True):
        picks = np.unique(((np.arange(per_type) + 0.5) * len(group) / per_type).astype(int)) if len(group) > per_type else np.arange(len(group))
        keys += group["key"].iloc[picks].tolist()
    return keys


def _type_ids(types: list[str], device: torch.device) -> torch.Tensor:
    """Stable small integers per type name (the same on every rank, for InfoNCE's cross-rank groups)."""
    return torch.tensor([D.derive_seed(t) % (1 << 31) for t in types], device=device)


@register_stage
class RestorerStage(Stage):
    name = "restorer"
    mode = "triplets"

    def validation_mode(self, config: Mapping[str, Any]) -> str:
        """Triplets (restore mq and lq) on a bands build; pairs on a paper build, whose mq is a restoration."""
        return "pairs" if tier_scheme(config["data"]["source"]) == "paper" else "triplets"

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
        # (ClearAIR's heavy providers are the exception: they load from their sources again.)
        model = build_restorer({**config["model"], "semantic_pretrained": None}, weights_follow=True)
        model.load_state_dict(checkpoint.load(run / LAST, device)["model"])
        return model.to(device).eval()
