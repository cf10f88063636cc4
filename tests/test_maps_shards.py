"""Severity and quality maps in builds and loaders: members, manifest statistics, crops and flips."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

import degradations as D
import shards
from helpers import find_window
from pipeline.data.loader import make_loader


def _samples(build: Path) -> dict[str, dict[str, bytes]]:
    """Every sample of a build: key -> member kind -> bytes."""
    out: dict[str, dict[str, bytes]] = {}
    for tar in sorted(build.glob("*/*/shard-*.tar")):
        with tarfile.open(tar) as f:
            for info in f.getmembers():
                key, kind = shards.format.split_member(info.name)
                out.setdefault(key, {})[kind] = f.extractfile(info).read()
    return out


def _grey(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255


def test_every_degraded_image_stores_its_maps_and_they_are_what_the_recipe_and_ssim_say(maps_build):
    samples = _samples(maps_build)
    manifest = pq.read_table(maps_build / "manifest.parquet").to_pandas().set_index(["key", "tier"])
    generators = set()
    for key, members in samples.items():
        record = json.loads(members["json"])
        hq = shards.decode(members["hq"])
        for tier in ("mq", "lq"):
            severity, quality = _grey(members[f"{tier}_sev"]), _grey(members[f"{tier}_qmap"])
            image = shards.decode(members[tier])
            recipe = D.Recipe.from_dict(record[tier]["recipe"])
            generators.add(recipe.steps[0].severity["map"])
            assert np.abs(severity - D.severity_map_of(hq, recipe.steps[0])).max() <= 0.5 / 255 + 1e-6
            assert np.abs(quality - D.ssim_map(hq, image)).max() <= 0.5 / 255 + 1e-6
            row = manifest.loc[(key, tier)]
            assert row["map_mean"] == pytest.approx(severity.mean(), abs=1 / 255)
            assert row["quality_mean"] == pytest.approx(quality.mean(), abs=1 / 255)
            assert row["area_lq"] + row["area_mq"] + row["area_hq"] == pytest.approx(1.0, abs=1e-5)
            assert row["map_min"] <= row["severity"] * 1.0 + 1e-6 <= row["map_max"] + 1e-6  # the map spans s
        assert manifest.loc[(key, "hq")][["map_mean", "quality_mean", "area_lq"]].isna().all()
    assert len(generators) >= 3  # mixed draws several generators


def test_a_maps_build_is_the_same_bytes_with_two_workers(maps_build, tmp_path):
    from helpers import MAPS_BUILD

    shards.build("builtin", tmp_path, MAPS_BUILD, workers=2, progress=False)
    ours = sorted(p.relative_to(tmp_path) for p in tmp_path.glob("*/*/shard-*"))
    assert ours == sorted(p.relative_to(maps_build) for p in maps_build.glob("*/*/shard-*"))
    for path in ours:
        assert (tmp_path / path).read_bytes() == (maps_build / path).read_bytes(), path


def test_a_build_without_maps_has_none(small_build):
    record = json.loads((small_build / "dataset.json").read_text())
    assert "maps" not in record["config"]
    assert pq.read_table(small_build / "manifest.parquet", columns=["map_mean"]).column(0).null_count > 0
    assert not any("_sev" in m for m in record["layout"]["members"])
    assert "maps:" not in shards.inspect(small_build).text(histograms=False)
    with pytest.raises(D.UserError, match="built without severity maps"):
        make_loader(small_build, "train", "pairs", batch_size=2, crop=32, num_workers=0, maps=True)


@pytest.mark.parametrize("mode", ["pairs", "tiers"])
def test_the_loader_cuts_and_flips_maps_exactly_like_their_images(maps_build, mode):
    stored = _samples(maps_build)
    loader = make_loader(maps_build, "train", mode, batch_size=4, crop=40, num_workers=0, maps=True, seed=2)
    checked = flipped = 0
    for batch in loader:
        for i, key in enumerate(batch["key"]):
            members = stored[key]
            tier = "lq" if mode == "pairs" else D.TIERS[int(batch["tier"][i])]
            image = (batch["lq" if mode == "pairs" else "image"][i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            sev = batch["lq_sev" if mode == "pairs" else "sev"][i, 0].numpy()
            qmap = batch["lq_qmap" if mode == "pairs" else "qmap"][i, 0].numpy()
            if tier == "hq":
                assert (sev == 0).all() and (qmap == 1).all()
                continue
            full = shards.decode(members[tier])
            window = find_window(full, image)
            assert window is not None, key
            flipped += window[2] or window[3]
            for kind, got in (("sev", sev), ("qmap", qmap)):
                assert np.array_equal(_cut(_grey(members[f"{tier}_{kind}"]), window, 40), got)
            checked += 1
    assert checked >= 4 and flipped >= 1


def _cut(image: np.ndarray, window: tuple[int, int, bool, bool], side: int) -> np.ndarray:
    y, x, lr, ud = window
    view = image[y : y + side, x : x + side]
    return view[::-1 if ud else 1, ::-1 if lr else 1]


def test_a_gradient_map_keeps_its_direction_through_a_flip(tmp_path):
    config = shards.BuildConfig(
        types=("noise",), patch=64, patches_per_image=4, samples_per_shard=8, seed=1, maps="gradient", map_contrast=2.0,
    )
    shards.build("builtin", tmp_path, config, workers=1, progress=False)
    loader = make_loader(tmp_path, "train", "pairs", batch_size=4, crop=48, num_workers=0, maps=True, seed=0)
    severity, residual = [], []
    for batch in loader:
        hq = batch["hq"].numpy()
        keep = ((hq > 0.15) & (hq < 0.85)).all(axis=1)  # where noise did not clip
        severity.append(batch["lq_sev"][:, 0].numpy()[keep])
        residual.append((batch["lq"] - batch["hq"]).abs().mean(dim=1).numpy()[keep])
    # Where the map the loader gives says more noise, its crop holds more noise: the map followed its
    # image through every crop and flip (a map flipped on its own would decorrelate).
    correlation = np.corrcoef(np.concatenate(severity), np.concatenate(residual))[0, 1]
    assert correlation > 0.3


def test_inspect_summarises_the_maps_per_type_and_tier(maps_build):
    text = shards.inspect(maps_build).text(histograms=False)
    block = text.split("maps: mixed (contrast 1)")[1].splitlines()
    rows = [line.split() for line in block[2:] if line.strip()]
    assert {(r[0], r[1]) for r in rows} == {(t, tier) for t in ("haze", "noise", "rain") for tier in ("lq", "mq")}
    for row in rows:  # severity range lo - hi, quality, and areas that sum to 1
        lo, hi, quality, areas = float(row[2]), float(row[4]), float(row[5]), [float(row[i]) for i in (6, 8, 10)]
        assert lo <= hi and 0 <= quality <= 1 and sum(areas) == pytest.approx(1.0, abs=0.02)
