"""The degradation engine: every type, recipes, replay, determinism, bad input."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

import degradations as D
from degradations.image import linear_to_srgb_uint8, srgb_to_linear

TYPES = D.available()
BUILTIN_TYPES = ["blur", "haze", "jpeg", "low_light", "noise", "rain", "snow"]


@pytest.fixture(scope="module")
def patches() -> list[np.ndarray]:
    """A 256 x 256 centre crop of every builtin photo."""
    out = []
    for image in D.builtin_photos().values():
        h, w = image.shape[:2]
        out.append(np.ascontiguousarray(image[(h - 256) // 2 : (h + 256) // 2, (w - 256) // 2 : (w + 256) // 2]))
    return out


@pytest.fixture(scope="module")
def photo(patches) -> np.ndarray:
    return patches[0]  # astronaut


def test_builtin_types_registered():
    assert set(BUILTIN_TYPES) <= set(TYPES)


@pytest.mark.parametrize("name", BUILTIN_TYPES)
def test_dtype_and_shape_kept(name, photo):
    out, _ = D.degrade(photo[:200, :150], name, 0.6, seed=3)
    assert out.dtype == np.uint8 and out.shape == (200, 150, 3)
    assert not np.array_equal(out, photo[:200, :150])


@pytest.mark.parametrize("name", BUILTIN_TYPES)
def test_severity_zero_is_identity(name, photo):
    out, recipe = D.degrade(photo, name, 0.0, seed=5)
    assert np.array_equal(out, photo)
    assert np.array_equal(D.replay(photo, recipe), photo)


@pytest.mark.parametrize("name", BUILTIN_TYPES)
def test_mean_quality_falls_strictly_with_severity(name, patches):
    means = []
    for s in (0.2, 0.4, 0.6, 0.8, 1.0):
        scores = [D.ssim(p, D.degrade(p, name, s, seed=i)[0]) for i, p in enumerate(patches)]
        means.append(np.mean(scores))
    assert all(a > b for a, b in zip(means, means[1:])), means


@pytest.mark.parametrize("name", BUILTIN_TYPES + ["low_light+rain+haze"])
def test_replay_is_bitwise_and_recipe_round_trips_json(name, photo):
    out, recipe = D.degrade(photo, name, 0.55, seed=123)
    text = json.dumps(recipe.to_dict())
    assert len(text) < 2000  # a few numbers, never pixels
    again = D.replay(photo, D.Recipe.from_dict(json.loads(text)))
    assert np.array_equal(again, out)
    assert D.Recipe.from_dict(json.loads(text)) == recipe


@pytest.mark.parametrize("name", BUILTIN_TYPES)
def test_a_severity_0_recipe_replays_the_clean_image_and_refuses_edited_params(name, photo):
    clean, recipe = D.degrade(photo, name, 0.0, seed=7)
    assert np.array_equal(clean, photo) and np.array_equal(D.replay(photo, recipe), photo)
    edited = recipe.to_dict()
    strong = D.degrade(photo, name, 0.9, seed=7)[1].to_dict()
    edited["params"] = strong["params"]  # a hand edit of the params only
    with pytest.raises(D.UserError, match="severity 0, which is the clean image"):
        D.replay(photo, edited)
    edited["severity"] = None  # as the message says: now they apply
    assert np.array_equal(D.replay(photo, edited), D.replay(photo, strong))


@pytest.mark.parametrize("name", BUILTIN_TYPES)
def test_seed_changes_output(name, photo):
    a, _ = D.degrade(photo, name, 0.5, seed=1)
    b, _ = D.degrade(photo, name, 0.5, seed=2)
    if name == "jpeg":  # no randomness at all
        assert np.array_equal(a, b)
    else:
        assert not np.array_equal(a, b)


_DIGEST_SCRIPT = """
import hashlib, sys
import degradations as D
img = D.builtin_photo("coffee")[:192, :256]
for name in sys.argv[1:]:
    out, _ = D.degrade(img, name, 0.7, seed=11)
    print(name, hashlib.sha256(out.tobytes()).hexdigest())
"""


def test_same_output_in_a_fresh_process():
    names = BUILTIN_TYPES + ["low_light+rain+haze"]
    run = subprocess.run([sys.executable, "-c", _DIGEST_SCRIPT, *names], capture_output=True, text=True, check=True)
    theirs = dict(line.split() for line in run.stdout.splitlines())
    img = D.builtin_photo("coffee")[:192, :256]
    ours = {n: hashlib.sha256(D.degrade(img, n, 0.7, seed=11)[0].tobytes()).hexdigest() for n in names}
    assert theirs == ours


def test_gaussian_sigma_25_protocol():
    grey = np.full((512, 512, 3), 128, np.uint8)
    out, recipe = D.degrade(grey, "noise", params={"sigma": 25}, seed=0)
    residual = out.astype(np.float64) - grey
    assert abs(residual.std() - 25) <= 0.02 * 25
    assert abs(residual.mean()) < 0.2
    assert recipe.params == {"model": "gaussian", "sigma": 25} and recipe.severity is None


def test_explicit_params_take_documented_defaults(photo):
    _, recipe = D.degrade(photo, "haze", params={"beta": 0.1}, seed=0)
    assert recipe.params == {"beta": 0.1, "airlight": [230, 230, 230], "vertical_weight": 0.5}
    _, recipe = D.degrade(photo, "noise", params={"model": "poisson_gaussian", "shot": 0.01}, seed=0)
    assert recipe.params["read"] == 0.0


def test_motion_kernel_reproducible_from_recipe(photo):
    blur = D.get("blur")
    _, recipe = D.degrade(photo, "blur", params={"kind": "motion", "size": 25}, seed=9)
    from degradations.recipe import _streams

    k1 = blur.kernel(blur.resolve(recipe.params), _streams(recipe.seed, 0, "blur")[1])
    k2 = blur.kernel(blur.resolve(recipe.params), _streams(recipe.seed, 0, "blur")[1])
    assert np.array_equal(k1, k2)
    assert k1.sum() == pytest.approx(1.0, abs=1e-5) and max(k1.shape) >= 25


def test_composite_order_is_canonical(photo):
    a, ra = D.degrade(photo, "haze+rain+low_light", 0.5, seed=4)
    b, rb = D.degrade(photo, "low_light+rain+haze", 0.5, seed=4)
    assert ra.type == rb.type == "low_light+rain+haze"
    assert [s.type for s in ra.steps] == ["low_light", "rain", "haze"]
    assert np.array_equal(a, b)
    assert set(ra.to_dict()) == {"type", "severity", "components", "seed", "engine_version"}


def test_composite_explicit_params(photo):
    out, recipe = D.degrade(photo, "noise+jpeg", params={"noise": {"sigma": 15}, "jpeg": {"quality": 30}}, seed=1)
    assert np.array_equal(D.replay(photo, recipe), out)
    with pytest.raises(ValueError, match="keyed by its types"):
        D.degrade(photo, "noise+jpeg", params={"haze": {}})


def test_input_conversions(photo):
    gray = photo[:, :, 0]
    out, _ = D.degrade(gray, "noise", 0.3, seed=0)
    assert out.shape == gray.shape + (3,)
    rgba = np.dstack([photo, np.full(photo.shape[:2], 7, np.uint8)])
    assert np.array_equal(D.degrade(rgba, "haze", 0.3, seed=0)[0], D.degrade(photo, "haze", 0.3, seed=0)[0])
    wide = photo.astype(np.uint16) * 257
    assert np.array_equal(D.as_rgb_uint8(wide), photo)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda img: D.degrade(img.astype(np.float32), "noise", 0.5), "uint8 or uint16"),
        (lambda img: D.degrade(img[:, :, :2], "noise", 0.5), "1, 3 or 4 channels"),
        (lambda img: D.degrade(img[None], "noise", 0.5), "H x W"),
        (lambda img: D.degrade(img, "noise", 1.5), r"severity must be in \[0, 1\]"),
        (lambda img: D.degrade(img, "noise", float("nan")), r"severity must be in \[0, 1\]"),
        (lambda img: D.degrade(img, "fog", 0.5), "unknown degradation type 'fog'; available: blur, haze"),
        (lambda img: D.degrade(img, "noise", params={"sigma": 5, "mu": 1}), r"unknown params for noise: \['mu'\]"),
        (lambda img: D.degrade(img, "rain", params={"density": 0.01}), "need"),
        (lambda img: D.degrade(img, "noise"), "exactly one of severity and params"),
        (lambda img: D.degrade(img, "noise", 0.5, params={"sigma": 1}), "exactly one"),
        (lambda img: D.degrade(img[:20, :20], "blur", 0.5), "at least 64x64"),
        (lambda img: D.degrade(img, "noise", 0.5, seed=-1), "non-negative"),
        (lambda img: D.degrade(img, "jpeg", params={"quality": 0}), "outside"),
        (lambda img: D.degrade(img, "noise+noise", 0.5), "names a type twice"),
    ],
)
def test_bad_input_is_a_clear_value_error(call, message, photo):
    with pytest.raises(ValueError, match=message):
        call(photo)


def test_srgb_linear_round_trip_is_exact():
    levels = np.arange(256, dtype=np.uint8)
    assert np.array_equal(linear_to_srgb_uint8(srgb_to_linear(levels)), levels)


def test_ssim_matches_scikit_image(photo):
    from skimage.metrics import structural_similarity

    out, _ = D.degrade(photo, "rain", 0.5, seed=0)
    ref = structural_similarity(
        photo, out, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert D.ssim(photo, out) == pytest.approx(ref, abs=1e-5)
    assert D.ssim(photo, photo) == pytest.approx(1.0)
    assert D.psnr(photo, photo) == float("inf")


def test_derived_seeds_differ_by_component():
    assert D.derive_seed(0, "key", "mq") == D.derive_seed(0, "key", "mq")
    assert D.derive_seed(0, "key", "mq") != D.derive_seed(0, "key", "lq")
    assert D.rng(1, "a").random() == D.rng(1, "a").random()


def test_convolution_of_a_cropped_kernel_matches_cv2_filter2d():
    """convolve crops a kernel's all-zero rows and columns and moves its anchor: the same result as
    filtering with the whole kernel, for dense kernels and for thin off-centre paths."""
    from degradations.kernels import convolve

    rng = np.random.default_rng(4)
    photo = D.builtin_photo("astronaut")[:64, :64]
    for shape in ((13, 17), (14, 12), (1, 61), (45, 3), (61, 61)):  # asymmetric, even, wider than the image
        for sparse in (False, True):
            kernel = rng.random(shape, dtype=np.float32)
            if sparse:  # a path in one corner of its box, as camera-shake kernels often are
                kernel[: shape[0] // 2 + 1] = 0
                kernel[:, : shape[1] // 3] = 0
                if not kernel.any():
                    kernel[-1, -1] = 1
            kernel /= kernel.sum()
            want = cv2.filter2D(photo, -1, kernel, borderType=cv2.BORDER_REFLECT_101).astype(int)
            assert np.abs(convolve(photo, kernel).astype(int) - want).max() <= 1, (shape, sparse)  # at most a rounding step


def test_params_of_the_wrong_type_are_a_clear_user_error(photo):
    for params in ({"sigma": "25"}, {"sigma": None}, {"sigma": [1, 2]}, {"sigma": True}):
        with pytest.raises(D.UserError, match="must be a number"):
            D.degrade(photo, "noise", params=params)
    out, _ = D.degrade(photo, "noise", params={"sigma": np.float32(5)}, seed=0)
    assert out.shape == photo.shape
