"""The batched torch engine: the NumPy engine's recipes and kernels, its statistics, determinism, bad input."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch

import degradations as D

TYPES = ["blur", "haze", "jpeg", "low_light", "noise", "rain", "snow"]


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    """128 x 128 crops of the builtin photos, each six times (a batch of 42): the photo set."""
    crops = [np.ascontiguousarray(p[:128, :128]) for p in D.builtin_photos().values()]
    return crops * 6


def _batch(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def _hwc(image: torch.Tensor) -> np.ndarray:
    return image.permute(1, 2, 0).numpy()


@pytest.mark.parametrize("name", TYPES)
def test_recipes_are_the_numpy_engines_and_psnr_matches_within_0_2_db(photos, name):
    seeds = list(range(11, 11 + len(photos)))
    batch = _batch(photos)
    for severity in (0.3, 0.7):
        out, recipes = D.degrade_batch(batch, name, severity, seeds)
        assert out.dtype == torch.uint8 and out.shape == batch.shape
        ours, theirs = [], []
        for photo, image, recipe, seed in zip(photos, out, recipes, seeds):
            reference, reference_recipe = D.degrade(photo, name, severity, seed=seed)
            assert recipe.to_dict() == reference_recipe.to_dict()
            ours.append(D.psnr(photo, _hwc(image)))
            theirs.append(D.psnr(photo, reference))
        assert abs(np.mean(ours) - np.mean(theirs)) < 0.2, (severity, np.mean(ours), np.mean(theirs))


@pytest.mark.parametrize("name", ["blur", "haze"])
def test_deterministic_types_give_the_numpy_engines_pixels_to_a_level(photos, name):
    """Blur (its kernels are the NumPy engine's, drawn on the CPU) and haze have no pixel randomness:
    the two engines differ only by float rounding."""
    seeds = list(range(7))
    out, _ = D.degrade_batch(_batch(photos[:7]), name, 0.8, seeds)
    for photo, image, seed in zip(photos, out, seeds):
        reference, _ = D.degrade(photo, name, 0.8, seed=seed)
        assert np.abs(_hwc(image).astype(np.int16) - reference).max() <= 2


def test_noise_standard_deviation_within_one_percent():
    grey = np.full((128, 128, 3), 128, np.uint8)
    seeds = [s for s in range(200) if D.degrade(grey, "noise", 0.5, seed=s)[1].params["model"] == "gaussian"][:24]
    out, recipes = D.degrade_batch(_batch([grey] * len(seeds)), "noise", 0.5, seeds)
    ours = (out.float() - 128).std().item()
    theirs = np.std(np.stack([D.degrade(grey, "noise", 0.5, seed=s)[0].astype(np.float32) - 128 for s in seeds]))
    assert ours == pytest.approx(theirs, rel=0.01)
    assert ours == pytest.approx(recipes[0].params["sigma"], rel=0.01)


def test_float_batches_come_back_float_and_match_uint8(photos):
    batch = _batch(photos[:4])
    as_float, _ = D.degrade_batch(batch.float() / 255, "haze", 0.6, [1, 2, 3, 4])
    as_uint8, _ = D.degrade_batch(batch, "haze", 0.6, [1, 2, 3, 4])
    assert as_float.dtype == torch.float32 and 0 <= as_float.min() and as_float.max() <= 1
    assert (as_float * 255 - as_uint8.float()).abs().max() <= 0.51


def test_a_sample_does_not_depend_on_its_batch(photos):
    alone, _ = D.degrade_batch(_batch(photos[:1]), "rain", 0.6, [5])
    together, _ = D.degrade_batch(_batch(photos[:3]), "rain", [0.6, 0.2, 0.9], [5, 6, 7])
    assert torch.equal(alone[0], together[0])


def test_severity_zero_is_the_clean_image(photos):
    out, _ = D.degrade_batch(_batch(photos[:2]), "noise", [0.0, 0.5], [1, 2])
    assert torch.equal(out[0], _batch(photos[:1])[0]) and not torch.equal(out[1], _batch(photos[1:2])[0])


_DIGEST = """
import hashlib, numpy as np, torch
import degradations as D
images = torch.from_numpy(np.stack([np.ascontiguousarray(p[:96, :96]) for p in D.builtin_photos().values()])).permute(0, 3, 1, 2)
for name in ("noise", "rain", "snow", "low_light", "blur+noise"):
    out, _ = D.degrade_batch(images, name, 0.7, list(range(len(images))))
    print(name, hashlib.sha256(out.numpy().tobytes()).hexdigest())
"""


def test_the_same_batch_in_a_fresh_process():
    run = subprocess.run([sys.executable, "-c", _DIGEST], capture_output=True, text=True, check=True)
    theirs = dict(line.split() for line in run.stdout.splitlines())
    images = torch.from_numpy(np.stack([np.ascontiguousarray(p[:96, :96]) for p in D.builtin_photos().values()])).permute(0, 3, 1, 2)
    ours = {n: hashlib.sha256(D.degrade_batch(images, n, 0.7, list(range(len(images))))[0].numpy().tobytes()).hexdigest()
            for n in theirs}
    assert ours == theirs


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda b: D.degrade_batch(b[0], "noise", 0.5, [1]), "B x 3 x H x W"),
        (lambda b: D.degrade_batch(b, "noise", 0.5, [1]), "one severity and one seed per image"),
        (lambda b: D.degrade_batch(b, "noise", 1.5, [1, 2]), r"in \[0, 1\]"),
        (lambda b: D.degrade_batch(b.int(), "noise", 0.5, [1, 2]), "uint8 or float"),
        (lambda b: D.degrade_batch(b[..., :8, :8], "haze", 0.5, [1, 2]), "at least 16 px"),
    ],
)
def test_bad_input_is_refused_with_a_reason(photos, call, message):
    with pytest.raises(D.UserError, match=message):
        call(_batch(photos[:2]))


def test_plugin_types_are_named_as_numpy_only(photos, monkeypatch):
    from degradations import Degradation, registry

    class Sepia(Degradation):
        name = "sepia"

        def params(self, rng, severity):
            return {}

        def apply(self, image, params, rng):
            return image

    monkeypatch.setitem(registry._REGISTRY, "sepia", Sepia)  # registered for this test only
    with pytest.raises(D.UserError, match="NumPy engine"):
        D.degrade_batch(_batch(photos[:1]), "sepia", 0.5, [1])


def test_batch_score_is_the_engines_ssim_and_psnr(photos):
    from degradations.torch_engine import batch_score

    clean = photos[:4]
    degraded = [D.degrade(p, "noise", 0.4, seed=i)[0] for i, p in enumerate(clean)]
    x, y = (_batch(images).float() / 255 for images in (clean, degraded))
    ssim = batch_score("ssim", x, y)
    psnr = batch_score("psnr", x, y)
    for n in range(4):
        assert float(ssim[n]) == pytest.approx(D.ssim(clean[n], degraded[n]), abs=1e-4)
        assert float(psnr[n]) == pytest.approx(D.psnr(clean[n], degraded[n]), abs=1e-3)


def test_synth_on_the_device_degrades_after_collation_as_the_workers_would(small_build):
    from pipeline.data.loader import make_loader

    kwargs = dict(split="train", mode="synth", batch_size=6, crop=64, num_workers=0, seed=4)
    on_device = make_loader(small_build, synth_device=True, **kwargs)
    in_workers = make_loader(small_build, **kwargs)
    raw = next(iter(on_device))
    assert "lq" not in raw and raw["synth_seed"].dtype == torch.int64
    batch = on_device.finish(raw, torch.device("cpu"))
    reference = next(iter(in_workers))
    assert batch["key"] == reference["key"] and torch.equal(batch["severity"], reference["severity"])  # the same draws
    for n, name in enumerate(batch["type"]):
        again, _ = D.degrade_batch(batch["hq"][n : n + 1], name, float(batch["severity"][n]), [int(raw["synth_seed"][n])])
        assert torch.equal(batch["lq"][n], again[0])  # a sample's synthesis does not depend on its batch
        bands = D.default_calibration().bands_for(name)
        assert int(batch["tier"][n]) == D.TIERS.index(D.tier_of(float(batch["score"][n]), "ssim", bands))
    twice = on_device.finish(next(iter(make_loader(small_build, synth_device=True, **kwargs))), torch.device("cpu"))
    assert torch.equal(twice["lq"], batch["lq"])  # the same batch for a seed and device
    with pytest.raises(D.UserError, match="synth mode"):
        make_loader(small_build, split="train", mode="pairs", batch_size=2, crop=32, num_workers=0, synth_device=True)


def test_the_numpy_engine_does_not_import_torch():
    code = "import sys, degradations as D; D.degrade(D.builtin_photo('coffee')[:64, :64], 'rain', 0.5); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
