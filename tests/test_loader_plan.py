"""The epoch plan alone (no I/O): even ranks for any shard sizes, windows, type weights, resampling."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data.catalog import Catalog
from pipeline.data.epoch_plan import PlanSpec, batches_per_epoch, check_spec, plan_epoch


def catalog(layout: dict[str, list[int]]) -> Catalog:
    types = tuple(sorted(layout))
    shard_type, counts = [], []
    for t in types:
        shard_type += [types.index(t)] * len(layout[t])
        counts += layout[t]
    n = sum(counts)
    return Catalog(
        split="train", types=types,
        shard_paths=tuple(f"train/{t}/shard-{i:06d}.tar" for t in types for i in range(len(layout[t]))),
        shard_urls=tuple(f"/x/{t}/{i}.tar" for t in types for i in range(len(layout[t]))),
        shard_type=np.array(shard_type), shard_start=np.concatenate([[0], np.cumsum(counts)]),
        keys=np.array([f"k{i}" for i in range(n)], dtype=object),
        severity=np.zeros((n, 3), np.float32), score=np.zeros((n, 3), np.float32), sizes=np.full((n, 2), 64),
    )


def spec(cat: Catalog, world: int, batch: int, window: int = 0, **kw) -> PlanSpec:
    return PlanSpec(seed=1, world_size=world, batch_size=batch, shuffle_window=window, types=cat.types, **kw)


@pytest.mark.parametrize("world,batch", [(1, 1), (2, 3), (3, 4), (4, 2), (5, 5), (8, 1)])
def test_any_shard_sizes_give_equal_disjoint_ranks_dropping_under_a_batch_each(world, batch):
    draw = np.random.default_rng(world * 10 + batch)
    for trial in range(5):
        cat = catalog({t: draw.integers(1, 30, draw.integers(1, 6)).tolist() for t in ("a", "b", "c")[: trial % 3 + 1]})
        s = spec(cat, world, batch, window=batch * 3)
        if cat.samples < world * batch:
            with pytest.raises(ValueError, match="no rank gets a batch"):
                check_spec(cat, s)
            continue
        for epoch in (0, 1):
            plans = [plan_epoch(cat, s, epoch, r) for r in range(world)]
            assert {p.batches for p in plans} == {batches_per_epoch(cat, s)}
            ids = np.concatenate([p.sample for p in plans])
            assert len(np.unique(ids)) == len(ids)  # disjoint, each once
            assert 0 <= cat.samples - len(ids) <= world * batch  # at most one batch per rank unread
            for p in plans:
                window = p.read_order // (batch * 3)
                assert (window == np.arange(len(p.sample)) // (batch * 3)).all()  # shuffled within windows only
                assert (p.repeat == 0).all()
            again = plan_epoch(cat, s, epoch, world - 1)
            assert (again.sample == plans[-1].sample).all()


def test_ranks_read_contiguous_runs_of_few_shards():
    cat = catalog({"a": [10] * 8, "b": [10] * 8})
    s = spec(cat, world=4, batch=4)
    for rank in range(4):
        p = plan_epoch(cat, s, 0, rank)
        assert len(set(p.visit_shard.tolist())) <= 6  # a quarter of each type's 8 shards, plus boundaries


def test_weights_oversample_by_repeat_factor_and_reread_parts():
    cat = catalog({"rain": [20, 20], "noise": [100, 100, 100, 100]})
    s = spec(cat, world=2, batch=8, weights=(1.0, 20.0))  # types sorted: noise, rain
    p = plan_epoch(cat, s, 0, 0)
    is_rain = np.isin(p.sample, np.arange(400, 440))
    share = is_rain.mean()
    assert share == pytest.approx(20 * 40 / (20 * 40 + 400), abs=0.05)
    assert p.repeat[is_rain].max() >= 5  # the rank's 20 rain samples read many times
    ids, counts = np.unique(p.sample[is_rain], return_counts=True)
    assert len(ids) == 20 and counts.max() - counts.min() <= 1  # passes: each sample once per pass
    other = plan_epoch(cat, s, 0, 1)
    assert not set(p.sample.tolist()) & set(other.sample.tolist())  # ranks stay disjoint
    assert p.batches == other.batches == 440 // 16


def test_resampled_has_a_fixed_length_for_any_shard_count():
    cat = catalog({"a": [5], "b": [3]})
    s = spec(cat, world=4, batch=1, resampled=True)
    plans = [plan_epoch(cat, s, 3, r) for r in range(4)]
    assert {p.batches for p in plans} == {2}
    assert all(p.visit_shard.max() < 2 for p in plans)
