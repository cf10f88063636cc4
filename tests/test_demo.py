"""`perceive-ir demo` end to end, shortened: every stage runs and the report is written."""

from __future__ import annotations

import json

import pytest

from pipeline.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]


def test_demo_writes_its_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--steps", "30,20", "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    assert "validation tier accuracy" in printed and "validation PSNR" in printed
    for name in ("report.md", "shards_preview.png", "training_curves.png", "before_after.png", "restorer_val.csv"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "perceiver" / "perceiver.safetensors").is_file() and (out / "restorer" / "last.pt").is_file()
    rows = json.loads((out / "restorer_val.json").read_text())
    assert rows[-1]["type"] == "average" and rows[-1]["n"] > 0
    assert "per type:" in printed and all(f"{t} " in printed.split("per type:")[1] for t in ("blur", "haze", "noise"))
    assert "randomly initialised" in (out / "report.md").read_text()


def test_the_paper_tiers_demo_runs_the_whole_path(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--tiers", "paper", "-o", str(out), "--steps", "20,10,10", "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    assert "paper tiers, 0 skipped" in printed and "lq inputs" in printed
    assert (out / "medium" / "fold-0" / "fold.json").is_file() and (out / "medium" / "fold-1" / "fold.json").is_file()
    assert (out / "shards" / "medium.parquet").is_file() and (out / "restorer" / "last.pt").is_file()
    rows = json.loads((out / "restorer_val.json").read_text())
    assert {r["tier"] for r in rows} == {"lq", "all"}  # mq is a restoration on paper tiers: only lq is restored
    assert "samples skipped by the build | 0" in (out / "report.md").read_text()


def test_the_clearair_demo_trains_clearair_guided_by_the_demos_perceiver(tmp_path, capsys):
    import yaml

    out = tmp_path / "demo"
    assert main(["demo", "--restorer", "clearair", "-o", str(out), "--steps", "20,5", "--workers", "2"]) == 0
    assert "restorer:   ClearAIR, validation PSNR" in capsys.readouterr().out
    config = yaml.safe_load((out / "restorer" / "config.yaml").read_text())
    assert config["model"]["arch"] == "clearair" and config["loss"]["internal"] == 0.25
    assert config["model"]["clearair"]["quality_kwargs"]["perceiver"] == str(out / "perceiver" / "perceiver.safetensors")
    assert "ClearAIR restorer" in (out / "report.md").read_text()


def test_the_maps_demo_trains_the_dense_head_and_draws_its_maps(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--maps", "-o", str(out), "--steps", "10", "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    assert "severity and quality maps" in printed and "per-pixel tier accuracy" in printed
    assert (out / "quality_maps.png").stat().st_size > 0 and (out / "shards_preview.png").stat().st_size > 0
    report = (out / "report.md").read_text()
    assert "randomly initialised" in report and "per-pixel tier accuracy" in report
    assert json.loads((out / "shards" / "dataset.json").read_text())["config"]["maps"] == "mixed"
