"""Perceive-IR's tiers as published: a paper-scheme build, the cross-fold medium restorer, its
rendering beside the shards, and the restorer trained on them with the authors' losses."""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

import degradations as D
import shards
from helpers import TINY_NAFNET, stage_config
from pipeline.data import make_loader
from pipeline.render import render_medium
from pipeline.train import resolve, train
from pipeline.train.config import presets
from pipeline.train.stages import get_stage
from pipeline.train.stages.medium import TRAINED_KEYS, fold_dir
from pipeline.train.stages.restorer import ProbeSet, probe_keys

PAPER = shards.BuildConfig(types=("noise", "haze", "blur"), patch=64, patches_per_image=4, samples_per_shard=8,
                           tiers="paper", seed=3)


def medium_config(build: Path, out: Path, steps: int = 3) -> dict:
    cfg = stage_config("medium", out, steps=steps)
    cfg["model"].update(sgm=False, cfe=False, backbone_kwargs=TINY_NAFNET)
    cfg["data"].update(source=str(build), crop=32, batch_size=4, num_workers=0)
    cfg["run"]["device"] = "cpu"
    return cfg


@pytest.fixture(scope="module")
def paper_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("paper_build")
    shards.build("builtin", out, PAPER, workers=2, progress=False)
    return out


@pytest.fixture(scope="module")
def medium_runs(paper_build: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("medium") / "runs"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train("medium", medium_config(paper_build, out))
    return out


@pytest.fixture(scope="module")
def rendered(paper_build: Path, medium_runs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the paper build with its mq rendered by the fold runs, with 2 workers."""
    out = tmp_path_factory.mktemp("rendered") / "build"
    _copy_build(paper_build, out)
    result = render_medium(out, runs=medium_runs, workers=2, progress=False)
    assert result.errors == 0 and result.shards_skipped == 0
    return out


def _copy_build(src: Path, dst: Path) -> None:
    import shutil

    shutil.copytree(src, dst)


def _companions(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob("*/*/shard-*.mq.*"))} | {
        "medium.parquet": (root / "medium.parquet").read_bytes()}


def test_a_paper_build_skips_no_sample_for_a_band(paper_build, tmp_path):
    build = shards.open_build(paper_build)
    assert build.tiers == "paper" and build.record["format_version"] == shards.format.FORMAT_VERSION
    assert build.errors().num_rows == 0  # nothing given up for being out of a band
    rows = build.manifest().to_pandas()
    samples = build.counts["samples"]
    assert samples == 7 * 4 * 3  # every planned sample: 7 photos x 4 patches x 3 types
    assert sorted(rows["tier"].unique()) == ["hq", "lq"] and len(rows) == 2 * samples
    lq = rows[rows["tier"] == "lq"]
    calibration = build.calibration
    for t, group in lq.groupby("type"):
        lo = calibration.interval(t, "mq", beyond_mean=True)[0]
        assert group["severity"].between(lo, 1.0).all()  # drawn over the type's span, no band search
    # The stored lq replays from its recipe, and its record keeps the measured score and band.
    key = lq["key"].iloc[0]
    sample = shards.read_samples(paper_build, [key])[key]
    record = sample["json"]["lq"]
    assert np.array_equal(D.replay(sample["hq"], D.Recipe.from_dict(record["recipe"])), sample["lq"])
    assert record["band"] == D.tier_of(record["score"], "ssim", calibration.bands_for(sample["json"]["type"]))
    # The same photos under the bands scheme give up samples that cannot reach a band (blur on flat patches).
    bands = shards.build("builtin", tmp_path / "bands", shards.BuildConfig(**{**PAPER.__dict__, "tiers": "bands"}),
                         workers=2, progress=False)
    assert bands.report.samples < samples


def test_the_medium_stage_trains_each_fold_outside_itself(paper_build, medium_runs):
    keys = shards.open_build(paper_build).manifest(["key", "split"]).to_pandas().drop_duplicates("key")
    train_keys = set(keys.loc[keys["split"] == "train", "key"])
    seen = []
    for fold in (0, 1):
        run = fold_dir(medium_runs, fold)
        record = json.loads((run / "fold.json").read_text())
        with gzip.open(run / TRAINED_KEYS, "rt") as f:
            trained = set(f.read().split())
        assert record["fold"] == fold and record["folds"] == 2 and record["trained_keys"] == len(trained) > 0
        assert trained == {k for k in train_keys if shards.fold_of(k, 2) != fold}
        seen.append(trained)
    assert seen[0] | seen[1] == train_keys and not seen[0] & seen[1]
    # A photo's patches share a fold: the model of its fold saw none of them.
    stems = {k.rsplit("-", 1)[0] for k in seen[0]}
    assert not stems & {k.rsplit("-", 1)[0] for k in seen[1]}


def test_mq_is_rendered_for_every_sample_by_a_model_that_did_not_train_on_it(paper_build, rendered, medium_runs):
    build = shards.open_build(rendered)
    assert build.rendered
    medium = build.medium().to_pandas()
    keys = set(build.manifest(["key"]).column("key").to_pylist())
    assert set(medium["key"]) == keys and (medium["tier"] == "mq").all()
    runs = {}
    for fold in (0, 1):
        run = fold_dir(medium_runs, fold)
        with gzip.open(run / TRAINED_KEYS, "rt") as f:
            runs[(run / "last.pt.sha256").read_text().split()[0]] = (fold, set(f.read().split()))
    for row in medium.itertuples():
        fold, trained = runs[row.model]  # the model that rendered it, by its checkpoint digest
        assert fold == row.fold == shards.fold_of(row.key, 2) and row.key not in trained
    # Every rendered image decodes, at the sample's size, and its record names model and fold.
    key = medium["key"].iloc[5]
    with tarfile.open(rendered / medium["shard"].iloc[5]) as tar:
        image = shards.decode(tar.extractfile(f"{key}.mq.png").read())
        record = json.loads(tar.extractfile(f"{key}.medium.json").read())
    assert image.shape == (64, 64, 3) and record["fold"] == shards.fold_of(key, 2) and record["model_sha256"] == medium["model"].iloc[5]
    # The build's own files were not rewritten: companions and two tables were added beside them.
    for path in paper_build.rglob("*"):
        if path.is_file() and path.name != ".perceive-ir.lock":
            assert (rendered / path.relative_to(paper_build)).read_bytes() == path.read_bytes(), path


def test_rendering_is_the_same_bytes_for_one_and_two_workers_and_resumes_after_a_kill(paper_build, medium_runs, rendered, tmp_path):
    one = tmp_path / "one"
    _copy_build(paper_build, one)
    render_medium(one, runs=medium_runs, workers=1, progress=False)
    reference = _companions(rendered)
    assert _companions(one) == reference
    # A kill: one shard's table missing, its tar cut short, a temporary file left; another shard untouched.
    tars = sorted(one.glob("*/*/shard-*.mq.tar"))
    tars[0].with_name(tars[0].name.replace(".tar", ".parquet")).unlink()
    tars[0].write_bytes(tars[0].read_bytes()[:700])
    (one / "medium.parquet").unlink()
    result = render_medium(one, runs=medium_runs, workers=2, progress=False)
    assert result.shards_skipped == result.shards - 1
    assert _companions(one) == reference
    # Another source into the same build is refused unless asked to overwrite.
    with pytest.raises(D.UserError, match="--overwrite"):
        render_medium(one, restorer=fold_dir(medium_runs, 0), workers=1, progress=False)


def test_a_fold_model_that_saw_its_fold_is_refused(paper_build, medium_runs, tmp_path):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(medium_runs, runs)
    leaked = min(k for k in shards.open_build(paper_build).manifest(["key"]).column("key").to_pylist() if shards.fold_of(k, 2) == 0)
    with gzip.open(runs / "fold-0" / TRAINED_KEYS, "at") as f:
        f.write(leaked + "\n")
    copy = tmp_path / "build"
    _copy_build(paper_build, copy)
    with pytest.raises(D.UserError, match=f"renders fold 0 but trained on 1 of its samples \\(first: {leaked}\\)"):
        render_medium(copy, runs=runs, workers=1, progress=False)


def test_mq_from_a_folder_of_images_named_by_key(paper_build, tmp_path):
    from PIL import Image

    copy = tmp_path / "build"
    _copy_build(paper_build, copy)
    keys = shards.open_build(copy).manifest(["key"], filters=[("tier", "=", "lq")]).column("key").to_pylist()
    folder = tmp_path / "restored"
    folder.mkdir()
    for i, key in enumerate(keys[1:]):  # the first sample has no restored image
        Image.fromarray(np.full((64, 64, 3), i % 256, np.uint8)).save(folder / f"{key}.png")
    result = render_medium(copy, folder=folder, workers=1, progress=False)
    assert result.rendered == len(keys) - 1 and result.errors == 1
    record = json.loads((copy / "medium.json").read_text())
    assert record["errors"][0]["key"] == keys[0] and "no restored image" in record["errors"][0]["reason"]
    medium = shards.open_build(copy).medium(["key", "model", "fold"]).to_pandas().set_index("key")
    data = (folder / f"{keys[1]}.png").read_bytes()
    assert medium.loc[keys[1], "model"] == hashlib.sha256(data).hexdigest() and np.isnan(medium.loc[keys[1], "fold"])


def test_the_loader_reads_mq_from_the_companions_and_asks_for_them_before(paper_build, rendered):
    with pytest.raises(D.UserError, match="render-medium"):
        make_loader(paper_build, mode="triplets", batch_size=4, crop=32, num_workers=0)
    loader = make_loader(rendered, mode="triplets", batch_size=4, crop=32, num_workers=2, augment=False)
    batch = next(iter(loader))
    assert batch["mq"].shape == batch["lq"].shape and loader.skipped == 0
    # The mq image is the rendered one: its stored score is the measured SSIM of the centre crop's sample.
    medium = shards.open_build(rendered).medium(["key", "score"]).to_pandas().set_index("key")
    assert batch["score_mq"].tolist() == pytest.approx(medium.loc[batch["key"], "score"].tolist(), abs=1e-6)
    assert not torch.equal(batch["mq"], batch["lq"])


def test_the_probe_set_is_stratified_and_its_threshold_is_the_models_mean_psnr(paper_build):
    keys = probe_keys(paper_build, "train", 5)
    rows = shards.open_build(paper_build).manifest(["key", "type", "psnr"], filters=[("split", "=", "train"), ("tier", "=", "lq")]).to_pandas()
    chosen = rows[rows["key"].isin(keys)]
    assert chosen.groupby("type").size().to_dict() == {t: 5 for t in ("blur", "haze", "noise")}
    for t, group in rows.groupby("type"):  # spread over the type's PSNR range, not its easiest samples
        picked = chosen[chosen["type"] == t]["psnr"]
        assert picked.min() <= group["psnr"].quantile(0.2) and picked.max() >= group["psnr"].quantile(0.8)
    cfg = {"data": {"source": str(paper_build), "split": "train", "batch_size": 4, "crop": 64, "types": ["noise"]}}
    probe = ProbeSet(cfg, 5)
    identity = torch.nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        identity.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        identity.bias.zero_()
    tau = probe.measure(identity)  # restoring nothing: tau is the mean input PSNR of the probe samples
    expected = rows[rows["key"].isin(probe.keys)]["psnr"].mean()
    assert len(probe.keys) == 5 and tau == pytest.approx(expected, abs=1e-3)


def test_presets_are_the_papers_recipes_and_name_their_stage():
    assert {"perceive-ir-3task", "perceive-ir-5task", "perceive-ir-perceiver", "perceive-ir-medium"} <= set(presets())
    three = resolve(get_stage("restorer").defaults(), "perceive-ir-3task", ["data.source=x"], stage="restorer")
    assert three["data"]["types"] == {"noise": 12, "haze": 1, "rain": 360}
    assert [three["loss"][k] for k in ("reconstruction", "contrastive", "quality", "perceptual")] == [1.0, 0.1, 0.05, 0.1]
    assert three["loss"]["perceptual_kind"] == "paper" and three["loss"]["temperature"] == 0.1
    assert three["loss"]["quality_logit_scale"] is False and three["data"]["crop"] == 256
    assert three["optim"]["lr"] == 2e-4 and three["optim"]["lr"] * three["optim"]["min_lr_ratio"] == pytest.approx(1e-6)
    five = resolve(get_stage("restorer").defaults(), "perceive-ir-5task", [], stage="restorer")
    assert five["data"]["types"] == {"noise": 12, "haze": 1, "rain": 360, "blur": 30, "low_light": 140}
    medium = resolve(get_stage("medium").defaults(), "perceive-ir-medium", [], stage="medium")
    assert medium["folds"]["folds"] == 2 and medium["optim"]["steps"] == 20000 and medium["model"]["sgm"] is False
    with pytest.raises(D.UserError, match="preset of the restorer stage"):
        resolve(get_stage("perceiver").defaults(), "perceive-ir-3task", [], stage="perceiver")


def test_a_restorer_with_the_papers_losses_trains_on_a_rendered_build(rendered, tmp_path):
    cfg = stage_config("restorer", tmp_path / "restorer", steps=3)
    cfg["model"].update(sgm=False)
    cfg["data"].update(source=str(rendered), crop=32, batch_size=4, num_workers=0)
    cfg["loss"].update(perceptual_kind="paper", perceptual_kwargs={}, probe_per_type=4, temperature=0.1, quality=0)
    cfg["run"]["device"] = "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train("restorer", cfg)
    rows = [json.loads(line) for line in (tmp_path / "restorer" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r["split"] == "train"]
    assert steps and all(r["perceptual"] > 0 for r in steps)
    assert all(r["probe_psnr"] > 0 for r in steps)  # the difficulty threshold was measured
    # Validation on a paper build restores lq only (its mq is a restoration, not an input).
    assert "val_psnr/noise/lq" in result and not any(k.endswith("/mq") for k in result)
    assert pq.read_table(rendered / "medium.parquet").num_rows > 0


def test_the_perceiver_learns_from_synchronised_triplets(rendered, tmp_path):
    from pipeline.train.stages.perceiver import PerceiverTask

    cfg = stage_config("perceiver", tmp_path / "perceiver", steps=2)
    cfg["data"].update(source=str(rendered), crop=32, batch_size=3, num_workers=0, mode="triplets")
    task = PerceiverTask(cfg, None)
    batch = next(iter(make_loader(rendered, mode="triplets", batch_size=3, crop=32, num_workers=0)))
    seen = []
    task.model.forward = lambda images: seen.append(images) or torch.zeros(len(images), 3)  # type: ignore[method-assign]
    task.loss(task.model, batch, torch.Generator())
    # One pass over lq, mq and hq of the same crops, labelled 0, 1, 2 in that order.
    assert torch.equal(seen[0], torch.cat([batch["lq"], batch["mq"], batch["hq"]]))
    cfg["run"]["device"] = "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train("perceiver", cfg)
    assert 0 <= result["tier_accuracy"] <= 1 and result["n"] > 0


def test_inspect_counts_the_rendered_mq(paper_build, rendered):
    before, after = shards.inspect(paper_build).counts(), shards.inspect(rendered).counts()
    assert before["mq"].sum() == 0 and (after["mq"] == after["hq"]).all() and (after["hq"] == before["hq"]).all()
