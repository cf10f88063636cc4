"""Streaming loaders over small hand-written shards: balance across ranks, determinism, resume,
aligned crops, damaged shards, synth mode, the shard-count error."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import tarfile
import warnings
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

import degradations as D
import shards.format as F
from degradations.tiers import TypeCurve
from helpers import find_window
from pipeline import ShardProblemWarning, make_loader
from pipeline.data.tar_stream import CacheError
from shards.files import shard_writer
from shards.manifest import merge_manifests, write_errors, write_shard_manifest

# Uneven shards on purpose: 24 noise + 17 rain samples in 8 shards.
LAYOUT = {"noise": [7, 3, 5, 1, 8], "rain": [6, 2, 9]}
SIDE, CROP = 24, 16
SHIFT = {"hq": 0, "mq": 10, "lq": 20}  # every tier is the clean patch plus a constant


def clean_patch(key: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng(seed).integers(0, 200, (SIDE, SIDE, 3), dtype=np.uint8)


def severity_of(key: str, tier: str) -> float:
    """Distinct labels per sample and tier, to check labels travel with their images."""
    return round(int(hashlib.blake2b(f"{key}/{tier}".encode(), digest_size=2).hexdigest(), 16) / 65536, 4)


def write_build(root: Path, layout: dict[str, list[int]] = LAYOUT, split: str = "train",
                calibration: D.Calibration | None = None) -> list[str]:
    """A finished build written through the format module and the builder's own writers, with
    hand-made pixels and labels; returns the keys."""
    keys, manifests = [], []
    for type_name, sizes in layout.items():
        for s, n in enumerate(sizes):
            stem = F.shard_stem(split, type_name, s)
            (root / stem).parent.mkdir(parents=True, exist_ok=True)
            rows = []
            with shard_writer(root / f"{stem}.tar") as add:
                for i in range(n):
                    key = f"{type_name}-s{s}-{i:03d}"
                    keys.append(key)
                    clean = clean_patch(key)
                    for tier in F.MEMBER_TIERS:
                        data = cv2.imencode(".png", np.ascontiguousarray((clean + SHIFT[tier])[:, :, ::-1]))[1].tobytes()
                        member = F.member_name(key, tier, "png")
                        add(member, data)
                        rows.append({
                            "key": key, "split": split, "type": type_name, "tier": tier,
                            "severity": severity_of(key, tier), "score": 1.0 - severity_of(key, tier), "psnr": None,
                            "shard": f"{stem}.tar", "member": member, "width": SIDE, "height": SIDE,
                            "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "source": "test",
                        })
                    add(F.record_member(key), json.dumps({"key": key}).encode())
            write_shard_manifest(rows, [], root / f"{stem}.parquet")
            manifests.append(root / f"{stem}.parquet")
    merge_manifests(manifests, root / F.MANIFEST)
    write_errors([], root / F.ERRORS)
    config = {"types": list(layout), "splits": {split: 1.0}}
    record = F.make_record(config, list(layout), "png", calibration or D.default_calibration(), {"count": 0}, "test", "test")
    F.write_record(root, {**record, "counts": {"samples": len(keys)}})
    return keys


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("build")
    return root, write_build(root)


def loader(root, **kw):
    args = dict(mode="triplets", batch_size=4, crop=CROP, num_workers=0, rank=0, world_size=1, seed=5)
    return make_loader(root, **{**args, **kw})


def epoch_batches(ld) -> list[dict]:
    return list(ld)


def same(a: list[dict], b: list[dict]) -> bool:
    """Equal keys and bytewise equal tensors, batch by batch."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x.keys() != y.keys():
            return False
        for k in x:
            if isinstance(x[k], torch.Tensor):
                if x[k].dtype != y[k].dtype or x[k].shape != y[k].shape or x[k].numpy().tobytes() != y[k].numpy().tobytes():
                    return False
            elif x[k] != y[k]:
                return False
    return True


def keys_of(batches: list[dict]) -> list[str]:
    return [k for b in batches for k in b["key"]]


def test_uneven_shards_two_ranks_equal_disjoint_and_covering(build):
    root, keys = build
    n, world, bs = len(keys), 2, 4
    seen = []
    for epoch in range(3):
        per_rank = []
        for rank in range(world):
            ld = loader(root, rank=rank, world_size=world, batch_size=bs, epoch=epoch)
            batches = epoch_batches(ld)
            assert len(ld) == len(batches) == n // (world * bs)  # 41 // 8 = 5, on every rank
            assert all(len(b["key"]) == bs and b["lq"].shape == (bs, 3, CROP, CROP) for b in batches)
            per_rank.append(keys_of(batches))
        a, b = per_rank
        assert len(set(a)) == len(a) and len(set(b)) == len(b)
        assert not set(a) & set(b)
        assert set(a) | set(b) <= set(keys)
        dropped = set(keys) - set(a) - set(b)
        assert len(dropped) == n - world * bs * (n // (world * bs)) <= world * bs  # at most one batch per rank
        seen.append(dropped)
    assert len({frozenset(d) for d in seen}) > 1  # a different remainder each epoch


def test_same_batches_across_runs_and_workers_new_order_next_epoch(build):
    root, _ = build
    ref = [epoch_batches(loader(root, epoch=e)) for e in (0, 1)]
    assert same(ref[0], epoch_batches(loader(root, epoch=0)))
    assert keys_of(ref[0]) != keys_of(ref[1])  # next epoch: another order
    assert not torch.equal(ref[0][0]["hq"], ref[1][0]["hq"])
    workers = loader(root, num_workers=2)
    got = [epoch_batches(workers), epoch_batches(workers)]  # the loader moves on to epoch 1 by itself
    assert same(got[0], ref[0])
    assert same(got[1], ref[1])  # epoch 1 reached the workers
    other_seed = epoch_batches(loader(root, seed=6))
    assert keys_of(other_seed) != keys_of(ref[0])


def test_resume_gives_the_remaining_batches_exactly(build):
    root, _ = build
    full = epoch_batches(loader(root, epoch=2))
    for workers in (0, 2):
        first = loader(root, epoch=2, num_workers=workers)
        taken = []
        for batch in first:
            taken.append(batch)
            if len(taken) == 3:
                break
        state = first.state_dict()
        assert state["epoch"] == 2 and state["batches_done"] == 3
        assert same(taken, full[:3])
        resumed = loader(root, num_workers=workers)
        resumed.load_state_dict(state)
        resumed.set_epoch(2)  # what a training loop does after restoring: keeps the position
        assert same(epoch_batches(resumed), full[3:])
        assert resumed.state_dict()["epoch"] == 3 and resumed.state_dict()["batches_done"] == 0
    with pytest.raises(ValueError, match="batch_size"):
        loader(root, batch_size=2).load_state_dict(state)


def test_kept_workers_follow_the_position_across_epochs_breaks_and_jumps(build):
    root, _ = build
    bs = 3  # 41 // 3 = 13 batches: odd, so worker 0 of 2 starts the next epoch with batch 1, not 0
    ref = {e: epoch_batches(loader(root, batch_size=bs, epoch=e)) for e in (0, 1, 4)}
    assert len(ref[0]) % 2 == 1
    ld = loader(root, batch_size=bs, num_workers=2)
    taken = []
    for batch in ld:  # the caller stops mid-epoch; the workers' prefetched batches stay due
        taken.append(batch)
        if len(taken) == 5:
            break
    assert same(taken + epoch_batches(ld), ref[0])
    assert same(epoch_batches(ld), ref[1])  # on into epoch 1 without restarting the workers
    ld.set_epoch(4)  # a jump restarts the workers at the new position
    assert same(epoch_batches(ld), ref[4])
    ld.load_state_dict({**ld.state_dict(), "epoch": 1, "batches_done": 6})  # so does a restored state
    assert same(epoch_batches(ld), ref[1][6:])
    next(iter(ld))
    ld.rewind(0)  # and a rewind from mid-epoch
    assert same(epoch_batches(ld), ref[0])


def test_a_killed_worker_fails_the_epoch_then_fresh_workers_go_on(build):
    root, _ = build
    ref = epoch_batches(loader(root))
    ld = loader(root, num_workers=2)
    batches = iter(ld)
    taken = [next(batches), next(batches)]
    worker = ld._workers._iterator._workers[0]  # torch's own record of its worker processes
    with pytest.raises(RuntimeError, match="killed by signal|exited unexpectedly|worker process died"):
        os.kill(worker.pid, signal.SIGKILL)  # as the kernel's OOM killer would
        for batch in batches:  # torch notices at once (SIGCHLD) or within its 5 s status check
            taken.append(batch)
    assert same(taken + epoch_batches(ld), ref)  # the rest of the epoch, from new workers


def test_every_validation_pass_sees_the_same_batches(build):
    from pipeline.eval.shards import first_batches as _batches

    root, _ = build
    ld = loader(root)
    first = keys_of(list(_batches(ld, 2)))
    assert keys_of(list(_batches(ld, 2))) == first  # not the two after them
    list(ld)  # the loader moved on to another epoch
    assert keys_of(list(_batches(ld, 0)))[:8] == first


def test_crops_and_flips_aligned_across_tiers(build):
    root, _ = build
    boxes, flips = set(), set()
    for epoch in (0, 1):
        for batch in loader(root, epoch=epoch):
            for i, key in enumerate(batch["key"]):
                px = {t: (batch[t][i].permute(1, 2, 0).numpy() * 255).round().astype(np.int16) for t in ("lq", "mq", "hq")}
                assert (px["lq"] - px["hq"] == 20).all() and (px["mq"] - px["hq"] == 10).all()
                found = find_window(clean_patch(key), px["hq"].astype(np.uint8))
                assert found is not None, f"{key}: the crop is no window of the stored patch"
                boxes.add(found[:2])
                flips.add(found[2:])
                assert batch["severity"][i].item() == pytest.approx(severity_of(key, "lq"), abs=1e-6)
                assert batch["severity_mq"][i].item() == pytest.approx(severity_of(key, "mq"), abs=1e-6)
                assert batch["type"][i] == key.split("-")[0]
    assert len(boxes) > 10 and len(flips) == 4


def test_tiers_mode_balanced_labels_match_images(build):
    root, _ = build
    batches = epoch_batches(loader(root, mode="tiers", batch_size=6))
    for batch in batches:
        assert sorted(batch["tier"].tolist()) == [0, 0, 1, 1, 2, 2]
        for i, key in enumerate(batch["key"]):
            tier = D.TIERS[int(batch["tier"][i])]
            px = (batch["image"][i].permute(1, 2, 0).numpy() * 255).round().astype(np.int16) - SHIFT[tier]
            assert find_window(clean_patch(key), px.astype(np.uint8)) is not None
            assert batch["severity"][i].item() == pytest.approx(severity_of(key, tier), abs=1e-6)


def damage(root: Path, tmp: Path) -> tuple[Path, set[str]]:
    """A copy of the build with one shard truncated mid-sample and one member overwritten; the lost keys."""
    out = tmp / "damaged"
    shutil.copytree(root, out)
    lost = set()
    tar_path = out / "train/noise/shard-000004.tar"  # 8 samples
    with tarfile.open(tar_path) as tar:
        members = tar.getmembers()
    cut = members[13].offset_data + 5  # inside the 4th sample's second image
    for m in members:
        if m.name.endswith(".png") and m.offset_data + m.size > cut:
            lost.add(m.name.split(".")[0])
    with open(tar_path, "r+b") as f:
        f.truncate(cut)
    bad = out / "train/rain/shard-000000.tar"
    with tarfile.open(bad) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(".lq.png"))
    with open(bad, "r+b") as f:
        f.seek(member.offset_data)
        f.write(b"\0" * member.size)
    lost.add(member.name.split(".")[0])
    return out, lost


def test_damaged_shards_skipped_counted_warned_once_stream_goes_on(build, tmp_path):
    root, _ = build
    damaged, lost = damage(root, tmp_path)
    assert len(lost) == 6
    for rank in (0, 1):
        healthy = epoch_batches(loader(root, rank=rank, world_size=2))
        ld = loader(damaged, rank=rank, world_size=2)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = epoch_batches(ld)
        assert len(got) == len(healthy) == len(ld)  # equal counts: DDP cannot hang
        expected = 0
        for healthy_batch, got_batch in zip(healthy, got):
            want, have = keys_of([healthy_batch]), keys_of([got_batch])
            good = [k for k in want if k not in lost]
            for i, key in enumerate(want):
                if key not in lost:
                    assert have[i] == key
                    continue
                expected += 1
                before = [k for k in want[:i] if k not in lost]
                # a repeat of the nearest good sample before it in its own batch, else the batch's first good one
                assert have[i] == (before[-1] if before else good[0]) if good else have[i] not in lost
        assert ld.skipped == expected
        if rank == 0:  # the substitutes do not depend on the number of workers
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ShardProblemWarning)
                assert keys_of(epoch_batches(loader(damaged, rank=0, world_size=2, num_workers=2))) == keys_of(got)
        shard_warnings = [w for w in caught if issubclass(w.category, ShardProblemWarning)]
        assert len(shard_warnings) == len(ld.problems) == len({u for u in ld.problems})
        assert all("shard-000004" in u or "rain/shard-000000" in u for u in ld.problems)
        if expected:
            assert shard_warnings
    # together the ranks meet both damaged shards and replace each lost sample they were to yield
    both = [loader(damaged, rank=r, world_size=2, batch_size=1) for r in (0, 1)]
    planned = set()
    for r, ld in enumerate(both):
        planned |= set(keys_of(epoch_batches(loader(root, rank=r, world_size=2, batch_size=1))))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ShardProblemWarning)
            epoch_batches(ld)
    assert sum(ld.skipped for ld in both) == len(lost & planned) >= 5
    assert {Path(u).parent.name for ld in both for u in ld.problems} == {"noise", "rain"}


def test_synth_mode_reproducible_from_its_seed(build):
    root, _ = build
    a = epoch_batches(loader(root, mode="synth", seed=3))
    assert same(a, epoch_batches(loader(root, mode="synth", seed=3)))
    b = epoch_batches(loader(root, mode="synth", seed=4))
    assert not torch.equal(a[0]["lq"], b[0]["lq"])
    ranges = D.default_calibration()
    for batch in a:
        assert not torch.equal(batch["lq"], batch["hq"])
        for i, key in enumerate(batch["key"]):
            clean = (batch["hq"][i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            assert find_window(clean_patch(key), clean) is not None  # degraded from the stored clean patch
            type_name = batch["type"][i]
            lo = min(ranges.severity_range(type_name, t)[0] for t in ("mq", "lq"))
            hi = max(ranges.severity_range(type_name, t)[1] for t in ("mq", "lq"))
            assert lo <= batch["severity"][i].item() <= hi
            lq = (batch["lq"][i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            assert batch["score"][i].item() == pytest.approx(D.ssim(clean, lq), abs=1e-5)
            assert int(batch["tier"][i]) == D.TIERS.index(D.tier_of(batch["score"][i].item()))


def test_synth_mode_grades_with_the_builds_metric_and_ranges(tmp_path):
    bands = {"hq": (40.0, float("inf")), "mq": (30.0, 40.0), "lq": (12.0, 30.0)}  # not the default PSNR bands
    ranges = {"noise": {"hq": [0.0, 0.1], "mq": [0.3, 0.31], "lq": None}, "rain": {"hq": None, "mq": None, "lq": [0.8, 0.81]}}
    curves = {t: TypeCurve([0.0, 1.0], [100.0, 20.0], [0.0, 1.0], r) for t, r in ranges.items()}
    psnr_build = tmp_path / "psnr"
    write_build(psnr_build, calibration=D.Calibration("psnr", bands, curves))
    tiers = set()
    for batch in epoch_batches(loader(psnr_build, mode="synth")):
        for i, type_name in enumerate(batch["type"]):
            lo, hi = ranges[type_name]["mq" if type_name == "noise" else "lq"]
            assert lo <= batch["severity"][i].item() <= hi  # drawn in the build's ranges
            clean, lq = ((batch[t][i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for t in ("hq", "lq"))
            score = batch["score"][i].item()
            assert score == pytest.approx(D.psnr(clean, lq), rel=1e-5)
            tier = D.tier_of(score, "psnr", {t: tuple(b) for t, b in bands.items()})
            assert int(batch["tier"][i]) == D.TIERS.index(tier)
            tiers.add(tier)
    assert len(tiers) > 1


def test_too_few_shards_is_an_error_unless_resampled(tmp_path):
    write_build(tmp_path, {"noise": [9, 4], "rain": [7]})
    with pytest.raises(ValueError, match=r"3 shards for 2 ranks x 2 workers = 4"):
        loader(tmp_path, rank=0, world_size=2, num_workers=2)
    counts = []
    for rank in (0, 1):
        ld = loader(tmp_path, rank=rank, world_size=2, num_workers=2, resampled=True, batch_size=2)
        batches = epoch_batches(ld)
        counts.append(len(batches))
        assert len(batches) == len(ld) == 20 // 4
    assert counts[0] == counts[1]


def test_url_list_source_matches_the_root(build, monkeypatch):
    root, _ = build
    tars = sorted(str(p) for p in root.glob("train/*/*.tar"))
    ref = epoch_batches(loader(root))
    assert same(epoch_batches(loader(tars[::-1])), ref)  # the order of the URLs does not matter
    assert same(epoch_batches(loader([f"pipe:cat {t}" for t in tars])), ref)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    from_env = make_loader(root, mode="triplets", batch_size=4, crop=CROP, num_workers=0, seed=5)
    assert same(epoch_batches(from_env), epoch_batches(loader(root, rank=1, world_size=2)))


def test_cache_dir_downloads_each_remote_shard_once_per_machine(build, tmp_path):
    root, _ = build
    tars = sorted(str(p) for p in root.glob("train/*/*.tar"))
    log = tmp_path / "fetches.log"
    fetch = tmp_path / "fetch.sh"  # a stand-in for `aws s3 cp`: logs what it streams
    fetch.write_text(f'echo "$1" >> {log}\ncat "$1"\n')
    urls = [f"pipe:sh {fetch} {t}" for t in tars]  # the manifest beside each: pipe:sh fetch.sh X.parquet

    def downloads() -> list[str]:
        return [line for line in log.read_text().split() if line.endswith(".tar")]

    ref = [epoch_batches(loader(root, rank=r, world_size=2)) for r in (0, 1)]
    assert same(epoch_batches(loader(urls, rank=0, world_size=2, num_workers=2)), ref[0])
    assert len(downloads()) > len(set(downloads()))  # without a cache, both workers stream the rank's shards
    log.unlink()
    cache = tmp_path / "cache"
    for rank in (0, 1):  # two ranks and two workers each on one machine
        assert same(epoch_batches(loader(urls, rank=rank, world_size=2, num_workers=2, cache_dir=cache)), ref[rank])
    assert sorted(downloads()) == sorted(set(downloads())) == sorted(tars)  # each shard once
    assert sorted(p.suffix for p in cache.iterdir()) == [".lock"] * len(tars) + [".tar"] * len(tars)
    epoch_batches(loader(urls, cache_dir=cache))
    assert len(downloads()) == len(tars)  # a later run reads the cache
    rebuilt = Path(tars[0]).with_suffix(".parquet")  # the shard rebuilt at its URL: its manifest changes
    pq.write_table(pq.read_table(rebuilt), rebuilt, compression="gzip")
    epoch_batches(loader(urls, cache_dir=cache))
    assert downloads().count(tars[0]) == 2 and len(downloads()) == len(tars) + 1
    for exit_code in (1, 0):  # a download that breaks off, with an error or (curl without -f) without
        cut = tmp_path / f"cut{exit_code}.sh"
        cut.write_text(f'case "$1" in *.tar) head -c 5000 "$1"; exit {exit_code};; *) cat "$1";; esac\n')
        broken = [f"pipe:sh {cut} {t}" if i == 0 else u for i, (t, u) in enumerate(zip(tars, urls))]
        ld = make_loader(broken, mode="triplets", batch_size=4, crop=CROP, num_workers=0, rank=0, world_size=1, seed=5,
                         cache_dir=cache)
        with pytest.warns(ShardProblemWarning):
            assert len(epoch_batches(ld)) == len(ref[0]) * 2  # a failed download is a damaged shard
        assert ld.skipped > 0  # and it is not cached: only whole shards and their locks are there
        assert sorted({p.suffix for p in cache.iterdir()}) == [".lock", ".tar"] and not list(cache.glob(".*"))
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(CacheError, match="cannot use the shard cache"):  # fatal, not a damaged shard
        epoch_batches(loader(urls, cache_dir=not_a_dir))


def test_url_list_refuses_repeats_and_shards_of_two_builds(build, tmp_path):
    root, _ = build
    tars = sorted(root.glob("train/*/*.tar"))
    with pytest.raises(ValueError, match="listed more than once"):
        loader([str(tars[0]), str(tars[0])])
    copy = tmp_path / "other_build" / tars[0].relative_to(root)
    copy.parent.mkdir(parents=True)
    for suffix in (".tar", ".parquet"):
        shutil.copy(tars[0].with_suffix(suffix), copy.with_suffix(suffix))
    with pytest.raises(ValueError, match="must come from one build"):
        loader([str(tars[0]), str(copy)])


def test_a_new_mode_is_one_registered_class(build, monkeypatch):
    from pipeline.data import MODES, Mode, register_mode

    class CleanOnly(Mode):
        """hq alone, with the mean brightness of the crop as a label."""

        name = "clean_only"
        reads = ("hq",)

        def make(self, entry, images, draw):
            return {"hq": images["hq"], "brightness": float(images["hq"].mean())}

    monkeypatch.setitem(MODES, "clean_only", CleanOnly)  # as @register_mode would, undone after the test
    assert register_mode(CleanOnly) is CleanOnly
    root, _ = build
    batches = epoch_batches(loader(root, mode="clean_only"))
    triplets = epoch_batches(loader(root))
    assert [b["key"] for b in batches] == [b["key"] for b in triplets]  # the plan does not depend on the mode
    for got, ref in zip(batches, triplets):
        assert set(got) == {"key", "type", "hq", "brightness"} and torch.equal(got["hq"], ref["hq"])
        assert got["brightness"].dtype == torch.float32
        assert torch.allclose(got["brightness"], ref["hq"].mean(dim=(1, 2, 3)) * 255, atol=1e-3)
    with pytest.raises(ValueError, match="unknown mode 'nope'; modes are pairs, triplets, tiers, synth"):
        loader(root, mode="nope")


@pytest.mark.parametrize("batch_size", [1, 4, 7, 41, 64])
def test_evaluation_reads_every_sample_exactly_once_whatever_the_batch_size(build, batch_size):
    from pipeline.eval.shards import evaluate_perceiver, split_loader

    root, keys = build
    ld = split_loader(root, "train", batch_size, None)
    batches = epoch_batches(ld)
    assert len(batches) == len(ld) == -(-len(keys) // batch_size)
    assert sorted(keys_of(batches)) == sorted(keys)  # 41 samples: the last batch is partial
    assert same(batches, epoch_batches(split_loader(root, "train", batch_size, None)))

    class Darkness(torch.nn.Module):  # calls a brighter image a better one
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(10.0))

        def forward(self, x):
            return self.scale * torch.stack([-x.mean((1, 2, 3)), torch.zeros(len(x)), x.mean((1, 2, 3))], dim=1)

    result = evaluate_perceiver(Darkness(), ld)
    assert result["n"] == 3 * len(keys)
    with pytest.raises(ValueError, match="drop_last=False reads every sample once in one process"):
        make_loader(root, batch_size=4, crop=None, num_workers=0, rank=0, world_size=2, drop_last=False)


GUARDLESS = """
import sys
from pipeline import make_loader

loader = make_loader({root!r}, mode="triplets", batch_size=4, crop=16, num_workers={workers}, seed=5)
keys = [k for batch in loader for k in batch["key"]]
print("rank", loader.rank, "keys", len(keys), "first", keys[0])
"""


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_a_script_without_a_main_guard_reads_with_any_number_of_workers(build, tmp_path, workers):
    import subprocess
    import sys

    root, _ = build
    script = tmp_path / "read.py"
    script.write_text(GUARDLESS.format(root=str(root), workers=workers))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ref = epoch_batches(loader(root))
    assert done.stdout.split() == ["rank", "0", "keys", str(4 * len(ref)), "first", ref[0]["key"][0]]


def test_a_guardless_script_under_torchrun_reads_each_ranks_share(build, tmp_path):
    import subprocess
    import sys

    root, _ = build
    script = tmp_path / "read.py"
    script.write_text(GUARDLESS.format(root=str(root), workers=1))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone", str(script)]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = sorted(line.split() for line in done.stdout.splitlines() if line.startswith("rank"))
    assert [line[:2] for line in lines] == [["rank", "0"], ["rank", "1"]]
    for rank, line in enumerate(lines):
        ref = epoch_batches(loader(root, rank=rank, world_size=2))
        assert line[2:] == ["keys", str(4 * len(ref)), "first", ref[0]["key"][0]]


OWNER = """
from pipeline import make_loader

loader = make_loader({root!r}, mode="triplets", batch_size=4, crop=16, num_workers=2, seed=5)
next(iter(loader))
print("reading", flush=True)
import time; time.sleep(300)
"""


def _descendants(pid: int) -> list[int]:
    import subprocess

    children = [int(c) for c in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]
    return children + [d for c in children for d in _descendants(c)]


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_killing_the_loaders_process_leaves_no_worker_or_forkserver_behind(build, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    root, _ = build
    script = tmp_path / "read.py"
    script.write_text(OWNER.format(root=str(root)))
    owner = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "reading"
        helpers = _descendants(owner.pid)
        assert len(helpers) >= 3  # the forkserver and two workers (and torch's resource tracker)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    deadline = time.monotonic() + 30
    while any(_running(p) for p in helpers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in helpers if _running(p)]


def _rewrite_members(tar_path: Path, change) -> str:
    """Rewrite a shard with `change(members)` applied to its first sample's {suffix: bytes}; that sample's key."""
    import io

    with tarfile.open(tar_path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    key = members[0][0].name.split(".")[0]
    first = {m.name.split(".", 1)[1]: data for m, data in members if m.name.split(".")[0] == key}
    change(first)
    with tarfile.open(tar_path, "w") as tar:
        for m, data in members:
            if m.name.split(".")[0] == key:
                data = first[m.name.split(".", 1)[1]]
            m.size = len(data)
            tar.addfile(m, io.BytesIO(data))
    return key


def test_swapped_members_a_bomb_member_and_a_fifo_shard_are_refused_and_reported(build, tmp_path):
    import cv2

    root, _ = build
    out = tmp_path / "b"
    shutil.copytree(root, out)

    def swap(first):
        first["hq.png"], first["lq.png"] = first["lq.png"], first["hq.png"]

    def bomb(first):  # a 4000 x 4000 PNG where a small patch belongs: 48 MB once decoded
        first["lq.png"] = cv2.imencode(".png", np.zeros((4000, 4000, 3), np.uint8))[1].tobytes()

    swapped = _rewrite_members(out / "train/noise/shard-000000.tar", swap)
    bombed = _rewrite_members(out / "train/rain/shard-000000.tar", bomb)
    fifo = out / "train/rain/shard-000001.tar"
    fifo.unlink()
    os.mkfifo(fifo)  # reading it would block for ever
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShardProblemWarning)
        ld = loader(out)
        seen = keys_of(epoch_batches(ld))
        unverified = loader(out, verify=False)
        epoch_batches(unverified)
    assert swapped not in seen and bombed not in seen
    problems = " | ".join(ld.problems.values())
    assert "not the one the manifest lists (SHA-256)" in problems and "not a regular file" in problems
    # Without digests the swap goes through, but the bomb is still refused from its header.
    assert "is 4000x4000, the manifest says" in " | ".join(unverified.problems.values())


def test_a_member_header_beyond_pillows_own_limit_is_still_measured():
    import struct
    import zlib

    from shards import image_size

    # A PNG header claiming 20000 x 10000 (200 MP, past Pillow's 179 MP error): read, not decoded.
    ihdr = struct.pack(">IIBBBBB", 20000, 10000, 8, 2, 0, 0, 0)
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    assert image_size(png) == (20000, 10000)
