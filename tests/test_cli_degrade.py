"""`perceive-ir degrade` and `perceive-ir preview IMAGE` as a user runs them; how the CLI reports errors."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

import degradations as D
from pipeline.cli import main


def test_degrade_writes_image_and_recipe_that_replays(tmp_path, capsys):
    src = tmp_path / "photo.png"
    photo = D.builtin_photo("astronaut")[:256, :256]
    cv2.imwrite(str(src), photo[:, :, ::-1])
    out = tmp_path / "hazy.png"
    assert main(["degrade", str(src), "--type", "haze", "--severity", "0.6", "--seed", "1", "-o", str(out)]) == 0
    recipe = json.loads(out.with_suffix(".json").read_text())
    assert recipe["type"] == "haze" and recipe["seed"] == 1 and recipe["tier"] in D.TIERS
    written = cv2.imread(str(out))[:, :, ::-1]
    assert np.array_equal(written, D.replay(photo, recipe))
    again = tmp_path / "again.png"
    assert main(["degrade", str(src), "--replay", str(out.with_suffix(".json")), "-o", str(again)]) == 0
    assert np.array_equal(cv2.imread(str(again)), cv2.imread(str(out)))


def test_degrade_reports_bad_input_in_one_line(tmp_path, capsys):
    src = tmp_path / "photo.png"
    cv2.imwrite(str(src), np.zeros((64, 64, 3), np.uint8))
    code = main(["degrade", str(src), "--type", "fog", "--severity", "0.5", "-o", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == 2 and "unknown degradation type 'fog'" in err and "Traceback" not in err


def test_preview_draws_types_by_severities(tmp_path):
    out = tmp_path / "grid.png"
    assert main(["preview", "builtin:chelsea", "--types", "noise,haze", "--severities", "0.3,0.9", "--size", "64", "-o", str(out)]) == 0
    grid = cv2.imread(str(out))
    assert grid.shape[0] > 2 * 64 and grid.shape[1] > 2 * 64


def test_user_errors_are_one_line_and_bugs_show_their_traceback(tmp_path, capsys, monkeypatch):
    assert main(["inspect", str(tmp_path)]) == 2  # not a build: the user's to fix
    err = capsys.readouterr().err
    assert err.startswith("perceive-ir inspect: error:") and len(err.strip().splitlines()) == 1
    assert main(["degrade", "builtin:astronaut", "--type", "noise", "--params", "{sigma: 3", "-o", str(tmp_path / "x.png")]) == 2
    assert "--params is not valid JSON" in capsys.readouterr().err

    import shards

    def bug(out):
        raise ValueError("an internal inconsistency")

    monkeypatch.setattr(shards, "inspect", bug)
    with pytest.raises(ValueError, match="an internal inconsistency"):  # a bug is not printed as a user error
        main(["inspect", str(tmp_path)])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["build", "--source", "builtin", "--out", "{tmp}/out", "--calibration", "{tmp}/missing.json"], "does not exist"),
        (["build", "--source", "builtin", "--out", "{tmp}/out", "--calibration", "{tmp}/bad.json"], "is not JSON"),
        (["build", "--source", "{tmp}/list.parquet", "--out", "{tmp}/out"], "cannot be read as parquet"),
        (["calibrate", "--types", "noise", "-o", "{tmp}/a_file/c.json"], "cannot make the folder of --out"),
        (["degrade", "builtin:astronaut", "--type", "noise", "--severity", "0.5", "-o", "{tmp}/a_file/x.png"], "cannot make"),
        (["degrade", "builtin:astronaut", "--type", "noise", "--severity", "0.5", "-o", "{tmp}/x.xyz"], "ending in .png"),
        (["degrade", "builtin:astronaut", "--replay", "{tmp}/bad_recipe.json", "-o", "{tmp}/x.png"], "not a recipe"),
        (["preview", "builtin:astronaut", "--severities", "0.2,lots", "-o", "{tmp}/x.png"], "--severities wants"),
    ],
)
def test_user_input_errors_are_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "list.parquet").write_bytes(b"PAR1 but not really")
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "bad_recipe.json").write_text(json.dumps({"type": "noise", "seed": "abc", "engine_version": "2", "params": {"sigma": 3}}))
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
