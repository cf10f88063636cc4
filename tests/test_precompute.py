"""`perceive-ir precompute`: ClearAIR's provider outputs computed once per stored image and read back by key."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

import degradations as D
import shards
from helpers import stage_config
from model import QualityPerceiver
from model.clearair import create_provider
from model.seeding import seeded_torch
from pipeline.cli import main
from pipeline.eval.metrics import to_tensor
from pipeline.precompute import CACHE_RECORD, ProviderCache, ProviderSpec, precompute
from pipeline.train.stages.restorer import RestorerTask

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def perceiver_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("perceiver") / "perceiver.safetensors"
    with seeded_torch(0), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        QualityPerceiver("perceive-ir-tiny", None, n_ctx=4).save(path)
    return str(path)


@pytest.fixture(scope="module")
def cache(small_build, perceiver_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("providers")
    spec = ProviderSpec.of("quality", "perceiver", {"perceiver": perceiver_file})
    result = precompute(small_build, [spec], out=out, workers=1, progress=False)
    return out, spec, result


def test_every_stored_lq_and_mq_image_has_the_providers_output_of_its_whole_patch(small_build, perceiver_file, cache):
    out, spec, result = cache
    build = shards.open_build(small_build)
    lq = build.manifest(["key", "shard"], filters=[("tier", "=", "lq")]).to_pylist()
    record = json.loads((out / spec.folder(("lq", "mq")) / CACHE_RECORD).read_text())
    assert record["images"] == result.images == 2 * len(lq) and record["tiers"] == ["lq", "mq"]
    provider = create_provider("quality", "perceiver", perceiver=perceiver_file)
    assert record["dims"] == {"quality": provider.dim}
    # One sample checked against the provider run here on its stored image.
    from pipeline.data.tar_stream import read_samples

    key, shard = lq[0]["key"], lq[0]["shard"]
    (_, members), = list(read_samples(str(small_build / shard), {key}, ("mq",)))
    expected = provider(to_tensor(shards.decode(members["mq"])))
    looked_up = ProviderCache(out).given([key], ["mq"], "cpu")["quality"]
    assert torch.allclose(looked_up, expected, atol=1e-5)


def test_other_tiers_are_another_cache_not_a_resume(small_build, cache):
    out, spec, result = cache
    assert spec.folder(("lq",)) != spec.folder(("lq", "mq"))  # a --tiers lq run never passes for lq and mq


def test_a_rerun_computes_only_the_missing_shards(small_build, cache):
    out, spec, result = cache
    parts = sorted((out / spec.folder(("lq", "mq"))).glob("*.parquet"))
    assert result.shards_skipped == 0 and len(parts) == result.shards
    parts[0].unlink()
    again = precompute(small_build, [spec], out=out, workers=1, progress=False)
    assert again.shards_skipped == result.shards - 1 and parts[0].is_file()


def test_a_model_of_another_configuration_or_a_training_cfe_is_refused(small_build, cache, perceiver_file, tmp_path):
    out, spec, _ = cache
    with pytest.raises(D.UserError, match="the quality cache holds perceiver"):
        ProviderCache(out).check("quality", "perceiver", {"perceiver": "other.safetensors"})
    with pytest.raises(D.UserError, match="cannot be precomputed"):
        precompute(small_build, [ProviderSpec.of("task", "cfe", {"perceiver": perceiver_file})], out=tmp_path, workers=1, progress=False)
    with pytest.raises(D.UserError, match="no finished provider cache|holds no"):
        ProviderCache(tmp_path)


def test_training_reads_the_cache_and_never_runs_the_provider(small_build, cache, perceiver_file, tmp_path):
    out, spec, _ = cache
    cfg = stage_config("clearair", tmp_path)
    cfg["model"]["clearair"].update(quality_kwargs={"perceiver": perceiver_file})
    cfg["data"]["provider_cache"] = str(out)
    keys = shards.open_build(small_build).manifest(["key"], filters=[("tier", "=", "lq")]).column("key").to_pylist()[:2]
    batch = {"lq": torch.rand(2, 3, 32, 32), "mq": torch.rand(2, 3, 32, 32), "hq": torch.rand(2, 3, 32, 32),
             "type": ["noise", "haze"], "key": keys}
    with seeded_torch(0):
        task = RestorerTask(cfg, None, torch.device("cpu"))

    def fail(images):
        raise AssertionError("the quality provider ran although its outputs are cached")

    task.model.quality_provider.forward = fail
    seen = {}
    forward = task.model.forward

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return forward(*args, **kwargs)

    task.model.forward = spy
    loss, logged = task.loss(task.model.train(), batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and "internal" in logged
    # Each sample's embedding is the one of the tier it was given as input (lq or mq, drawn per sample).
    pick_mq = (torch.rand(2, generator=torch.Generator().manual_seed(0)) < 0.5).tolist()
    tiers = ["mq" if p else "lq" for p in pick_mq]
    assert torch.equal(seen["quality"], ProviderCache(out).given(keys, tiers, "cpu")["quality"])
    assert not torch.equal(seen["quality"], ProviderCache(out).given(keys, ["hq" if False else ("lq" if t == "mq" else "mq") for t in tiers], "cpu")["quality"])
    cfg["model"]["clearair"]["quality_kwargs"] = {"perceiver": perceiver_file, "n_ctx": 8}
    with pytest.raises(D.UserError, match="the model names perceiver"):
        RestorerTask(cfg, None, torch.device("cpu"))


def test_precompute_cli_names_the_setting_to_train_with(small_build, perceiver_file, tmp_path, capsys):
    out = tmp_path / "cache"
    code = main(["precompute", str(small_build), "--quality", "perceiver", "--quality-arg", f"perceiver={perceiver_file}",
                 "--tiers", "lq", "-o", str(out), "--workers", "1", "--quiet"])
    assert code == 0
    assert f"data.provider_cache={out}" in capsys.readouterr().out
    assert main(["precompute", str(small_build), "--quality", "perceiver", "--quality-arg", "perceiver", "-o", str(out)]) == 2
