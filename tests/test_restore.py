"""Using a trained restorer: tiles that leave no seam, files and folders, loading without a hub."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
import torch
import yaml
from torch import nn

import degradations as D
from helpers import stage_config
from pipeline import load_restorer, restore
from pipeline.cli import main
from pipeline.train import checkpoint
from pipeline.train.config import dump
from pipeline.train.stages import seeded_torch
from pipeline.train.stages.restorer import build_restorer

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class Pointwise(nn.Module):
    """A per-pixel colour map: restoring in tiles must give exactly what the whole image gives."""

    def __init__(self) -> None:
        super().__init__()
        self.mix = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.mix.weight.copy_(torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]]).view(3, 3, 1, 1))
            self.mix.bias.fill_(0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(x)


def test_tiles_blend_without_seams():
    image = D.builtin_photo("astronaut")[:300, :250]
    whole = restore(Pointwise(), image, tile=512)
    calls = []
    tiled = restore(Pointwise(), image, tile=96, overlap=16, progress=calls.append)
    assert len(calls) == 4 * 3  # 300 / (96 - 16) -> 4 rows, 250 -> 3 columns
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1
    with pytest.raises(D.UserError, match="overlap"):
        restore(Pointwise(), image, tile=96, overlap=48)


def test_untrained_restorer_in_tiles_returns_its_input(restorer_run):
    model = load_restorer(restorer_run)
    image = D.builtin_photo("coffee")[:200, :230]
    assert np.array_equal(restore(model, image, tile=64, overlap=8), image)  # it starts as the identity


def test_restore_command_mirrors_files_and_formats_and_reports_unusable_ones(restorer_run, tmp_path, capsys):
    photos = tmp_path / "in"
    (photos / "sub").mkdir(parents=True)
    cv2.imwrite(str(photos / "a.png"), D.builtin_photo("astronaut")[:80, :90, ::-1])
    cv2.imwrite(str(photos / "sub" / "b.jpg"), D.builtin_photo("chelsea")[:70, :60, ::-1])
    (photos / "broken.png").write_bytes(b"not a png")
    assert main(["restore", str(restorer_run), str(photos), "-o", str(tmp_path / "out"), "--tile", "64", "--overlap", "8", "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "skipped" in captured.err and "broken.png" in captured.err
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.*")) == ["a.png", "sub/b.jpg"]
    assert cv2.imread(str(tmp_path / "out" / "a.png")).shape == (80, 90, 3)
    assert (tmp_path / "out" / "sub" / "b.jpg").read_bytes()[:2] == b"\xff\xd8"  # a JPEG, as its input
    assert main(["restore", str(restorer_run / "last.pt"), str(photos / "a.png"), "-o", str(tmp_path / "one.png"), "--quiet"]) == 0
    assert np.array_equal(cv2.imread(str(tmp_path / "one.png")), cv2.imread(str(photos / "a.png")))
    assert main(["restore", str(restorer_run), str(tmp_path / "nowhere"), "-o", str(tmp_path / "x.png")]) == 2


def test_loading_takes_every_weight_from_the_checkpoint_never_a_hub(tmp_path):
    config = stage_config("restorer", tmp_path / "run")
    with seeded_torch(3), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_restorer(config["model"])  # SGM on a random ViT
    config["model"]["semantic_pretrained"] = True  # as a real run says: DINOv2 from the timm hub, not reachable here
    run = tmp_path / "run"
    run.mkdir()
    dump(config, run / "config.yaml")
    checkpoint.save(run / "last.pt", {"model": model.state_dict()})
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["semantic_pretrained"] is True
    loaded = load_restorer(run)
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
