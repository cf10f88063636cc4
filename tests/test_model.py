"""model/: tiny randomly initialised networks on CPU."""
import json

import open_clip
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from model import QualityPerceiver, RandomWeightsWarning, Restorer, backbones
from model.losses import (
    DifficultyAdaptivePerceptualLoss,
    InfoNCE,
    L1Loss,
    LossWeights,
    PaperPerceptualLoss,
    QualityLoss,
    difficulty_weights,
)

pytestmark = pytest.mark.filterwarnings(f"ignore::{RandomWeightsWarning.__module__}.{RandomWeightsWarning.__name__}")

TINY_CLIP = "perceive-ir-test-tiny-clip"
TINY_BACKBONES = {
    "restormer": dict(width=8, blocks=(1, 1, 1, 1), heads=(1, 1, 2, 2), refinement_blocks=1),
    "nafnet": dict(width=8, encoder_blocks=(1, 1, 1), middle_blocks=1, decoder_blocks=(1, 1, 1)),
}
TINY_SEMANTIC = dict(semantic_size=28, semantic_kwargs=dict(depth=3, embed_dim=32, num_heads=2))


@pytest.fixture(scope="module", autouse=True)
def tiny_clip_config(tmp_path_factory):
    folder = tmp_path_factory.mktemp("open_clip_configs")
    config = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"context_length": 20, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    (folder / f"{TINY_CLIP}.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder)


@pytest.fixture(scope="module")
def perceptual_loss():
    return DifficultyAdaptivePerceptualLoss("vgg16")


def images(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def tiny_restorer(backbone, sgm=True, cfe=True):
    return Restorer(backbone, sgm=sgm, cfe=cfe, **TINY_SEMANTIC, **TINY_BACKBONES[backbone])


@pytest.mark.parametrize("sgm,cfe", [(True, True), (True, False), (False, True), (False, False)])
@pytest.mark.parametrize("backbone", backbones.available())
def test_restorer_output_shapes(backbone, sgm, cfe):
    restorer = tiny_restorer(backbone, sgm, cfe)
    lq = images(2, 3, 30, 21)  # not a multiple of the U-Net's factor 8: padded, then cropped back
    restored, aux = restorer(lq, return_aux=True)
    assert restored.shape == lq.shape
    assert restorer(lq).shape == lq.shape
    if cfe:
        assert aux["embedding"].shape == (2, 128)
        torch.testing.assert_close(aux["embedding"].norm(dim=1), torch.ones(2))
    else:
        assert aux["embedding"] is None


def trained_parameters(perceiver):
    logits = perceiver(images(2, 3, 40, 56))
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2])).backward()
    return {name for name, p in perceiver.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_prompt_only_mode_trains_only_the_prompts():
    assert trained_parameters(QualityPerceiver(TINY_CLIP)) == {"ctx"}


def test_train_visual_also_trains_the_image_tower():
    perceiver = QualityPerceiver(TINY_CLIP, train_visual=True)
    visual = {f"clip.visual.{name}" for name, _ in perceiver.clip.visual.named_parameters()}
    assert trained_parameters(perceiver) == {"ctx"} | visual


@pytest.mark.parametrize("train_visual", [False, True])
@pytest.mark.parametrize("from_file", [False, True])
def test_perceiver_save_and_load_give_identical_outputs(tmp_path, from_file, train_visual):
    pretrained = None
    if from_file:
        pretrained = tmp_path / "clip.safetensors"
        save_file(open_clip.create_model(TINY_CLIP).state_dict(), str(pretrained))
    perceiver = QualityPerceiver(TINY_CLIP, pretrained=pretrained, train_visual=train_visual)
    with torch.no_grad():  # stand-in for training: the learned tensors leave their initial values
        for p in perceiver.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    perceiver.save(tmp_path / "perceiver.safetensors")
    loaded = QualityPerceiver.load(tmp_path / "perceiver.safetensors")

    x = images(3, 3, 48, 40)
    torch.testing.assert_close(loaded(x), perceiver(x), rtol=0, atol=0)
    with safe_open(str(tmp_path / "perceiver.safetensors"), framework="pt") as file:
        saved = set(file.keys())
    if from_file:  # only what was learned; a random CLIP is saved whole, nothing could rebuild it
        learned = {name for name, p in perceiver.named_parameters() if p.requires_grad}
        assert saved == learned
    else:
        assert saved == set(perceiver.state_dict())


def test_perceptual_loss_is_zero_at_clean_and_grows_toward_lq(perceptual_loss):
    clean = images(2, 3, 32, 32, seed=1)
    noise = images(2, 3, 32, 32, seed=2) - 0.5
    lq, mq = (clean + 0.6 * noise).clamp(0, 1), (clean + 0.2 * noise).clamp(0, 1)
    losses = [perceptual_loss(clean + t * (lq - clean), clean, lq, [mq]).item() for t in (0, 0.25, 0.5, 0.75)]
    assert losses[0] == 0
    assert all(a < b for a, b in zip(losses, losses[1:])), losses


def test_infonce_is_lower_for_matching_pairs_than_for_shuffled_ones():
    anchors = torch.randn(8, 128, generator=torch.Generator().manual_seed(3))
    positives = anchors + 0.3 * torch.randn(8, 128, generator=torch.Generator().manual_seed(4))
    loss = InfoNCE()
    assert loss(anchors, positives) < loss(anchors, positives.roll(1, dims=0))
    # distinct groups mask nothing; one shared group leaves each anchor only its positive
    torch.testing.assert_close(loss(anchors, positives, groups=torch.arange(8)), loss(anchors, positives))
    assert loss(anchors, positives, groups=torch.zeros(8, dtype=torch.long)) == 0


def test_every_loss_backpropagates(perceptual_loss):
    restorer = tiny_restorer("nafnet")
    quality_loss = QualityLoss(QualityPerceiver(TINY_CLIP))
    clean = images(2, 3, 32, 32, seed=5)
    lq = (clean + 0.3 * (images(2, 3, 32, 32, seed=6) - 0.5)).clamp(0, 1)
    restored, aux = restorer(lq, return_aux=True, positive=lq[..., 4:28, 4:28])
    terms = {
        "reconstruction": L1Loss()(restored, clean),
        "quality": quality_loss(restored),
        "perceptual": perceptual_loss(restored, clean, lq, [(clean + lq) / 2]),
        "contrastive": InfoNCE()(aux["embedding"], aux["positive_embedding"]),
    }
    trainable = [p for p in restorer.parameters() if p.requires_grad]
    for name, term in terms.items():
        grads = torch.autograd.grad(term, trainable, retain_graph=True, allow_unused=True)
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name
    LossWeights().total(terms).backward()
    assert not any(p.grad is not None for p in quality_loss.perceiver.parameters())
    assert all(torch.isfinite(p.grad).all() for p in trainable if p.grad is not None)


@pytest.mark.parametrize("backbone", backbones.available())
def test_untrained_restorer_returns_its_input(backbone):
    """Residual output and guidance heads start at zero: training starts from the identity."""
    lq = images(2, 3, 24, 24, seed=3)
    torch.testing.assert_close(tiny_restorer(backbone)(lq), lq)


def test_psnr_loss_is_minus_the_mean_per_image_psnr():
    from model.losses import PSNRLoss

    target = torch.zeros(2, 3, 4, 4)
    restored = torch.stack([torch.full((3, 4, 4), 0.1), torch.full((3, 4, 4), 0.01)])
    # Per image: PSNR 20 dB and 40 dB (peak 1); the loss is minus their mean, not of the pooled MSE.
    assert float(PSNRLoss()(restored, target)) == pytest.approx(-30.0, abs=1e-3)


def test_psnr_loss_ceiling_bounds_a_near_clean_image():
    from model.losses import PSNRLoss

    target = torch.zeros(1, 3, 8, 8)
    near_clean = torch.full((1, 3, 8, 8), 1e-3, requires_grad=True)  # 60 dB
    # Below the ceiling the image reads about the ceiling (30 dB: 10 log10(1e-6 + 1e-3) = -29.996).
    assert float(PSNRLoss(30.0)(near_clean, target)) == pytest.approx(-29.996, abs=1e-3)
    assert float(PSNRLoss()(near_clean, target)) == pytest.approx(-59.957, abs=1e-3)  # 80 dB: 1e-8
    # Its gradient scales with 1 / (MSE + floor): (1e-6 + 1e-3) / (1e-6 + 1e-8) = 991x smaller at 30 dB.
    bounded = torch.autograd.grad(PSNRLoss(30.0)(near_clean, target), near_clean)[0].abs().max()
    unbounded = torch.autograd.grad(PSNRLoss()(near_clean, target), near_clean)[0].abs().max()
    assert float(unbounded / bounded) == pytest.approx(991.1, rel=1e-3)
    with pytest.raises(ValueError, match="ceiling_db"):
        PSNRLoss(0.0)


class Powers(torch.nn.Module):
    """Two known "layers", x and x**2, so every feature distance of constant images is a hand sum."""

    def forward(self, x):
        return [x, x**2]


def constant(value, batch=2):
    return torch.full((batch, 3, 4, 4), value)


def test_paper_perceptual_loss_matches_a_hand_computation():
    loss = PaperPerceptualLoss(features=Powers(), layer_weights=(0.5, 1.0))
    restored, clean, lq, proxy = constant(0.5), constant(0.4), constant(0.9), constant(0.7)
    proxy_weights = torch.tensor([[1.25], [0.0]])  # the second sample's task has no proxy: masked
    # layer x:    d(r, clean) = 0.1,  d(r, lq) = 0.4,  d(r, proxy) = 0.2
    # layer x**2: d(r, clean) = |0.25 - 0.16| = 0.09,  d(r, lq) = |0.25 - 0.81| = 0.56,  d(r, proxy) = |0.25 - 0.49| = 0.24
    first = 0.5 * 0.1 / (2 * 0.4 + 1.25 * 0.2) + 1.0 * 0.09 / (2 * 0.56 + 1.25 * 0.24)
    second = 0.5 * 0.1 / (2 * 0.4) + 1.0 * 0.09 / (2 * 0.56)
    value = loss(restored, clean, lq, [proxy], proxy_weights)
    assert float(value) == pytest.approx((first + second) / 2, rel=1e-5)
    # no proxy_weights: every proxy weighs 1 for every sample
    unweighted = 0.5 * 0.1 / (2 * 0.4 + 0.2) + 1.0 * 0.09 / (2 * 0.56 + 0.24)
    assert float(loss(restored, clean, lq, [proxy])) == pytest.approx(unweighted, rel=1e-5)


def test_paper_perceptual_loss_floors_a_zero_denominator():
    loss = PaperPerceptualLoss(features=Powers(), layer_weights=(1.0, 0.0), floor=1e-6)
    restored = constant(0.5)
    value = loss(restored, constant(0.4), lq=restored.clone())  # d(r, lq) = 0 and no proxies
    assert torch.isfinite(value)
    assert float(value) == pytest.approx(0.1 / 1e-6, rel=1e-5)


def test_difficulty_weights_follow_the_probe_threshold():
    proxy_psnr = torch.tensor([20.0, 25.0, 30.0])
    assert difficulty_weights(proxy_psnr, 25.0).tolist() == [1.25, 1.25, 0.75]
    assert difficulty_weights(proxy_psnr, torch.tensor(31.0)).tolist() == [1.25, 1.25, 1.25]


def test_paper_perceptual_loss_on_a_random_vgg16():
    loss = PaperPerceptualLoss()
    loss.train()
    assert not loss.training and not loss.features.training
    assert len(loss.features.layers) == 16  # run up to index 15 only
    clean = images(2, 3, 32, 32, seed=7)
    lq = (clean + 0.3 * (images(2, 3, 32, 32, seed=8) - 0.5)).clamp(0, 1)
    features = loss.features(clean)
    assert [f.shape[1] for f in features] == [64, 128, 256, 256]
    assert features[1].min() >= 0  # index 7 (conv2_2) is rectified in place by the ReLU at index 8
    assert loss(clean, clean, lq, [(clean + lq) / 2]) == 0
    restored = ((clean + lq) / 2).requires_grad_(True)
    loss(restored, clean, lq, [(clean + 3 * lq) / 4], torch.tensor([[1.25], [0.75]])).backward()
    assert restored.grad is not None and restored.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in loss.parameters())


def test_quality_loss_without_logit_scale_softmaxes_the_raw_similarities():
    perceiver = QualityPerceiver(TINY_CLIP)
    x = images(2, 3, 32, 32, seed=9)
    unscaled = QualityLoss(perceiver, logit_scale=False)(x)
    expected = 1 - perceiver.similarities(x).softmax(dim=-1)[:, 2].mean()
    torch.testing.assert_close(unscaled, expected)
    assert not torch.isclose(unscaled, QualityLoss(perceiver)(x))
    torch.testing.assert_close(perceiver(x), perceiver.clip.logit_scale.exp() * perceiver.similarities(x))
