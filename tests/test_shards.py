"""`perceive-ir build` end to end: shards read back without project code, reproducibility, resume, bad input.

Every build here uses the same small config (64 px patches, a few per photo,
3 samples per shard, so there are dozens of shards), and every other build is
compared byte for byte with the reference one, built with 2 workers.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image

import shards
from helpers import SMALL_BUILD, SMALL_BUILD_ARGS
from pipeline.cli import main

CONFIG, CLI_ARGS = SMALL_BUILD, SMALL_BUILD_ARGS
SLOTS = ("hq", "mq", "lq")


@pytest.fixture
def reference(small_build: Path) -> Path:
    """The build every other build here is compared with, byte for byte."""
    return small_build


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_same_tree(a: Path, b: Path) -> None:
    ta, tb = tree(a), tree(b)
    assert sorted(ta) == sorted(tb)
    differ = [name for name in ta if ta[name] != tb[name]]
    assert not differ, f"files differ: {differ[:5]}"


def read_image(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


# --- read back with plain webdataset / tarfile / pyarrow: no project code -----------------------------


def test_webdataset_reads_every_sample_with_all_tiers(reference):
    tars = sorted(str(p) for p in reference.glob("*/*/shard-*.tar"))
    samples = list(wds.WebDataset(tars, shardshuffle=False, empty_check=False))
    assert samples
    for sample in samples:
        assert {"hq.png", "mq.png", "lq.png", "json"} <= set(sample), sample["__key__"]
        record = json.loads(sample["json"])
        assert record["key"] == sample["__key__"]
        images = [read_image(sample[f"{s}.png"]) for s in SLOTS]
        assert images[0].shape == images[1].shape == images[2].shape == (64, 64, 3)
        assert not np.array_equal(images[0], images[1]) and not np.array_equal(images[0], images[2])
    keys = [s["__key__"] for s in samples]
    assert len(set(keys)) == len(keys)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", k) for k in keys)
    manifest = pq.read_table(reference / "manifest.parquet").to_pandas()
    assert len(manifest) == 3 * len(samples)
    assert sorted(manifest["key"].unique()) == sorted(keys)


def test_tar_members_are_reproducible_and_ordered(reference):
    for path in sorted(reference.glob("*/*/shard-*.tar")):
        with tarfile.open(path) as tar:
            members = tar.getmembers()
        names = [m.name for m in members]
        keys = list(dict.fromkeys(n.split(".", 1)[0] for n in names))
        assert keys == sorted(keys)
        assert names == [f"{k}.{ext}" for k in keys for ext in ("hq.png", "mq.png", "lq.png", "json")]
        for m in members:
            assert m.isfile() and m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" and m.gname == ""
            assert m.mode == 0o644


def test_manifest_agrees_with_tars_and_json(reference):
    manifest = pq.read_table(reference / "manifest.parquet").to_pandas()
    assert list(manifest.columns) == [
        "key", "split", "type", "tier", "severity", "score", "psnr", "shard", "member",
        "width", "height", "bytes", "sha256", "source",
        "map_mean", "map_min", "map_max", "quality_mean", "quality_min", "quality_max", "area_lq", "area_mq", "area_hq",
    ]
    assert manifest["map_mean"].isna().all()  # built without maps
    import hashlib

    for shard, rows in manifest.groupby("shard"):
        with tarfile.open(reference / shard) as tar:
            for row in rows.itertuples():
                data = tar.extractfile(row.member).read()
                assert len(data) == row.bytes and hashlib.sha256(data).hexdigest() == row.sha256
                assert read_image(data).shape == (row.height, row.width, 3)
                record = json.loads(tar.extractfile(f"{row.key}.json").read())
                slot = record[row.tier]
                assert slot["member"] == row.member and slot["tier"] == row.tier
                assert slot["severity"] == row.severity and slot["score"] == row.score
                assert record["source"] == row.source and record["split"] == row.split and record["type"] == row.type
                assert row.member == f"{row.key}.{row.tier}.png"
    # the per-shard manifests are the manifest, cut by shard
    parts = [pq.read_table(p).to_pandas() for p in sorted(reference.glob("*/*/shard-*.parquet"))]
    assert sum(len(p) for p in parts) == len(manifest)


def test_no_source_in_two_splits_and_splits_follow_config(reference):
    manifest = pq.read_table(reference / "manifest.parquet").to_pandas()
    assert (manifest.groupby("source")["split"].nunique() == 1).all()
    assert set(manifest["split"]) <= {"train", "val"}
    assert (manifest["shard"].str.split("/").str[0] == manifest["split"]).all()


def test_tier_labels_are_measured_and_in_their_bands(reference):
    from skimage.metrics import structural_similarity  # an independent SSIM, not the engine's

    dataset = json.loads((reference / "dataset.json").read_text())
    bands = dataset["calibration"]["bands"]
    assert dataset["calibration"]["metric"] == "ssim"
    manifest = pq.read_table(reference / "manifest.parquet").to_pandas()
    for row in manifest.itertuples():
        lo, hi = bands[row.tier]
        assert lo <= row.score < hi or (row.tier == "hq" and row.score == hi == 1.0), row
    hq = manifest[manifest["tier"] == "hq"]
    assert (hq["severity"] == 0).all() and hq["psnr"].isna().all()
    assert manifest.loc[manifest["tier"] != "hq", "psnr"].notna().all()
    # Re-measure a handful of stored images against their clean patch.
    for key in sorted(manifest["key"].unique())[::7]:
        rows = manifest[manifest["key"] == key].set_index("tier")
        with tarfile.open(reference / rows.loc["hq", "shard"]) as tar:
            images = {t: read_image(tar.extractfile(rows.loc[t, "member"]).read()) for t in SLOTS}
        for t in ("mq", "lq"):
            ssim = structural_similarity(
                images["hq"], images[t], channel_axis=-1, gaussian_weights=True, sigma=1.5,
                use_sample_covariance=False, data_range=255,
            )
            assert ssim == pytest.approx(rows.loc[t, "score"], abs=1e-4)


def test_recipes_in_json_replay_the_stored_images(reference):
    import degradations as D

    path = sorted(reference.glob("train/*/shard-*.tar"))[0]
    with tarfile.open(path) as tar:
        names = tar.getnames()
        key = names[0].split(".", 1)[0]
        record = json.loads(tar.extractfile(f"{key}.json").read())
        images = {t: read_image(tar.extractfile(f"{key}.{t}.png").read()) for t in SLOTS}
    for t in SLOTS:
        assert np.array_equal(D.replay(images["hq"], record[t]["recipe"]), images[t])


def test_dataset_json_records_config_calibration_and_counts(reference):
    import degradations as D

    dataset = json.loads((reference / "dataset.json").read_text())
    assert dataset["config"]["types"] == list(CONFIG.types) and dataset["config"]["seed"] == 5
    assert dataset["config"]["codec"]["lossy"] is False
    shipped = D.default_calibration()
    for t in CONFIG.types:
        assert dataset["calibration"]["types"][t]["ranges"] == shipped.types[t].ranges
    counts = dataset["counts"]
    manifest = pq.read_table(reference / "manifest.parquet").to_pandas()
    errors = pq.read_table(reference / "errors.parquet").to_pandas()
    assert counts["samples"] == manifest["key"].nunique() and counts["images"] == len(manifest)
    assert counts["errors"] == len(errors)
    planned = 7 * CONFIG.patches_per_image * len(CONFIG.types)
    assert counts["samples"] + counts["skipped_samples"] == planned  # every planned sample is stored or reported
    text = json.dumps(dataset)
    assert not re.search(r"20\d\d-\d\d-\d\d|hostname|" + re.escape(os.uname().nodename), text)


# --- reproducibility and resume -----------------------------------------------------------------------


def test_one_worker_gives_the_same_bytes_as_two(reference, tmp_path):
    result = shards.build("builtin", tmp_path / "one", CONFIG, workers=1, progress=False)
    assert result.workers.startswith("1 worker")
    assert_same_tree(reference, tmp_path / "one")


def test_killed_build_resumes_to_the_same_bytes(reference, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "pipeline.cli", "build", "--source", "builtin", "--out", str(out), "--workers", "1", *CLI_ARGS]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(out.glob("*/*/shard-*.parquet")):
        assert proc.poll() is None, f"build ended before a shard was done: {proc.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "no shard done in 120 s"
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI, the dask scheduler and its worker processes
    proc.wait()
    proc.stderr.close()
    done = len(list(out.glob("*/*/shard-*.parquet")))
    total = len(list(reference.glob("*/*/shard-*.parquet")))
    assert not (out / "manifest.parquet").exists() and 0 < done < total, "the kill did not land mid-build"
    assert json.loads((out / "dataset.json").read_text())["counts"] is None

    result = shards.build("builtin", out, CONFIG, workers=2, progress=False)
    assert result.shards_skipped == done
    assert not list(out.rglob("*.partial"))
    assert_same_tree(reference, out)


def test_existing_dask_cluster_via_scheduler_address(reference, tmp_path):
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        # dask's default worker environment is slow for image work: build warns, and still builds
        with pytest.warns(UserWarning, match="MALLOC_TRIM_THRESHOLD_=65536 makes image work"):
            result = shards.build("builtin", tmp_path / "remote", CONFIG, scheduler=cluster.scheduler_address, progress=False)
    assert result.workers == f"2 workers at {cluster.scheduler_address}"
    assert_same_tree(reference, tmp_path / "remote")


def test_rerun_of_a_finished_build_does_nothing_and_other_config_is_refused(reference, tmp_path, capsys):
    out = tmp_path / "copy"
    out.mkdir()
    for name, data in tree(reference).items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    stale = out / "train" / "noise" / ".shard-000000.tar.x1y2.partial"  # as a killed run leaves it
    stale.write_bytes(b"half a tar")
    result = shards.build("builtin", out, CONFIG, workers=1, progress=False)
    assert result.shards_skipped == result.shards and result.workers == "nothing to do"
    assert not stale.exists()
    assert_same_tree(reference, out)

    other = [*CLI_ARGS[:-3], "--seed", "6", "--types", "noise,haze", "--quiet"]
    code = main(["build", "--source", "builtin", "--out", str(out), *other])
    err = capsys.readouterr().err
    assert code == 2 and "different config" in err and "config.seed: 5 -> 6" in err and "--overwrite" in err
    assert_same_tree(reference, out)  # refused before touching anything
    # The same fractions in another order assign photos differently: another build, not a resume.
    reordered = [*CLI_ARGS[:-1], "--splits", "val=0.1,train=0.9", "--quiet"]
    code = main(["build", "--source", "builtin", "--out", str(out), *reordered])
    err = capsys.readouterr().err
    assert code == 2 and "config.splits (in order)" in err
    assert_same_tree(reference, out)

    (out / "mine.txt").write_text("kept")
    assert main(["build", "--source", "builtin", "--out", str(out), *other, "--overwrite", "--workers", "2"]) == 0
    assert (out / "mine.txt").read_text() == "kept"  # --overwrite removes the old build's files, nothing else
    assert {p.parent.name for p in out.glob("*/*/shard-*.tar")} == {"noise", "haze"}
    assert json.loads((out / "dataset.json").read_text())["config"]["seed"] == 6


# --- bad input ----------------------------------------------------------------------------------------


def write_photo_folder(root: Path) -> set[str]:
    """Good photos (RGB, grayscale, RGBA) and unusable files; returns the unusable ones' relative paths."""
    import degradations as D

    photo = D.builtin_photo("astronaut")
    (root / "sub").mkdir(parents=True)
    Image.fromarray(photo[:160, :160]).save(root / "rgb.png")
    Image.fromarray(photo[100:260, 100:260, 1]).save(root / "sub" / "gray.png")
    rgba = np.dstack([photo[200:360, 200:360], np.full((160, 160), 200, np.uint8)])
    Image.fromarray(rgba).save(root / "sub" / "rgba.png")
    Image.fromarray(photo[:300, :300]).save(root / "photo.JPG", quality=92)
    good = (root / "rgb.png").read_bytes()
    (root / "corrupt.png").write_bytes(good[:60] + bytes(400) + good[460:])
    (root / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "empty.png").write_bytes(b"")
    (root / "notes.jpg").write_text("this is not a picture\n")
    Image.fromarray(photo[:40, :40]).save(root / "tiny.png")  # smaller than the patch
    (root / "readme.txt").write_text("not listed: not an image suffix\n")
    return {"corrupt.png", "truncated.png", "empty.png", "notes.jpg", "tiny.png"}


def test_bad_files_are_reported_and_never_stop_the_build(tmp_path, capsys):
    unusable = write_photo_folder(tmp_path / "photos")
    out = tmp_path / "out"
    code = main(["build", "--source", str(tmp_path / "photos"), "--out", str(out), "--types", "noise,low_light", *CLI_ARGS])
    printed = capsys.readouterr().out
    assert code == 0
    errors = pq.read_table(out / "errors.parquet").to_pandas()
    photo_errors = errors[errors["key"].isna()]
    assert set(photo_errors["source"]) == unusable and len(photo_errors) == len(unusable)
    reasons = dict(zip(photo_errors["source"], photo_errors["reason"]))
    assert "0 bytes" in reasons["empty.png"] and "not an image" in reasons["notes.jpg"]
    assert "truncated" in reasons["truncated.png"] and "smaller than the 64x64 patch" in reasons["tiny.png"]
    manifest = pq.read_table(out / "manifest.parquet").to_pandas()
    assert {"rgb.png", "sub/gray.png", "sub/rgba.png", "photo.JPG"} <= set(manifest["source"])
    assert not set(manifest["source"]) & unusable
    assert f"{len(unusable)} unusable photos" in printed and "samples/s" in printed


@pytest.mark.parametrize(
    "args, message",
    [
        (["--source", "{tmp}/missing"], "does not exist"),
        (["--source", "{tmp}/empty_dir"], "holds no images"),
        (["--source", "builtin", "--types", "noise,fog"], "unknown degradation type 'fog'"),
        (["--source", "builtin", "--types", "haze+noise"], "perceive-ir calibrate"),
        (["--source", "builtin", "--codec", "jpeg:200"], "jpeg:Q"),
        (["--source", "builtin", "--splits", "train=0.8,val=0.1"], "sum to 1"),
        (["--source", "builtin", "--out", "{tmp}/a_file"], "is a file"),
        (["--source", "builtin", "--out", "{tmp}/a_file/sub"], "cannot write to --out"),
        (["--source", "builtin", "--out", "{tmp}/foreign"], "holds no perceive-ir build"),
    ],
)
def test_clear_error_before_any_work(tmp_path, capsys, args, message):
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "holiday.jpg").write_text("mine")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    code = main(["build", *args, "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    assert (tmp_path / "foreign" / "holiday.jpg").read_text() == "mine"


# --- inspect and preview ------------------------------------------------------------------------------


def test_inspect_prints_counts_histograms_and_errors(reference, capsys):
    assert main(["inspect", str(reference)]) == 0
    text = capsys.readouterr().out
    manifest = pq.read_table(reference / "manifest.parquet").to_pandas()
    total_line = next(line for line in text.splitlines() if line.startswith("total"))
    assert total_line.split()[1:] == [str(manifest["key"].nunique())] * 4
    assert "severity, all types" in text and "score (ssim), all types" in text and "errors:" in text
    for t in CONFIG.types:
        assert f" {t} " in text


def test_preview_of_a_dataset_draws_three_tiers_per_sample(reference, tmp_path):
    out = tmp_path / "grid.png"
    assert main(["preview", str(reference), "--types", "noise,haze", "--samples", "2", "--size", "48", "-o", str(out)]) == 0
    grid = np.asarray(Image.open(out))
    assert grid.shape[0] > 2 * 48 and grid.shape[1] > 6 * 48


def test_a_build_leaves_this_process_environment_as_it_was(tmp_path):
    # dask's nanny writes its worker environment (OMP_NUM_THREADS=1, malloc settings) into ours
    before = dict(os.environ)
    shards.build("builtin", tmp_path / "out", shards.BuildConfig(patch=64, patches_per_image=1, types=("noise",)), workers=1, progress=False)
    assert dict(os.environ) == before


def test_a_damaged_shard_table_or_an_emptied_tar_is_made_again_on_rerun(reference, tmp_path):
    import shutil

    out = tmp_path / "b"
    shutil.copytree(reference, out)
    tables = sorted(out.glob("*/*/shard-*.parquet"))
    tables[0].write_bytes(b"not parquet at all")
    tables[1].with_suffix(".tar").write_bytes(b"")
    result = shards.build("builtin", out, CONFIG, workers=1, progress=False)
    assert result.shards_skipped == len(tables) - 2  # the rerun remade both, kept the rest
    assert_same_tree(reference, out)


def test_a_full_disk_is_one_clear_error_at_once(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("needs a small tmpfs (mount as root) to fill")
    try:
        cmd = [sys.executable, "-m", "pipeline.cli", "build", "--source", "builtin", "--out", str(disk / "b"),
               "--workers", "1", "--quiet", *CLI_ARGS]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        last = done.stderr.strip().splitlines()[-1]
        assert done.returncode == 2 and last.startswith("perceive-ir build: error: no space left on the device")
        assert "failed after" not in done.stderr  # at once, not after every shard was retried
        assert not (disk / "b" / "manifest.parquet").exists()
        with open(disk / "filler", "wb") as f:  # full before the build starts: its record cannot be written
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * 65536)
        cmd[cmd.index("--out") + 1] = str(disk / "c")
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2 and "no space left on the device" in done.stderr and "Traceback" not in done.stderr
    finally:
        subprocess.run(["umount", str(disk)], check=True)
