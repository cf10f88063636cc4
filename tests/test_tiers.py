"""Tier bands, calibration and the shipped default calibration."""

from __future__ import annotations

import json

import numpy as np
import pytest

import degradations as D
from degradations.calibration import tier_ranges


def test_tier_of_uses_the_bands():
    assert D.tier_of(1.0) == "hq"
    assert D.tier_of(0.85) == "hq"
    assert D.tier_of(0.8499) == "mq"
    assert D.tier_of(0.5) == "mq"
    assert D.tier_of(0.3) == "lq"
    assert D.tier_of(0.05) == "lq"
    assert D.tier_of(30.0, metric="psnr") == "mq"
    with pytest.raises(ValueError, match="unknown metric"):
        D.tier_of(0.5, metric="lpips")


def test_tier_ranges_invert_the_curve():
    sev = np.linspace(0, 1, 11)
    curve = 1.0 - 0.8 * sev  # 0.85 at s=0.1875, 0.5 at 0.625, 0.2 at 1.0
    ranges, notes = tier_ranges(sev, curve, D.DEFAULT_BANDS["ssim"])
    assert ranges["hq"] == [0.0, pytest.approx(0.1875)]
    assert ranges["mq"] == [pytest.approx(0.1875), pytest.approx(0.625)]
    assert ranges["lq"][0] == pytest.approx(0.625)
    assert ranges["lq"][1] == pytest.approx(1.0)


def test_unreachable_band_is_reported():
    sev = np.linspace(0, 1, 5)
    ranges, notes = tier_ranges(sev, np.array([1.0, 0.9, 0.8, 0.7, 0.6]), D.DEFAULT_BANDS["ssim"])
    assert ranges["lq"] is None and ranges["mq"] is not None
    assert any("lq out of reach" in n for n in notes)


def test_shipped_calibration_covers_builtin_types():
    cal = D.default_calibration()
    assert cal.metric == "ssim"
    for name in ["blur", "haze", "jpeg", "low_light", "noise", "rain", "snow"]:
        lo, hi = D.severity_range(name, "mq")
        assert 0 < lo < hi <= 1
        assert D.severity_range(name, "hq")[1] == pytest.approx(lo)
    for name in ["haze", "low_light", "noise", "rain", "snow"]:
        assert D.severity_range(name, "lq")[0] == pytest.approx(D.severity_range(name, "mq")[1])


def test_out_of_reach_tier_and_uncalibrated_type_raise():
    cal = D.default_calibration()
    unreachable = [n for n, c in cal.types.items() if c.ranges["lq"] is None]
    assert unreachable, "the builtin photos leave some type short of lq (see README)"
    with pytest.raises(ValueError, match="never reaches tier lq"):
        D.severity_range(unreachable[0], "lq")
    with pytest.raises(ValueError, match="is not calibrated"):
        D.severity_range("low_light+haze", "mq")
    with pytest.raises(ValueError, match="unknown tier"):
        D.severity_range("noise", "best")


def test_drawn_severities_land_in_their_band_on_average():
    """The calibrated mq range of noise gives mq-scored images, on average, on the builtin photos."""
    lo, hi = D.severity_range("noise", "mq")
    rng = D.rng(0, "test")
    scores = []
    for name, image in D.builtin_photos().items():
        crop = image[:256, :256]
        for _ in range(3):
            out, _ = D.degrade(crop, "noise", float(rng.uniform(lo, hi)), seed=int(rng.integers(1 << 30)))
            scores.append(D.ssim(crop, out))
    assert D.tier_of(float(np.mean(scores))) == "mq"


def test_default_calibration_is_reproducible_by_its_command(tmp_path):
    """`perceive-ir calibrate --source builtin` reproduces the shipped curve (checked on one type)."""
    from pipeline.cli import main

    out = tmp_path / "cal.json"
    assert main(["calibrate", "--source", "builtin", "--types", "noise", "-o", str(out)]) == 0
    mine = json.loads(out.read_text())
    shipped = D.default_calibration().to_record()
    assert mine["types"]["noise"] == shipped["types"]["noise"]
    assert mine["bands"] == shipped["bands"]


def test_calibration_round_trips(tmp_path):
    cal = D.calibrate({"a": D.builtin_photo("astronaut")}, ["jpeg"], severities=[0, 0.5, 1], patch=96, patches_per_image=1)
    cal.save(tmp_path / "c.json")
    again = D.load_calibration(tmp_path / "c.json")
    assert again.to_record() == cal.to_record()
    assert D.Calibration.from_record(cal.to_record()) == cal
    assert D.Calibration.from_record(cal.subset(["jpeg"]).to_record()).types.keys() == {"jpeg"}
    assert again.severity_range("jpeg", "hq") == cal.severity_range("jpeg", "hq")
