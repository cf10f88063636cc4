"""ClearAIR's frozen helpers behind small interfaces: quality (how), regions (where), task (what).

Three kinds of provider, each a registry like `model.backbones`:

* quality: images (B, 3, H, W) in [0, 1] -> an embedding (B, dim) of how good the image looks.
  The paper's is DeQA-Score's hidden state before the quality word (`deqa`); `pyiqa` takes any
  no-reference IQA network; `perceiver` (the default, offline) is perceive-ir's own perceiver.
* regions: images -> masks (B, max_regions, H, W) in {0, 1}, non-overlapping, unused slots zero.
  The paper's are SAM2's automatic masks (`sam2`); `superpixels` (the default) needs only
  scikit-image.
* task: images -> (content (B, content_dim), degradation (B, degradation_dim)). The paper's is
  DA-CLIP (`daclip`); `cfe` (the default) is perceive-ir's CFE for the degradation and the
  perceiver's image embedding for the content.

Providers are nn.Modules so that they follow the restorer to its device. Light ones (perceiver,
superpixels, CFE) keep their weights as submodules, in the restorer's checkpoint; heavy ones
(DeQA-Score, SAM2, DA-CLIP) hold their network outside the state dict and load it from its source
wherever the restorer is built, so a checkpoint does not carry 8 B frozen parameters. Every
provider is frozen and runs under no_grad, except a CFE built without weights, which trains with
the restorer (`trainable`). A missing package raises `MissingProvider`, naming the package and the
offline fallback. `create_provider(kind, name, **kwargs)` builds one; `available(kind)` lists them.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..cfe import CompactFeatureExtractor
from ..perceiver import QualityPerceiver

KINDS = ("quality", "regions", "task")
DEFAULTS = {"quality": "perceiver", "regions": "superpixels", "task": "cfe"}


class MissingProvider(ImportError):
    """A provider's package is not installed (the message names it and the offline fallback)."""


class Provider(nn.Module):
    """Base of all providers: frozen, eval mode, no gradients (see the module docstring)."""

    kind: ClassVar[str]
    trainable: bool = False

    def freeze(self) -> None:
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Provider:
        return super().train(mode and self.trainable)

    def external_networks(self) -> list[nn.Module]:
        """The heavy networks held outside the state dict (for parameter counts)."""
        held = (getattr(self, name) for name in self.__dict__.get("_external", ()))
        return [net for net in held if isinstance(net, nn.Module)]


class QualityProvider(Provider):
    kind = "quality"
    dim: int

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, dim)
        raise NotImplementedError


class RegionProvider(Provider):
    kind = "regions"
    max_regions: int

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, max_regions, H, W)
        raise NotImplementedError


class TaskProvider(Provider):
    kind = "task"
    content_dim: int
    degradation_dim: int

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # -> content, degradation
        raise NotImplementedError


_REGISTRY: dict[str, dict[str, type[Provider]]] = {kind: {} for kind in KINDS}
ProviderClass = TypeVar("ProviderClass", bound=type[Provider])


def register_provider(name: str) -> Callable[[ProviderClass], ProviderClass]:
    """Class decorator: add a Provider subclass to its kind's registry under `name`."""

    def add(cls: ProviderClass) -> ProviderClass:
        registry = _REGISTRY[cls.kind]
        if name in registry:
            raise ValueError(f"{cls.kind} provider {name!r} is already registered by {registry[name].__qualname__}")
        registry[name] = cls
        return cls

    return add


def available(kind: str) -> list[str]:
    return sorted(_REGISTRY[kind])


def create_provider(kind: str, name: str, **kwargs: Any) -> Provider:
    """The `kind` provider registered as `name`, built with `kwargs`."""
    if kind not in _REGISTRY:
        raise ValueError(f"unknown provider kind {kind!r}; kinds are {', '.join(KINDS)}")
    if name not in _REGISTRY[kind]:
        raise ValueError(f"unknown {kind} provider {name!r}; available: {available(kind)}")
    return _REGISTRY[kind][name](**kwargs)


def require(package: str, provider: str, fallback: str, pip_name: str | None = None) -> Any:
    """Import `package`, or raise MissingProvider saying what to install and what works offline."""
    try:
        return importlib.import_module(package)
    except ImportError as err:
        raise MissingProvider(
            f"the {provider} provider needs the `{package}` package (pip install {pip_name or package}); "
            f"without it use the offline default {fallback}"
        ) from err


def _outside_state(module: nn.Module, name: str, value: Any) -> None:
    """Hold a heavy network as a plain attribute: out of the state dict and of .parameters()."""
    object.__setattr__(module, name, value)
    module.__dict__.setdefault("_external", []).append(name)


# --- quality -----------------------------------------------------------------------------


def _perceiver(path: str | Path | None, clip_model: str, n_ctx: int) -> QualityPerceiver:
    """A stage-1 perceiver from its safetensors file, or a random one of `clip_model` (with a warning)."""
    if path:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no perceiver file; give the perceiver.safetensors `train perceiver` wrote")
        return QualityPerceiver.load(path)
    return QualityPerceiver(clip_model, None, n_ctx=n_ctx)


@register_provider("perceiver")
class PerceiverQuality(QualityProvider):
    """perceive-ir's quality perceiver: its CLIP image embedding and its (lq, mq, hq) probabilities.

    Needs nothing beyond perceive-ir. `perceiver`: a `train perceiver` output file; None builds a
    random `clip_model` (its weights are then in the restorer's checkpoint)."""

    def __init__(self, perceiver: str | None = None, clip_model: str = "perceive-ir-tiny", n_ctx: int = 4) -> None:
        super().__init__()
        self.source = (perceiver, clip_model, n_ctx)
        self.perceiver = _perceiver(perceiver, clip_model, n_ctx)
        with torch.no_grad():
            self.dim = self.forward(torch.zeros(1, 3, 32, 32)).shape[-1]
        self.freeze()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        embedding = self.perceiver.encode_image(images)
        tiers = (self.perceiver.clip.logit_scale.exp() * embedding @ self.perceiver.prompt_features().T).softmax(-1)
        return torch.cat([embedding, tiers], dim=-1)


@register_provider("pyiqa")
class PyiqaQuality(QualityProvider):
    """Any no-reference metric of `pyiqa` (pip install pyiqa; weights from its hub or cache).

    Its embedding is the metric's score (B, 1), not a hidden state: pyiqa's networks share no
    feature interface. `metric` may be a ready callable (images -> scores) instead of a name."""

    def __init__(self, name: str = "musiq", metric: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__()
        if metric is None:
            pyiqa = require("pyiqa", "pyiqa quality", "quality=perceiver")
            metric = pyiqa.create_metric(name, as_loss=False, device="cpu")
        _outside_state(self, "metric", metric)
        self.dim = 1
        self.freeze()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if isinstance(self.metric, nn.Module):
            self.metric.to(images.device)
        return self.metric(images).float().reshape(len(images), -1)[:, :1]


DEQA_PROMPT = "USER: How would you rate the quality of this image?\n<|image|>\nASSISTANT: The quality of the image is"
IMAGE_TOKEN_INDEX = -200  # mPLUG-Owl2's placeholder id for the image features in input_ids


@register_provider("deqa")
class DeQAQuality(QualityProvider):
    """DeQA-Score (mPLUG-Owl2, about 8 B parameters; pip install transformers, plus bitsandbytes for
    4-bit): the last layer's hidden state at the last prompt position, the one that predicts the
    quality word, as ClearAIR uses it (4096-d).

    The model loads through `transformers` with the repository's own code (trust_remote_code);
    `model`, `tokenizer` and `image_processor` may be given ready-made instead (tests pass tiny
    stand-ins that honour the same call). Images are resized to the processor's square input."""

    def __init__(
        self,
        name: str = "zhiyuanyou/DeQA-Score-Mix3",
        load_in_4bit: bool = False,
        *,
        model: Any = None,
        tokenizer: Any = None,
        image_size: int = 448,
        mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073),
        std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711),
    ) -> None:
        super().__init__()
        if model is None or tokenizer is None:
            transformers = require("transformers", "deqa quality", "quality=perceiver")
            options: dict[str, Any] = {"trust_remote_code": True, "torch_dtype": torch.float16}
            if load_in_4bit:
                require("bitsandbytes", "deqa quality in 4-bit", "load_in_4bit=false or quality=perceiver")
                options["quantization_config"] = transformers.BitsAndBytesConfig(load_in_4bit=True)
            model = transformers.AutoModelForCausalLM.from_pretrained(name, **options)
            tokenizer = transformers.AutoTokenizer.from_pretrained(name, trust_remote_code=True)
        _outside_state(self, "model", model.eval())
        before, after = DEQA_PROMPT.split("<|image|>")
        ids = tokenizer(before).input_ids + [IMAGE_TOKEN_INDEX] + tokenizer(after).input_ids[1:]  # one BOS only
        self.register_buffer("input_ids", torch.tensor(ids)[None], persistent=False)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.image_size = image_size
        self.dim = int(model.config.hidden_size)
        self.freeze()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # The 8 B network stays where transformers put it (device_map, 4-bit): the inputs go to it.
        weight = next(self.model.parameters())
        device, dtype = weight.device, getattr(self.model, "dtype", weight.dtype)
        x = F.interpolate(images, size=(self.image_size,) * 2, mode="bicubic", antialias=True, align_corners=False)
        x = ((x - self.mean) / self.std).to(device, dtype)
        ids = self.input_ids.expand(len(images), -1).to(device)
        out = self.model(input_ids=ids, images=x, output_hidden_states=True)
        return out.hidden_states[-1][:, -1].float().to(images.device)


# --- regions -----------------------------------------------------------------------------


def _top_masks(masks: list[np.ndarray], max_regions: int, size: tuple[int, int]) -> torch.Tensor:
    """Up to `max_regions` boolean masks as (max_regions, H, W) float, each pixel in at most one
    (earlier masks win an overlap), missing slots zero."""
    out = torch.zeros(max_regions, *size)
    taken = torch.zeros(size, dtype=torch.bool)
    for i, mask in enumerate(masks[:max_regions]):
        m = torch.from_numpy(np.ascontiguousarray(mask)).bool()
        if m.shape != size:
            m = F.interpolate(m[None, None].float(), size=size, mode="nearest")[0, 0].bool()
        m &= ~taken
        out[i] = m.float()
        taken |= m
    return out


@register_provider("superpixels")
class SuperpixelRegions(RegionProvider):
    """SLIC superpixels of scikit-image (no network, no weights): the image at `analysis_size` px
    split into about `max_regions` compact regions, largest first, upsampled to the input size.

    Superpixels follow colour edges, not objects: they stand in for SAM2's masks offline."""

    # Compactness 30 and a Gaussian of sigma 1 before segmenting: at scikit-image's 10 and no smoothing,
    # a noisy patch came out as 1 or 2 regions (measured: 8 / 2 / 1 regions for a photo, the photo
    # noised, pure noise; 14 / 15 / 16 with these settings).
    def __init__(self, max_regions: int = 16, analysis_size: int = 64, compactness: float = 30.0, smoothing: float = 1.0) -> None:
        super().__init__()
        # The function, not the module: a module attribute would make the restorer unpicklable.
        self.slic = require("skimage.segmentation", "superpixels regions", "model.clearair.sca=false", "scikit-image").slic
        self.max_regions, self.analysis_size, self.compactness, self.smoothing = max_regions, analysis_size, compactness, smoothing
        self.freeze()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = tuple(images.shape[-2:])
        small = F.interpolate(images.float(), size=(self.analysis_size,) * 2, mode="area").clamp(0, 1)
        result = []
        for image in small.permute(0, 2, 3, 1).cpu().numpy():
            labels = self.slic(
                image.astype(np.float64), n_segments=self.max_regions, compactness=self.compactness, sigma=self.smoothing,
                start_label=0, channel_axis=-1,
            )
            ids, counts = np.unique(labels, return_counts=True)
            order = ids[np.lexsort((ids, -counts))]  # largest first, ties by label: deterministic
            result.append(_top_masks([labels == i for i in order], self.max_regions, size))
        return torch.stack(result).to(images.device)


@register_provider("sam2")
class SAM2Regions(RegionProvider):
    """SAM2's automatic masks (pip install sam2, and a checkpoint): points on a 4 x 4 grid,
    predicted-IoU threshold 0.70, the top `max_regions` masks by predicted IoU, as ClearAIR's code.

    `generator` may be a ready object with SAM2AutomaticMaskGenerator's `generate(image_uint8)`."""

    def __init__(
        self,
        config: str = "configs/sam2.1/sam2.1_hiera_t.yaml",
        checkpoint: str | None = None,
        max_regions: int = 16,
        *,
        generator: Any = None,
    ) -> None:
        super().__init__()
        if generator is None:
            require("sam2", "sam2 regions", "regions=superpixels")
            from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
            from sam2.build_sam import build_sam2

            if not checkpoint:
                raise FileNotFoundError("the sam2 regions provider needs its weights: checkpoint=PATH/sam2.1_hiera_tiny.pt")
            generator = SAM2AutomaticMaskGenerator(
                build_sam2(config, checkpoint, device="cpu"), points_per_side=4, pred_iou_thresh=0.70
            )
        _outside_state(self, "generator", generator)
        self.max_regions = max_regions
        self.freeze()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = tuple(images.shape[-2:])
        result = []
        for image in (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy():
            found = sorted(self.generator.generate(image), key=lambda m: -float(m["predicted_iou"]))
            result.append(_top_masks([m["segmentation"] for m in found], self.max_regions, size))
        return torch.stack(result).to(images.device)


# --- task --------------------------------------------------------------------------------


@register_provider("cfe")
class CFETask(TaskProvider):
    """perceive-ir's own task identifier: the CFE's degradation code and the perceiver's CLIP image
    embedding as the content. Needs nothing beyond perceive-ir.

    `cfe`: a Perceive-IR restorer run whose trained CFE is loaded and frozen; None: a new CFE that
    trains with this restorer (its code is also the restorer's aux "embedding", so the contrastive
    loss can shape it). `perceiver` / `clip_model`: as the perceiver quality provider."""

    def __init__(
        self, cfe: str | None = None, perceiver: str | None = None, clip_model: str = "perceive-ir-tiny",
        n_ctx: int = 4, embed_dim: int = 128,
    ) -> None:
        super().__init__()
        self.source = (perceiver, clip_model, n_ctx)
        self.cfe = CompactFeatureExtractor(embed_dim)
        self.trainable = cfe is None
        if cfe is not None:
            self.cfe.load_state_dict(_restorer_cfe_state(cfe))
        self.perceiver = _perceiver(perceiver, clip_model, n_ctx).requires_grad_(False).eval()
        self.degradation_dim = self.cfe.embed_dim
        with torch.no_grad():
            self.content_dim = self.perceiver.encode_image(torch.zeros(1, 3, 32, 32)).shape[-1]
        if not self.trainable:
            self.freeze()

    def train(self, mode: bool = True) -> CFETask:
        super().train(mode)
        self.perceiver.eval()  # frozen even when the CFE trains (a perceiver's BatchNorm must not drift)
        return self

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            content = self.perceiver.encode_image(images)
        if self.trainable:
            return content, self.cfe(images)
        with torch.no_grad():
            return content, self.cfe(images)


def _restorer_cfe_state(run: str | Path) -> dict[str, torch.Tensor]:
    """The CFE weights of a Perceive-IR restorer run's last.pt (read with weights_only)."""
    path = Path(run) / "last.pt" if Path(run).is_dir() else Path(run)
    if not path.is_file():
        raise FileNotFoundError(f"{run}: no restorer checkpoint (last.pt) to take the CFE from")
    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    cfe = {k.removeprefix("cfe."): v for k, v in state.items() if k.startswith("cfe.")}
    if not cfe:
        raise ValueError(f"{path}: this restorer was trained without a CFE")
    return cfe


@register_provider("daclip")
class DACLIPTask(TaskProvider):
    """DA-CLIP (ViT-B/32; its open_clip fork, pip install from the DA-CLIP repository, and its
    checkpoint): `encode_image(x, control=True)` gives the content and degradation embeddings, 512-d
    each. `model` may be a ready object with that method (and its input size as `image_size`)."""

    def __init__(
        self, checkpoint: str | None = None, name: str = "daclip_ViT-B-32", *, model: Any = None, image_size: int = 224,
        mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073),
        std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711),
    ) -> None:
        super().__init__()
        if model is None:
            open_clip = require("open_clip", "daclip task", "task=cfe", "open_clip_torch")
            if name not in open_clip.list_models():
                raise MissingProvider(
                    f"open_clip has no {name!r}: the daclip task provider needs DA-CLIP's fork of open_clip "
                    "(installed from the DA-CLIP repository); without it use the offline default task=cfe"
                )
            if not checkpoint:
                raise FileNotFoundError("the daclip task provider needs its weights: checkpoint=PATH/daclip_ViT-B-32.pt")
            model = open_clip.create_model(name, pretrained=checkpoint)
        _outside_state(self, "model", model.eval())
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.image_size = image_size
        with torch.no_grad():
            content, degradation = self.forward(torch.zeros(1, 3, 32, 32))
        self.content_dim, self.degradation_dim = content.shape[-1], degradation.shape[-1]
        self.freeze()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self.model, nn.Module):
            self.model.to(images.device)
        x = F.interpolate(images, size=(self.image_size,) * 2, mode="bicubic", antialias=True, align_corners=False)
        content, degradation = self.model.encode_image((x - self.mean) / self.std, control=True)
        return F.normalize(content.float(), dim=-1), F.normalize(degradation.float(), dim=-1)
