"""Maps in the models: the perceiver's dense head, its training and evaluation, and map-guided restorers."""

from __future__ import annotations

import warnings

import pytest
import torch

import degradations as D
from degradations.torch_engine import tier_index
from helpers import TINY_NAFNET, TINY_PERCEIVER, stage_config
from model import QualityPerceiver, Restorer
from pipeline.eval.shards import _pearson, evaluate_perceiver, split_loader
from pipeline.train import get_stage, train
from pipeline.train.stages.perceiver import patch_tiers


def _dense_perceiver(**kwargs) -> QualityPerceiver:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return QualityPerceiver(**{**TINY_PERCEIVER, "dense_head": True, "dense_block": -3, **kwargs})


def test_the_dense_head_maps_quality_per_pixel_and_keeps_the_global_head():
    torch.manual_seed(0)
    perceiver = _dense_perceiver().eval()
    images = torch.rand(2, 3, 48, 40)
    logits, dense = perceiver.forward_dense(images)
    assert dense.shape == (2, 3, 8, 8)  # block -3 of the tiny ResNet: an 8 x 8 grid at its 64 px input
    assert torch.allclose(logits, perceiver(images), atol=1e-5)  # one pass, the same global logits
    # Untrained, every patch has its image's tier: the local term enters through a gain that starts at 0.
    assert torch.allclose(dense, logits[:, :, None, None].expand_as(dense))
    with torch.no_grad():
        perceiver.dense_gain.fill_(1.0)
    quality = perceiver.quality_map(images)
    assert quality.shape == (2, 48, 40) and quality.min() >= 0 and quality.max() <= 1
    # Each pixel's quality is its patch's expected tier quality: a map that varies within an image.
    assert quality[0].std() > 0


def test_a_dense_perceiver_saves_and_loads(tmp_path):
    perceiver = _dense_perceiver().eval()
    perceiver.save(tmp_path / "p.safetensors")
    again = QualityPerceiver.load(tmp_path / "p.safetensors").eval()
    images = torch.rand(1, 3, 32, 32)
    assert torch.equal(again.quality_map(images), perceiver.quality_map(images))


def test_patch_targets_are_the_tiers_of_each_cells_mean_quality():
    quality = torch.ones(1, 1, 8, 8)
    quality[..., :, :4] = 0.3  # left half lq (SSIM < 0.5)
    quality[..., :4, 4:] = 0.7  # top right mq
    assert patch_tiers(quality, (2, 2)).tolist() == [[[0, 1], [0, 2]]]


def test_the_dense_head_trains_and_validates_on_a_maps_build(maps_build, tmp_path):
    config = stage_config("perceiver", tmp_path / "run", steps=6)
    config["data"].update(source=str(maps_build), maps=True, crop=48, batch_size=6, num_workers=0)
    config["model"].update(dense_head=True, dense_block=-3)
    result = train("perceiver", config)
    metrics = result["validation"] if "validation" in result else result
    flat = {k: v for d in ([metrics] + [v for v in metrics.values() if isinstance(v, dict)]) for k, v in d.items()}
    assert 0 <= flat["dense_pixel_accuracy"] <= 1 and -1 <= flat["dense_quality_corr"] <= 1
    perceiver = get_stage("perceiver").load_trained(tmp_path / "run", torch.device("cpu"))
    assert perceiver.dense is not None


def test_a_dense_head_without_maps_is_refused(maps_build, tmp_path):
    config = stage_config("perceiver", tmp_path / "run", steps=1)
    config["data"].update(source=str(maps_build), crop=48, batch_size=6, num_workers=0)
    config["model"].update(dense_head=True)
    with pytest.raises(D.UserError, match="data.maps=true"):
        train("perceiver", config)


def test_dense_evaluation_scores_a_perfect_map_above_a_flat_one(maps_build):
    """A stand-in whose quality map is the measured one (it reads the build's maps by image) must
    score correlation 1; the flat baseline, one value per image, must score less."""
    loader = split_loader(maps_build, "val", 4, 48, maps=True)
    measured = {}
    for batch in loader:
        for tier in D.TIERS:
            for image, qmap in zip(batch[tier], batch[f"{tier}_qmap"] if tier != "hq" else torch.ones(len(batch[tier]), 1, 48, 48)):
                measured[image.sum().item()] = qmap[0]

    class Oracle(torch.nn.Module):
        dense = True
        tier_quality = torch.tensor([0.0, 0.5, 1.0])

        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def _maps(self, images):
            return torch.stack([measured[i.sum().item()] for i in images])

        def forward(self, images):
            return torch.zeros(len(images), 3)

        def quality_map(self, images, dense_logits=None):
            return self._maps(images)

        def forward_dense(self, images):
            q = self._maps(images)[:, None]
            tiers = tier_index(q, D.DEFAULT_BANDS["ssim"])
            return self(images), torch.nn.functional.one_hot(tiers[:, 0], 3).permute(0, 3, 1, 2).float() * 10

    metrics = evaluate_perceiver(Oracle(), loader)
    assert metrics["dense_quality_corr"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["dense_pixel_accuracy"] > 0.95  # upsampling a full-resolution one-hot changes nothing but float ties
    assert metrics["flat_quality_corr"] < 0.99


def test_pearson():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert _pearson(a, 2 * a + 1) == pytest.approx(1.0)
    assert _pearson(a, -a) == pytest.approx(-1.0)
    assert _pearson(a, torch.ones(4)) == 0.0


def _restorer(**kwargs) -> Restorer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Restorer("nafnet", sgm=False, cfe=False, embed_dim=16, **TINY_NAFNET, **kwargs)


def test_an_oracle_guided_restorer_needs_its_map_and_follows_it():
    torch.manual_seed(0)
    restorer = _restorer(map_guidance="quality").eval()
    lq = torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match="pass quality_map"):
        restorer(lq)
    with torch.no_grad():  # as if trained: the zero-initialised layers (guidance outputs, residual scales) made non-zero
        for parameter in restorer.parameters():
            parameter.normal_(std=0.1)
    left, right = torch.zeros(2, 1, 32, 32), torch.zeros(2, 1, 32, 32)
    left[..., :16], right[..., 16:] = 1, 1
    assert not torch.allclose(restorer(lq, quality_map=left), restorer(lq, quality_map=right))


def test_a_perceiver_guided_restorer_computes_its_own_map_and_does_not_save_the_perceiver(tmp_path):
    perceiver = _dense_perceiver()
    perceiver.save(tmp_path / "p.safetensors")
    restorer = _restorer(map_guidance="perceiver", map_perceiver=str(tmp_path / "p.safetensors")).eval()
    out = restorer(torch.rand(1, 3, 32, 32))
    assert out.shape == (1, 3, 32, 32)
    assert not any("perceiver" in name or "clip" in name for name in restorer.state_dict())
    plain = QualityPerceiver(**{**TINY_PERCEIVER})
    plain.save(tmp_path / "plain.safetensors")
    with pytest.raises(ValueError, match="dense_head=True"):
        _restorer(map_guidance="perceiver", map_perceiver=str(tmp_path / "plain.safetensors"))
