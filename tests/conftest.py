"""Fixtures shared by test modules: builtin photos, a small real build, a saved restorer run."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import degradations as D
import shards
from helpers import MAPS_BUILD, SMALL_BUILD, stage_config


@pytest.fixture(scope="session")
def small_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished build of the builtin photos with SMALL_BUILD, made with 2 workers. Read only."""
    out = tmp_path_factory.mktemp("small_build")
    result = shards.build("builtin", out, SMALL_BUILD, workers=2, progress=False)
    assert result.shards_skipped == 0 and result.report.samples > 0
    return out


@pytest.fixture(scope="session")
def maps_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished build with severity and quality maps (MAPS_BUILD), one worker. Read only."""
    out = tmp_path_factory.mktemp("maps_build")
    result = shards.build("builtin", out, MAPS_BUILD, workers=1, progress=False)
    assert result.report.samples > 0
    return out


@pytest.fixture(scope="session")
def photo_crops() -> list[np.ndarray]:
    """Three 64 x 64 crops of builtin photos."""
    return [D.builtin_photo(n)[100:164, 100:164] for n in ("astronaut", "coffee", "chelsea")]


@pytest.fixture
def restorer_run(tmp_path: Path) -> Path:
    """A restorer run folder (config.yaml + last.pt) holding a tiny untrained restorer."""
    return _untrained_run(tmp_path, "restorer", "run")


@pytest.fixture
def clearair_run(tmp_path: Path) -> Path:
    """A restorer run folder holding a tiny untrained ClearAIR (offline providers)."""
    return _untrained_run(tmp_path, "clearair", "clearair")


def _untrained_run(tmp_path: Path, stage: str, name: str) -> Path:
    from pipeline.train import checkpoint
    from pipeline.train.config import dump
    from pipeline.train.stages import seeded_torch
    from pipeline.train.stages.restorer import build_restorer

    config = stage_config(stage, tmp_path / name)
    config["model"].update(sgm=False)
    run = Path(config["run"]["out"])
    run.mkdir()
    with seeded_torch(0), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_restorer(config["model"])
    dump(config, run / "config.yaml")
    checkpoint.save(run / "last.pt", {"model": model.state_dict()})
    return run
