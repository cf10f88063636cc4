"""Real benchmarks: evaluation protocols, the papers' noise protocol, benchmark layouts, folder checks
and the classical reference methods. Tests on the real sets read ../shared/benchmarks and skip,
with a message, where it is absent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import degradations as D
from pipeline.cli import main
from pipeline.eval.all_in_one import CLASSICAL, IDENTITY, evaluate_methods
from pipeline.eval.benchmarks import BENCHMARKS, benchmark_noise, benchmark_tasks, find_benchmark, noise_seed, pair_spec
from pipeline.eval.check import check_benchmark
from pipeline.eval.classical import CLASSICAL as CLASSICAL_METHODS
from pipeline.eval.classical import noise_level
from pipeline.eval.protocols import PROTOCOLS, bt601_luma, get_protocol

SHARED = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"the real benchmark sets are not at {SHARED} (a fresh clone)")

# The inputs' figures the shared README gives, measured with the papers' conventions:
# (set, registry name): {protocol: (PSNR, SSIM)}.
SHARED_INPUTS = {
    ("Rain100L", "rain100l"): {"rgb": (25.52, 0.8140), "y": (26.90, 0.8384)},
    ("LOL_eval15", "lol"): {"rgb": (7.77, 0.1914), "y": (9.28, 0.3960)},
    ("SOTS_outdoor_subset5", "sots"): {"rgb": (16.92, 0.8458), "y": (18.52, 0.8967)},
    ("RESIDE_HSTS", "hsts"): {"rgb": (14.89, 0.7866), "y": (16.40, 0.8514)},
}
CBSD68_INPUTS = {15: (24.83, 0.5918), 25: (20.54, 0.4176), 50: (15.00, 0.2190)}  # clipped, truncated to uint8


def write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.ascontiguousarray(image[:, :, ::-1]))
    return path


# ---- protocols


def _matlab_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM as MATLAB and BasicSR compute it: 11x11 Gaussian (sigma 1.5), the 'valid' region, float64."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    k = cv2.getGaussianKernel(11, 1.5)
    w = k @ k.T
    f = lambda x: cv2.filter2D(x, -1, w)[5:-5, 5:-5]
    mu_a, mu_b = f(a), f(b)
    var_a, var_b, cov = f(a * a) - mu_a**2, f(b * b) - mu_b**2, f(a * b) - mu_a * mu_b
    return float(np.mean(((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))))


def test_y_protocol_is_the_matlab_convention(photo_crops):
    from skimage.color import rgb2ycbcr

    clean = D.builtin_photo("astronaut")[:128, :160]
    rainy, _ = D.degrade(clean, "rain", 0.5, seed=1)
    assert np.allclose(bt601_luma(clean), rgb2ycbcr(clean)[..., 0], atol=1e-9)
    y = PROTOCOLS["y"]
    assert y.ssim(clean, rainy) == pytest.approx(_matlab_ssim(bt601_luma(clean), bt601_luma(rainy)), abs=1e-6)
    mse = np.mean((bt601_luma(clean) - bt601_luma(rainy)) ** 2)
    assert y.psnr(clean, rainy) == pytest.approx(10 * np.log10(255**2 / mse))


def test_rgb_protocol_is_scikit_image_default_not_the_tiers_gaussian_ssim():
    from skimage.metrics import structural_similarity

    clean = D.builtin_photo("coffee")[:96, :128]
    noisy, _ = D.degrade(clean, "noise", 0.6, seed=0)
    rgb = PROTOCOLS["rgb"]
    assert rgb.ssim(clean, noisy) == pytest.approx(structural_similarity(clean, noisy, channel_axis=-1, data_range=255, win_size=7))
    assert abs(rgb.ssim(clean, noisy) - D.ssim(clean, noisy)) > 1e-3  # the tiers' SSIM is another number
    assert rgb.psnr(clean, clean) == 100.0
    with pytest.raises(D.UserError, match="unknown evaluation protocol"):
        get_protocol("matlab")
    with pytest.raises(D.UserError, match="cannot score"):
        rgb.psnr(clean, noisy[:10])


# ---- the noise protocol


def test_benchmark_noise_is_clipped_truncated_and_seeded_by_name():
    clean = D.builtin_photo("astronaut")[:64, :64]
    noisy = benchmark_noise(clean, 25, noise_seed("a.png", 25))
    expected = np.clip(clean + np.random.default_rng(noise_seed("a.png", 25)).standard_normal(clean.shape) * 25, 0, 255)
    assert noisy.dtype == np.uint8 and np.array_equal(noisy, expected.astype(np.uint8))  # truncated, not rounded
    assert not np.array_equal(noisy, benchmark_noise(clean, 25, noise_seed("b.png", 25)))
    code = ("import degradations as D, hashlib; from pipeline.eval.benchmarks import benchmark_noise, noise_seed; "
            "c = D.builtin_photo('astronaut')[:64, :64]; print(hashlib.sha1(benchmark_noise(c, 25, noise_seed('a.png', 25))).hexdigest())")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    import hashlib

    assert other == hashlib.sha1(noisy).hexdigest()  # the same bytes in another process


def test_a_grayscale_noise_set_gets_gray_noise_as_the_gray_protocol(tmp_path):
    gray = cv2.cvtColor(D.builtin_photo("astronaut")[:64, :64], cv2.COLOR_RGB2GRAY)
    (tmp_path / "BSD68").mkdir()
    cv2.imwrite(str(tmp_path / "BSD68" / "g.png"), gray)  # a one-channel PNG, as BSD68 ships
    write(tmp_path / "CBSD68" / "c.png", D.builtin_photo("astronaut")[:64, :64])
    (task,) = [t for t in benchmark_tasks([f"bsd68={tmp_path / 'BSD68'}"]) if t.sigma == 25]
    ((_, noisy, clean),) = list(task.images())
    assert np.array_equal(noisy[..., 0], noisy[..., 1]) and np.array_equal(noisy[..., 1], noisy[..., 2])
    expected = benchmark_noise(clean[..., :1], 25, noise_seed("g.png", 25))[..., 0]
    assert np.array_equal(noisy[..., 0], expected)  # the single-channel protocol, broadcast
    (task,) = [t for t in benchmark_tasks([f"cbsd68={tmp_path / 'CBSD68'}"]) if t.sigma == 25]
    ((_, noisy, _),) = list(task.images())
    assert not np.array_equal(noisy[..., 0], noisy[..., 1])  # colour sets keep noise per channel


@needs_shared
def test_identity_reproduces_the_shared_input_figures_under_both_protocols():
    specs = [f"{name}={SHARED / folder}" for folder, name in SHARED_INPUTS]
    tasks = benchmark_tasks(specs)
    for protocol in ("rgb", "y"):
        rows = {r["task"]: r for r in evaluate_methods(tasks, reference=False, protocol=protocol, progress=False)}
        for (folder, name), figures in SHARED_INPUTS.items():
            row = rows[find_benchmark(name).name]
            psnr, ssim = figures[protocol]
            assert row["method"] == IDENTITY and row["psnr"] == pytest.approx(psnr, abs=0.01) and row["ssim"] == pytest.approx(ssim, abs=0.001), (folder, protocol)


@needs_shared
def test_identity_on_cbsd68_reproduces_the_papers_noise_inputs():
    rows = evaluate_methods(benchmark_tasks([f"cbsd68={SHARED / 'CBSD68'}"]), reference=False, progress=False)
    for sigma, (psnr, ssim) in CBSD68_INPUTS.items():
        row = next(r for r in rows if r["task"] == f"cbsd68_sigma{sigma}")
        assert row["n"] == 68
        assert row["psnr"] == pytest.approx(psnr, abs=0.01) and row["ssim"] == pytest.approx(ssim, abs=0.001), sigma


# ---- layouts


def test_layouts_as_distributors_ship_them(tmp_path, photo_crops):
    a, b, c = photo_crops
    # Rain100L's original naming, folder names in another case.
    write(tmp_path / "r/Rainy/rain-001.png", a // 2)
    write(tmp_path / "r/Rainy/rain-002.png", b // 2)
    write(tmp_path / "r/NoRain/norain-002.png", b)
    write(tmp_path / "r/NoRain/norain-001.png", a)
    pairing = pair_spec(f"rain100l={tmp_path / 'r'}")
    assert [(d.name, c_.name) for d, c_ in pairing.pairs["rain100l"]] == [("rain-001.png", "norain-001.png"), ("rain-002.png", "norain-002.png")]
    # SOTS indoor: ten hazy images per clear one.
    for k in (1, 2):
        write(tmp_path / f"si/hazy/1400_{k}.png", a // 2)
    write(tmp_path / "si/gt/1400.png", a)
    assert [c_.name for _, c_ in pair_spec(f"sots-indoor={tmp_path / 'si'}").pairs["sots-indoor"]] == ["1400.png", "1400.png"]
    # GoPro: per-sequence blur/ and sharp/, the same frame number in two sequences.
    for seq, img in (("GOPR0384_11_00", a), ("GOPR0385_11_01", b)):
        write(tmp_path / f"g/{seq}/blur/000001.png", img // 2)
        write(tmp_path / f"g/{seq}/sharp/000001.png", img)
    pairs = pair_spec(f"gopro={tmp_path / 'g'}").pairs["gopro"]
    assert [(d.parent.parent.name, c_.parent.parent.name) for d, c_ in pairs] == [("GOPR0384_11_00", "GOPR0384_11_00"), ("GOPR0385_11_01", "GOPR0385_11_01")]
    # CDD-11: one task per degradation folder, all against clear/.
    for folder in ("low_haze", "rain"):
        write(tmp_path / f"cdd/{folder}/001.png", c // 2)
    write(tmp_path / "cdd/clear/001.png", c)
    assert sorted(pair_spec(f"cdd11={tmp_path / 'cdd'}").pairs) == ["cdd11_low_haze", "cdd11_rain"]
    with pytest.raises(D.UserError, match="does not look like LOL"):
        pair_spec(f"lol={tmp_path / 'r'}")


def test_tasks_refuse_unpaired_images_and_note_a_partial_set(tmp_path, photo_crops):
    a, b, _ = photo_crops
    write(tmp_path / "s/hazy/0001_0.8_0.2.jpg", a)
    write(tmp_path / "s/gt/0001.png", a)
    (task,) = benchmark_tasks([f"sots={tmp_path / 's'}"])
    assert task.name == "sots-outdoor" and "1 pairs where SOTS outdoor has 500" in task.note
    write(tmp_path / "s/hazy/0002_0.8_0.2.jpg", b)
    with pytest.raises(D.UserError, match="no clean image for 1 degraded"):
        benchmark_tasks([f"sots={tmp_path / 's'}"])
    assert [t.name for t in benchmark_tasks([f"kodak24={tmp_path / 's/gt'}"])] == ["kodak24_sigma15", "kodak24_sigma25", "kodak24_sigma50"]


def test_check_reports_what_a_folder_holds(tmp_path, photo_crops, capsys):
    a, b, c = photo_crops
    root = tmp_path / "Rain100L"
    write(root / "rainy/1.png", a // 2)
    write(root / "norain/1.png", a)
    write(root / "rainy/2.png", b // 2)
    write(root / "norain/2.png", b[:60])  # size mismatch
    write(root / "rainy/3.png", c // 2)  # no partner
    write(root / "norain/4.png", a)  # a duplicate of 1.png, unused
    write(tmp_path / "x.png", c).rename(root / "norain/5.jpg")  # a PNG named .jpg
    write(root / "rainy/5.png", c // 3)
    check = check_benchmark(f"rain100l={root}", progress=False)
    assert check.pairing.count == 3 and [p.name for p in check.pairing.unpaired_degraded] == ["3.png"]
    assert [(d.name, c_.name) for d, c_ in check.size_mismatches] == [("2.png", "2.png")]
    assert [(p.name, kind) for p, kind in check.wrong_extension] == [("5.jpg", "PNG")]
    assert [[p.name for p in g] for g in check.duplicates] == [["1.png", "4.png"]]
    assert not check.usable
    text = check.format()
    for words in ("3 pairs found; Rain100L has 100", "without a clean partner", "sizes differ", "top-left 64x60",
                  "is a PNG file", "identical pixels", "usable as it is: no"):
        assert words in text
    assert main(["benchmarks", "check", "rain100l", str(root), "--quiet"]) == 1
    assert "usable as it is: no" in capsys.readouterr().out


@needs_shared
def test_check_on_the_shared_sets_finds_their_known_quirks():
    rain = check_benchmark(f"rain100l={SHARED / 'Rain100L'}", progress=False)
    assert rain.usable and rain.pairing.count == 100 and len(rain.duplicates) == 9
    hsts = check_benchmark(f"hsts={SHARED / 'RESIDE_HSTS'}", progress=False)
    assert "8180.jpg" in {p.name for p, kind in hsts.wrong_extension if kind == "PNG"}
    sots = check_benchmark(f"sots={SHARED / 'SOTS_outdoor_subset5'}", progress=False)
    assert sots.usable and "the 5-pair subset shared for tests" in sots.format()


def test_registry_knows_the_standard_sets():
    for name in ("cbsd68", "kodak24", "mcmaster", "urban100", "rain100l", "rain100h", "sots-outdoor", "sots-indoor", "hsts",
                 "gopro", "lol", "cdd11", "snow100k-s", "snow100k-l"):
        assert name in BENCHMARKS
    assert find_benchmark("BSD68").name == "cbsd68" and find_benchmark("SOTS").name == "sots-outdoor"
    assert find_benchmark("my-set") is None


# ---- classical reference methods


def test_each_classical_method_improves_its_degradation():
    clean = D.builtin_photo("astronaut")[100:228, 100:260]
    cases = {
        "noise": benchmark_noise(clean, 25, 3),
        "blur": D.degrade(clean, "blur", params={"kind": "gaussian", "size": 1.5}, seed=0)[0],
        "haze": D.degrade(clean, "haze", 0.6, seed=0)[0],
        "low_light": D.degrade(clean, "low_light", 0.5, seed=0)[0],
    }
    rgb = PROTOCOLS["rgb"]
    for task, degraded in cases.items():
        name, method = CLASSICAL_METHODS[task]
        out = method(degraded)
        assert out.shape == clean.shape and out.dtype == np.uint8
        assert rgb.psnr(clean, out) > rgb.psnr(clean, degraded) + 0.5, name
    assert noise_level(cases["noise"]) == pytest.approx(25, rel=0.2)


def test_eval_reference_writes_the_table(tmp_path, photo_crops):
    for i, p in enumerate(photo_crops):
        write(tmp_path / f"lol/low/{i}.png", (p // 4).astype(np.uint8))
        write(tmp_path / f"lol/high/{i}.png", p)
        write(tmp_path / f"kodak/{i}.png", p)
    out = tmp_path / "results"
    assert main(["eval", "reference", "--bench", f"lol={tmp_path / 'lol'}", "--bench", f"kodak24={tmp_path / 'kodak'}",
                 "--protocol", "y", "-o", str(out)]) == 0
    rows = json.loads((out / "all_in_one.json").read_text())
    assert {(r["method"], r["task"]) for r in rows} >= {(IDENTITY, "lol"), (CLASSICAL, "lol"), (CLASSICAL, "kodak24_sigma50"),
                                                         (IDENTITY, "average"), (CLASSICAL, "average")}
    assert all(r["protocol"] == "y" for r in rows)
    lol = {r["method"]: r for r in rows if r["task"] == "lol"}
    assert lol[CLASSICAL]["variant"] == "gamma curve" and lol[CLASSICAL]["psnr"] > lol[IDENTITY]["psnr"]
    average = next(r for r in rows if r["method"] == IDENTITY and r["task"] == "average")
    assert average["psnr"] == pytest.approx(np.mean([r["psnr"] for r in rows if r["method"] == IDENTITY and r["task"] != "average"]))
    assert (out / "all_in_one.csv").read_text().splitlines()[0].startswith("method,variant,benchmark,task,n,psnr,ssim")
    assert main(["eval", "reference", "runs/restorer", "--bench", f"lol={tmp_path / 'lol'}"]) == 2


# ---- realism


def _fake_set(root: Path, kind: str, n: int = 8) -> Path:
    """A pair folder whose 'real' degraded images come from the engine itself (`kind` at severity 0.5)."""
    photos = list(D.builtin_photos().values())
    for i in range(n):
        clean = photos[i % len(photos)][40 * i : 40 * i + 96, 60:188]
        write(root / f"input/{i}.png", D.degrade(clean, kind, 0.5, seed=100 + i)[0])
        write(root / f"target/{i}.png", clean)
    return root


def test_realism_matches_the_severity_and_tells_apart_only_what_differs(tmp_path):
    from pipeline.eval.realism import realism, two_sample_accuracy

    noisy = _fake_set(tmp_path / "noisy", "noise")
    report, triplets = realism(f"mine={noisy}", "noise")
    assert report.severity == pytest.approx(0.5, abs=0.1)
    assert report.psnr["synthetic"]["mean"] == pytest.approx(report.psnr["real"]["mean"], abs=0.5)
    assert set(report.stats) == {"residual_std", "residual_corr", "luma_ratio"} and len(triplets) == 8
    assert report.stats["residual_corr"]["real"] == pytest.approx(report.stats["residual_corr"]["synthetic"], abs=0.1)
    assert "matched severity" in report.format() and json.dumps(report.to_record())
    # The same generator on both sides is near chance; noise against blur is told apart.
    reals = [t[1] for t in triplets]
    blurred = [D.degrade(t[0], "blur", 0.5, seed=i)[0] for i, t in enumerate(triplets)]
    assert two_sample_accuracy(reals, blurred, steps=150) > 0.85
    assert report.two_sample_accuracy < 0.75


def test_realism_cli_writes_the_report_and_the_picture(tmp_path, capsys):
    hazy = _fake_set(tmp_path / "hazy", "haze", n=4)
    assert main(["realism", "--bench", f"sots={hazy}", "--type", "haze", "--max-images", "4", "-o", str(tmp_path / "out")]) == 0
    record = json.loads((tmp_path / "out/realism.json").read_text())
    assert record["type"] == "haze" and record["n"] == 4 and "transmission" in record["stats"]
    assert cv2.imread(str(tmp_path / "out/side_by_side.png")) is not None
    assert main(["realism", "--bench", f"sots={hazy}", "--type", "fog"]) == 2
    assert "fog" in capsys.readouterr().err


def test_pairings_that_would_score_the_wrong_images_are_refused(tmp_path, photo_crops):
    a, b, c = photo_crops
    # Two prefixes share a number: the same relative path pairs them right, not their first number.
    for name, img in (("beautiful_smile_00003", a), ("city_read_00003", b)):
        write(tmp_path / f"snow/synthetic/{name}.jpg", img // 2)
        write(tmp_path / f"snow/gt/{name}.jpg", img)
    pairs = pair_spec(f"snow100k-s={tmp_path / 'snow'}").pairs["snow100k-s"]
    assert [(d.stem, c_.stem) for d, c_ in pairs] == [("beautiful_smile_00003",) * 2, ("city_read_00003",) * 2]
    # Names that differ and numbers that clash: refused, not paired by guess.
    write(tmp_path / "g/input/shot_7.png", a // 2)
    write(tmp_path / "g/target/a_7.png", a)
    write(tmp_path / "g/target/b_7.png", b)
    with pytest.raises(D.UserError, match="match several clean images"):
        benchmark_tasks([f"mine={tmp_path / 'g'}"])
    assert not check_benchmark(f"mine={tmp_path / 'g'}", progress=False).usable
    # An empty degraded folder is an error, not an empty table.
    (tmp_path / "e/low").mkdir(parents=True)
    write(tmp_path / "e/high/1.png", a)
    with pytest.raises(D.UserError, match="no image pairs"):
        benchmark_tasks([f"lol={tmp_path / 'e'}"])
    # A folder whose name holds ':' is one folder.
    write(tmp_path / "set:2024/input/1.png", c // 2)
    write(tmp_path / "set:2024/target/1.png", c)
    assert len(benchmark_tasks([f"mine={tmp_path / 'set:2024'}"])[0]) == 1


def test_images_smaller_than_the_ssim_window_are_a_clear_error():
    small = np.zeros((9, 9, 3), np.uint8)
    assert PROTOCOLS["rgb"].ssim(small, small) == pytest.approx(1.0)
    with pytest.raises(D.UserError, match="smaller than the 11 px SSIM window"):
        PROTOCOLS["y"].ssim(small, small)


@needs_shared
def test_bright_streak_clip_improves_real_rain():
    """Rain's classical row is measured on real streaks: on textured synthetic crops it clips texture too."""
    (task,) = benchmark_tasks([f"rain100l={SHARED / 'Rain100L'}"])
    task.pairs = task.pairs[:20]
    rows = {r["method"]: r for r in evaluate_methods([task], progress=False) if r["task"] == "rain100l"}
    assert rows[CLASSICAL]["variant"] == "bright-streak clip" and rows[CLASSICAL]["psnr"] > rows[IDENTITY]["psnr"] + 0.2


# ---- calibrate --match


def test_matched_bands_hold_the_real_inputs_in_the_degraded_tiers_and_never_move_inward():
    from pipeline.eval.matching import matched_bands

    bands = dict(D.DEFAULT_BANDS["ssim"])
    assert matched_bands(bands, list(np.linspace(0.3, 0.8, 50)), "ssim") == bands
    dark = list(np.linspace(0.08, 0.4, 50))
    moved = matched_bands(bands, dark, "ssim")
    assert moved["lq"][0] <= np.percentile(dark, 5) < bands["lq"][0] and moved["lq"][1] == bands["lq"][1]
    assert moved["mq"] == bands["mq"] and moved["hq"] == bands["hq"]
    light = list(np.linspace(0.7, 0.95, 50))
    moved = matched_bands(bands, light, "ssim")
    assert moved["hq"][0] > np.percentile(light, 95) and moved["mq"] == (bands["mq"][0], moved["hq"][0])
    assert moved["lq"] == bands["lq"]


def _noisy_set(root: Path, sigma: float) -> str:
    """A set in the input/ + target/ layout: four crops with strong Gaussian noise."""
    r = np.random.default_rng(7)
    for i, name in enumerate(("astronaut", "coffee", "chelsea", "rocket")):
        clean = D.builtin_photo(name)[:96, :96]
        write(root / "target" / f"{i}.png", clean)
        write(root / "input" / f"{i}.png", np.clip(clean + r.normal(0, sigma, clean.shape), 0, 255).astype(np.uint8))
    return f"noisy={root}"


def test_match_moves_one_types_bands_and_curve_and_the_build_scores_with_them(tmp_path):
    from pipeline.eval.matching import match_calibration
    from shards.sample import Scorer

    base = D.default_calibration()
    cal = match_calibration(base, _noisy_set(tmp_path, 120), "noise", patch=64, patches_per_image=1,
                            severities=(0.0, 0.5, 1.0))
    record = cal.curve("noise").match
    assert record["pairs"] == 4 and record["real_tiers"]["lq"] == 4 and record["real"]["p5"] < 0.2
    lq_floor = cal.bands_for("noise")["lq"][0]
    assert lq_floor <= record["real"]["p5"]
    assert cal.bands == base.bands and cal.types["haze"] == base.types["haze"]  # the others are kept
    assert cal.curve("noise").severities == [0.0, 0.5, 1.0]  # measured again, on the set's clean images
    path = tmp_path / "calibration.json"
    cal.save(path)
    assert D.load_calibration(path) == cal
    # The build searches each type in its own bands: a score under the global floor is lq for noise only.
    scorer = Scorer.of(cal, ["noise", "haze"], seed=0, max_tries=4)
    below_global = (lq_floor + base.bands["lq"][0]) / 2
    assert scorer.miss(below_global, "noise", "lq") == 0 and scorer.miss(below_global, "haze", "lq") == -1


def test_calibrate_match_cli(tmp_path, capsys):
    spec = _noisy_set(tmp_path / "set", 120)
    out = tmp_path / "cal.json"
    assert main(["calibrate", "--match", spec, "--patch", "64", "-o", str(out)]) == 2
    assert "--match NAME=DIR and --type" in capsys.readouterr().err
    assert main(["calibrate", "--match", spec, "--type", "noise", "--patch", "64", "--patches-per-image", "1",
                 "--steps", "3", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "lq floor moved from 0.2" in printed and "matched severity" in printed
    assert json.loads(out.read_text())["types"]["noise"]["match"]["benchmark"] == "noisy"


@needs_shared
def test_match_on_lol_puts_every_real_input_in_a_band():
    from pipeline.eval.matching import match_calibration

    cal = match_calibration(D.default_calibration(), f"lol={SHARED / 'LOL_eval15'}", "low_light", patch=128,
                            patches_per_image=1, severities=(0.0, 0.25, 0.5, 0.75, 1.0))
    record = cal.curve("low_light").match
    assert record["pairs"] == 15 and record["real_tiers"]["lq"] == 15 and record["real_tiers"]["below"] == 0
    assert cal.bands_for("low_light")["lq"][0] < 0.2 and 0.0 < record["severity"] < 1.0
