"""`perceive-ir eval`: benchmark folder layouts and the all-in-one table."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

import degradations as D
from pipeline.cli import main
from pipeline.eval.all_in_one import CLASSICAL, IDENTITY

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def write(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image[:, :, ::-1])


@pytest.fixture
def photos(photo_crops):
    return photo_crops


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
    tasks = ["cbsd68_sigma15", "cbsd68_sigma25", "cbsd68_sigma50", "rain100l"]
    by = {(r["method"], r["task"]): r for r in rows}
    assert set(by) == {(m, t) for m in (IDENTITY, CLASSICAL, "run") for t in [*tasks, "average"]}
    assert all(r["n"] == 3 for r in rows if r["task"] != "average")
    # Gaussian noise at sigma s: PSNR near 20 log10(255 / s), a little above it where pixels clip.
    for sigma in (15, 25, 50):
        assert 20 * np.log10(255 / sigma) - 0.1 < by[(IDENTITY, f"cbsd68_sigma{sigma}")]["psnr"] < 20 * np.log10(255 / sigma) + 1.5
    for method in (IDENTITY, CLASSICAL, "run"):
        for key in ("psnr", "ssim"):
            assert by[(method, "average")][key] == pytest.approx(np.mean([by[(method, t)][key] for t in tasks]))
    # The untrained restorer's output layer starts at zero: it is the identity, and scores as one.
    assert by[("run", "rain100l")]["psnr"] == pytest.approx(by[(IDENTITY, "rain100l")]["psnr"], abs=0.05)
    assert (out / "all_in_one.csv").read_text().splitlines()[0].startswith("method,variant,benchmark,task,n,psnr,ssim")


def test_eval_puts_perceive_ir_and_clearair_side_by_side(tmp_path, photos, restorer_run, clearair_run, capsys):
    for i, p in enumerate(photos):
        rainy, _ = D.degrade(p, "rain", 0.5, seed=i)
        write(tmp_path / f"rain100l/rainy/rain-{i + 1:03d}.png", rainy)
        write(tmp_path / f"rain100l/norain/norain-{i + 1:03d}.png", p)
    out = tmp_path / "results"
    code = main(["eval", "restorer", str(restorer_run), str(clearair_run), "--bench", f"rain100l={tmp_path / 'rain100l'}",
                 "--no-reference", "-o", str(out), "--device", "cpu"])
    assert code == 0
    printed = capsys.readouterr().out
    rows = {(r["method"], r["task"]): r for r in json.loads((out / "all_in_one.json").read_text())}
    assert set(rows) == {(m, t) for m in (IDENTITY, "run", "clearair") for t in ("rain100l", "average")}
    perceive_ir, clearair = rows[("run", "average")], rows[("clearair", "average")]
    assert 0 < perceive_ir["params"] < clearair["params"]  # a NAFNet of 8 channels against a Restormer with three modules
    assert perceive_ir["frozen_params"] == 0 < clearair["frozen_params"]  # the perceiver provider is frozen
    assert clearair["s_per_image"] > 0 and rows[(IDENTITY, "average")]["params"] is None
    assert "parameters" in printed and "clearair" in printed.split("parameters")[1]


def test_eval_needs_something_to_evaluate(tmp_path, capsys):
    assert main(["eval", "restorer", str(tmp_path)]) == 2
    assert "--bench" in capsys.readouterr().err
