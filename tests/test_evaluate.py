"""`perceive-ir eval`: benchmark folder layouts and the all-in-one table."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

import degradations as D
from pipeline.cli import main
from pipeline.eval.benchmarks import match_pairs

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def write(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image[:, :, ::-1])


@pytest.fixture
def photos(photo_crops):
    return photo_crops


def test_pairs_match_by_path_or_number(tmp_path, photos):
    write(tmp_path / "sots/hazy/0001_0.8_0.2.jpg", photos[0])
    write(tmp_path / "sots/hazy/0002_0.9_0.1.jpg", photos[1])
    write(tmp_path / "sots/clear/0002.png", photos[1])
    write(tmp_path / "sots/clear/0001.png", photos[0])
    pairs = match_pairs(tmp_path / "sots/hazy", tmp_path / "sots/clear")
    assert [(d.name, c.name) for d, c in pairs] == [("0001_0.8_0.2.jpg", "0001.png"), ("0002_0.9_0.1.jpg", "0002.png")]
    write(tmp_path / "gopro/blur/scene_a/000001.png", photos[0])
    write(tmp_path / "gopro/sharp/scene_a/000001.png", photos[0])
    assert len(match_pairs(tmp_path / "gopro/blur", tmp_path / "gopro/sharp")) == 1
    write(tmp_path / "bad/low/7.png", photos[0])
    write(tmp_path / "bad/high/8.png", photos[0])
    with pytest.raises(ValueError, match="no clean image"):
        match_pairs(tmp_path / "bad/low", tmp_path / "bad/high")


def test_eval_cli_writes_the_all_in_one_table(tmp_path, photos, restorer_run):
    for i, p in enumerate(photos):
        write(tmp_path / f"bsd68/{i:03d}.png", p)
        rainy, _ = D.degrade(p, "rain", 0.5, seed=i)
        write(tmp_path / f"rain100l/rainy/rain-{i + 1:03d}.png", rainy)
        write(tmp_path / f"rain100l/norain/norain-{i + 1:03d}.png", p)
    out = tmp_path / "results"
    code = main(["eval", "restorer", str(restorer_run), "--bench", f"bsd68={tmp_path / 'bsd68'}",
                 "--bench", f"rain100l={tmp_path / 'rain100l'}", "-o", str(out), "--device", "cpu"])
    assert code == 0
    rows = json.loads((out / "all_in_one.json").read_text())
    assert [r["type"] for r in rows] == ["bsd68_sigma15", "bsd68_sigma25", "bsd68_sigma50", "rain100l", "average"]
    assert all(r["n"] == 3 for r in rows[:4])
    inputs = {r["type"]: r["input_psnr"] for r in rows}
    # Gaussian noise at sigma s: PSNR near 20 log10(255 / s), a little above it where pixels clip.
    for sigma in (15, 25, 50):
        assert 20 * np.log10(255 / sigma) - 0.1 < inputs[f"bsd68_sigma{sigma}"] < 20 * np.log10(255 / sigma) + 1.5
    for key in ("psnr", "ssim", "input_psnr", "psnr_gain"):
        assert rows[-1][key] == pytest.approx(np.mean([r[key] for r in rows[:4]]))
    assert all(r["psnr_gain"] == pytest.approx(r["psnr"] - r["input_psnr"]) for r in rows)
    assert (out / "all_in_one.csv").read_text().splitlines()[0].startswith("type,tier,n,psnr")


def test_eval_needs_something_to_evaluate(tmp_path, capsys):
    assert main(["eval", "restorer", str(tmp_path)]) == 2
    assert "--bench" in capsys.readouterr().err
