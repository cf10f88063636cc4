"""CLIP quality perceiver: a frozen open_clip model read through learned, CoOp-style tier prompts."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .weights import RandomWeightsWarning, warn_random_weights

TIERS = ("lq", "mq", "hq")
"""Quality tiers in logit order: index 0 is low, 1 medium, 2 high quality."""
TIER_WORDS = ("terrible", "mediocre", "excellent")
"""The word whose embedding initialises the last context token of each tier's prompt."""
TIER_QUALITY = (0.0, 0.5, 1.0)
"""The quality each tier stands for; `score` is their expectation under the predicted tier probabilities."""
_PLACEHOLDER = "X"

# Our own open_clip configs (e.g. "perceive-ir-tiny", a few-MB CLIP for CPU demos and tests)
# become available by name like open_clip's.
open_clip.add_model_config(Path(__file__).with_name("clip_configs"))


class QualityPerceiver(nn.Module):
    """Three-way quality classifier (lq, mq, hq) on top of a frozen open_clip model.

    Each tier has its own `n_ctx` learned context vectors (class-specific CoOp context); the
    last one starts from the word embedding of terrible / mediocre / excellent, the others
    from N(0, 0.02). The prompt `[SOT] ctx_1 .. ctx_n . [EOT]` runs through CLIP's own
    frozen text transformer; the logits are CLIP's scaled cosine similarities between the
    image and the three prompt embeddings.

    Args:
        clip_model: any open_clip model name ("ViT-B-32", "hf-hub:...", "local-dir:...") whose
            text tower is CLIP's own transformer with a BPE tokenizer.
        pretrained: an open_clip pretrained tag ("openai", "laion2b_s34b_b79k", ...) or a local
            weights file; None builds a randomly initialised CLIP (and warns).
        n_ctx: learned context tokens per tier.
        train_visual: also train the image tower (for use without pretrained weights).
        dense_head: also predict per-patch tier logits (`dense_logits`, `quality_map`): the image
            tower's spatial features (ViT patch tokens or a ResNet feature map), layer-normed and
            projected by a learned 1x1 convolution into CLIP's embedding space, compared with the same
            three tier prompts, and added, through a learned gain that starts at 0, to the image's
            global logits: a patch starts from its image's tier and learns how it differs. The global
            head is unchanged.
        dense_block: which of the tower's blocks the dense head reads (-1: the last; on a ResNet an
            earlier block gives a finer grid: -2 halves the stride).
    """

    def __init__(
        self,
        clip_model: str = "ViT-B-32",
        pretrained: str | Path | None = None,
        n_ctx: int = 16,
        train_visual: bool = False,
        dense_head: bool = False,
        dense_block: int = -1,
    ) -> None:
        super().__init__()
        pretrained = str(pretrained) if pretrained else None
        self.config = dict(clip_model=clip_model, pretrained=pretrained, n_ctx=n_ctx, train_visual=train_visual)
        if dense_head:  # recorded only when on: files saved before the dense head existed keep loading
            self.config.update(dense_head=True, dense_block=dense_block)
        if pretrained is None:
            warn_random_weights(f"open_clip model {clip_model!r}", "pass pretrained=<tag or local file>")
        self.clip = open_clip.create_model(clip_model, pretrained=pretrained)
        self.clip.requires_grad_(False)
        self.clip.visual.requires_grad_(train_visual)
        self.train_visual = train_visual

        tower = self._text_tower
        if not hasattr(tower, "token_embedding") or getattr(tower, "cls_emb", None) is not None:
            raise ValueError(f"{clip_model!r}: learned prompts need CLIP's own text transformer without a CLS token")
        tokenizer = open_clip.get_tokenizer(clip_model)
        if not hasattr(tokenizer, "encode"):
            raise ValueError(f"{clip_model!r}: learned prompts need open_clip's BPE tokenizer")
        prompt_ids = tokenizer([" ".join([_PLACEHOLDER] * n_ctx) + "."])
        self.ctx_start = _placeholder_start(prompt_ids[0], tokenizer.encode(_PLACEHOLDER), n_ctx)
        self.pooled_position = _pooled_position(prompt_ids[0], tower)
        self.register_buffer("prompt_ids", prompt_ids, persistent=False)
        self.ctx = nn.Parameter(_initial_context(tower.token_embedding, tokenizer, n_ctx))

        preprocess = self.clip.visual.preprocess_cfg
        size = preprocess["size"]
        self.image_size = (size, size) if isinstance(size, int) else tuple(size)
        self.register_buffer("mean", torch.tensor(preprocess["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(preprocess["std"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("tier_quality", torch.tensor(TIER_QUALITY), persistent=False)
        self.dense_block = dense_block
        self.dense = None
        if dense_head:
            with torch.no_grad():  # the widths of this tower's block and of CLIP's joint embedding
                pooled, spatial = self._spatial(torch.zeros(1, 3, *self.image_size))
            self.dense = nn.Sequential(nn.GroupNorm(1, spatial.shape[1]), nn.Conv2d(spatial.shape[1], pooled.shape[1], 1))
            self.dense_gain = nn.Parameter(torch.zeros(()))
        self.train()

    @property
    def _text_tower(self) -> nn.Module:
        """The module holding the text transformer: the CLIP itself, or its `.text` in custom-text models."""
        return getattr(self.clip, "text", self.clip)

    def train(self, mode: bool = True) -> QualityPerceiver:
        """Frozen parts stay in eval mode; the image tower follows `mode` only when it trains."""
        super().train(mode)
        self.clip.eval()
        self.clip.visual.train(mode and self.train_visual)
        return self

    def prompt_features(self) -> torch.Tensor:
        """L2-normalised text embeddings of the three tier prompts, shape (3, embed_dim)."""
        tower = self._text_tower
        n_ctx = self.ctx.shape[1]
        words = tower.token_embedding(self.prompt_ids).expand(len(TIERS), -1, -1)
        x = torch.cat([words[:, : self.ctx_start], self.ctx, words[:, self.ctx_start + n_ctx :]], dim=1)
        x = x + tower.positional_embedding
        x = tower.transformer(x, attn_mask=tower.attn_mask)
        x = tower.ln_final(x)[:, self.pooled_position]
        projection = tower.text_projection
        if isinstance(projection, nn.Linear):
            x = projection(x)
        elif projection is not None:
            x = x @ projection
        return F.normalize(x, dim=-1)

    def similarities(self, images: torch.Tensor) -> torch.Tensor:
        """Cosine similarities between each image and the (lq, mq, hq) prompts, shape (B, 3), in [-1, 1].

        Images are float RGB in [0, 1] of any size (B, 3, H, W), resized whole (not cropped) to the
        CLIP input size, so every region counts. Unscaled, for losses that softmax them as they are.
        """
        return self.encode_image(images) @ self.prompt_features().T

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised CLIP image embeddings (B, embed_dim) of images in [0, 1], resized whole."""
        x = F.interpolate(images, size=self.image_size, mode="bicubic", antialias=True, align_corners=False)
        return self.clip.encode_image((x - self.mean) / self.std, normalize=True)

    def forward(self, images: torch.Tensor, dense: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits over (lq, mq, hq), shape (B, 3): the similarities times CLIP's learned logit scale.
        With `dense`, (those logits, per-patch logits (B, 3, h, w)): `forward_dense` through the
        module's own call, as DDP needs."""
        if dense:
            return self.forward_dense(images)
        return self.clip.logit_scale.exp() * self.similarities(images)

    def _spatial(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled image features (B, embed_dim), the spatial features of block `dense_block`
        (B, C, h, w)) of images already resized to the input size, in one pass through the tower."""
        x = (images - self.mean) / self.std
        out = self.clip.visual.forward_intermediates(x, indices=[self.dense_block] if self.dense_block >= 0 else -self.dense_block)
        return out["image_features"], out["image_intermediates"][0]

    def forward_dense(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(global logits (B, 3), per-patch tier logits (B, 3, h, w)) in one pass through the image tower."""
        if self.dense is None:
            raise RuntimeError("this QualityPerceiver was built without dense_head=True")
        x = F.interpolate(images, size=self.image_size, mode="bicubic", antialias=True, align_corners=False)
        pooled, spatial = self._spatial(x)
        prompts = self.prompt_features()
        scale = self.clip.logit_scale.exp()
        patches = F.normalize(self.dense(spatial), dim=1)
        logits = scale * F.normalize(pooled, dim=-1) @ prompts.T
        local = scale * torch.einsum("bchw,kc->bkhw", patches, prompts)
        return logits, logits[:, :, None, None] + self.dense_gain * local

    def dense_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Per-patch tier logits (B, 3, h, w) on the image tower's grid."""
        return self.forward_dense(images)[1]

    def quality_map(self, images: torch.Tensor, dense_logits: torch.Tensor | None = None) -> torch.Tensor:
        """The predicted quality map (B, H, W) in [0, 1] of images (B, 3, H, W): per patch, the tier
        probabilities weighted by 0, 0.5, 1, upsampled bilinearly to the images' size. `dense_logits`:
        the images' per-patch logits when a caller has them already (no second pass)."""
        dense_logits = self.dense_logits(images) if dense_logits is None else dense_logits
        expected = torch.einsum("bkhw,k->bhw", dense_logits.softmax(dim=1), self.tier_quality)
        return F.interpolate(expected[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]

    def score(self, images: torch.Tensor) -> torch.Tensor:
        """Expected quality in [0, 1] per image, shape (B,): tier probabilities weighted by 0, 0.5, 1."""
        return self(images).softmax(dim=-1) @ self.tier_quality

    def _learned_state(self) -> dict[str, torch.Tensor]:
        """What `save` writes: the prompts, the image tower when it trains, and all of a randomly
        initialised CLIP (no tag or file could re-create those random weights)."""
        state = self.state_dict()
        if self.config["pretrained"] is None:
            return state
        prefixes = ("ctx", "dense", "clip.visual.") if self.train_visual else ("ctx", "dense")
        return {name: tensor for name, tensor in state.items() if name.startswith(prefixes)}

    def save(self, path: str | Path) -> None:
        """Write the learned tensors to a safetensors file with the constructor config as JSON metadata."""
        tensors = {name: tensor.detach().contiguous() for name, tensor in self._learned_state().items()}
        save_file(tensors, str(path), metadata={"config": json.dumps(self.config)})

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> QualityPerceiver:
        """Rebuild a perceiver written by `save`; its outputs equal the saved one's."""
        with safe_open(str(path), framework="pt", device=str(device)) as file:
            config = json.loads(file.metadata()["config"])
            tensors = {name: file.get_tensor(name) for name in file.keys()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RandomWeightsWarning)  # the random weights are in the file
            perceiver = cls(**config).to(device)
        expected = set(perceiver._learned_state())
        if set(tensors) != expected:
            raise ValueError(f"{path}: tensors {sorted(set(tensors) ^ expected)} do not match the config {config}")
        perceiver.load_state_dict(tensors, strict=False)
        return perceiver


def _placeholder_start(prompt_ids: torch.Tensor, placeholder_ids: list[int], n_ctx: int) -> int:
    """Position of the first of the `n_ctx` placeholder tokens that the learned context replaces."""
    (placeholder,) = placeholder_ids
    positions = (prompt_ids == placeholder).nonzero().flatten().tolist()
    if len(positions) != n_ctx or positions != list(range(positions[0], positions[0] + n_ctx)):
        raise ValueError(f"could not place {n_ctx} context tokens in a prompt of {len(prompt_ids)} tokens")
    return positions[0]


def _pooled_position(prompt_ids: torch.Tensor, tower: nn.Module) -> int:
    """The token position whose output CLIP's text tower projects (the end-of-text token for CLIP)."""
    pool_type = tower.text_pool_type if hasattr(tower, "text_pool_type") else tower.pool_type
    if pool_type == "argmax":
        return int(prompt_ids.argmax())
    if pool_type == "eos":
        eos_id = tower.text_eos_id if hasattr(tower, "text_eos_id") else tower.eos_id
        return int((prompt_ids == eos_id).nonzero()[0])
    if pool_type in ("first", "last"):
        return 0 if pool_type == "first" else len(prompt_ids) - 1
    raise ValueError(f"text pooling {pool_type!r} is not supported by learned prompts")


def _initial_context(token_embedding: nn.Embedding, tokenizer, n_ctx: int) -> torch.Tensor:
    """(3, n_ctx, width): N(0, 0.02) context whose last token is the mean embedding of each tier word's BPE tokens."""
    weight = token_embedding.weight.detach()
    context = torch.empty(len(TIERS), n_ctx, weight.shape[1], dtype=weight.dtype).normal_(std=0.02)
    for tier, word in enumerate(TIER_WORDS):
        context[tier, -1] = weight[tokenizer.encode(word)].mean(dim=0)
    return context
