"""The parts of the shard builder, one at a time: plan, keys, splits, patch boxes, tier search, tar, codecs, config."""

from __future__ import annotations

import io
import json
import re
import tarfile
import warnings

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import degradations as D
import shards
from shards.files import shard_writer
from shards.sample import SampleError, Scorer, _next_severity, degraded_slot, make_slots, patch_box


def fake_sources(n: int) -> list[shards.Source]:
    return [shards.Source(f"album {i // 50}/IMG_{i:04d}.jpg", f"/photos/album {i // 50}/IMG_{i:04d}.jpg") for i in range(n)]


def scorer(types=("noise", "blur", "haze"), seed=0, tries=8) -> Scorer:
    cal = D.default_calibration()
    return Scorer.of(cal, types, seed, tries)


# --- plan ---------------------------------------------------------------------------------------------


def test_plan_is_a_pure_function_of_sources_and_config():
    sources = fake_sources(120)
    config = shards.BuildConfig(types=("noise", "haze"), patches_per_image=2, samples_per_shard=7)
    plan = shards.make_plan(sources, config)
    assert plan == shards.make_plan(list(reversed(sources)), config)
    keys = [s.key for shard in plan for s in shard.samples]
    assert len(keys) == 120 * 2 * 2 and len(set(keys)) == len(keys)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", k) for k in keys)
    assert all(len(shard.samples) <= 7 for shard in plan)
    order = [(["train", "val"].index(p.split), config.types.index(p.type), p.index) for p in plan]
    assert order == sorted(order) and len(set(order)) == len(order)
    for shard in plan:
        assert [s.key for s in shard.samples] == sorted(s.key for s in shard.samples)
        assert shard.tar == f"{shard.split}/{shard.type}/shard-{shard.index:06d}.tar"


def test_splits_are_per_photo_stable_and_near_their_fractions():
    splits = (("train", 0.8), ("val", 0.15), ("test", 0.05))
    ids = [s.id for s in fake_sources(4000)]
    assigned = {i: shards.split_of(i, splits) for i in ids}
    share = {name: sum(v == name for v in assigned.values()) / len(ids) for name, _ in splits}
    assert share["train"] == pytest.approx(0.8, abs=0.03) and share["test"] == pytest.approx(0.05, abs=0.02)
    # a photo keeps its split when others come and go, and whatever the seed
    config_a = shards.BuildConfig(splits=splits, seed=1, patches_per_image=1)
    config_b = shards.BuildConfig(splits=splits, seed=2, patches_per_image=1)
    small = {s.source.id: p.split for p in shards.make_plan(fake_sources(100), config_a) for s in p.samples}
    large = {s.source.id: p.split for p in shards.make_plan(fake_sources(300), config_b) for s in p.samples}
    assert all(large[i] == split for i, split in small.items())


def test_composite_types_have_dot_and_plus_free_names():
    config = shards.BuildConfig(types=("haze+low_light",), patches_per_image=1)
    assert config.types == ("low_light+haze",)
    plan = shards.make_plan(fake_sources(3), config)
    assert all(p.tar.split("/")[1] == "low_light-haze" for p in plan)
    assert all(s.key.startswith("low_light-haze-") and "." not in s.key and "+" not in s.key for p in plan for s in p.samples)


def test_keys_stay_unique_for_ids_that_look_alike():
    ids = ["a b.jpg", "a_b.jpg", "a-b.jpg", "a.b.jpg", "a/b.jpg", "x" * 300 + ".png", "y" + "x" * 299 + ".png"]
    keys = [shards.sample_key("noise", i, 0) for i in ids]
    assert len(set(keys)) == len(keys) and all(len(k) < 80 for k in keys)


# --- patches and the tier search ----------------------------------------------------------------------


def test_patch_boxes_are_inside_the_photo_and_deterministic():
    for layout in ("random", "grid"):
        boxes = [patch_box(300, 500, 64, i, 5, layout, 3, f"k{i}") for i in range(5)]
        assert boxes == [patch_box(300, 500, 64, i, 5, layout, 3, f"k{i}") for i in range(5)]
        assert len(set(boxes)) == 5
        for x, y, w, h in boxes:
            assert w == h == 64 and 0 <= x <= 500 - 64 and 0 <= y <= 300 - 64
    grid = [patch_box(300, 500, 64, i, 4, "grid", 0, "k") for i in range(4)]
    assert grid == [(0, 0, 64, 64), (436, 0, 64, 64), (0, 236, 64, 64), (436, 236, 64, 64)]
    assert patch_box(300, 500, 0, 0, 1, "random", 0, "k") == (0, 0, 500, 300)
    with pytest.raises(ValueError, match="smaller than the 64x64 patch"):
        patch_box(50, 500, 64, 0, 1, "random", 0, "k")


def test_degraded_slots_land_in_their_tier_band():
    photo = D.builtin_photo("astronaut")
    s = scorer()
    for i, name in enumerate(("noise", "blur", "haze")):
        patch = np.ascontiguousarray(photo[40 * i : 40 * i + 96, 200:296])
        slots = make_slots(patch, name, f"key{i}", s)
        assert slots["hq"].image is patch and slots["hq"].record["score"] == D.ssim(patch, patch) == 1.0
        for tier in ("mq", "lq"):
            record = slots[tier].record
            lo, hi = s.bands[name][tier]
            assert lo <= record["score"] < hi and record["tier"] == D.tier_of(record["score"]) == tier
            assert record["score"] == round(D.ssim(patch, slots[tier].image), 6)
            assert np.array_equal(D.replay(patch, record["recipe"]), slots[tier].image)
            assert record["recipe"]["severity"] == record["severity"]


def test_a_patch_that_cannot_reach_a_tier_is_a_sample_error():
    flat = np.full((96, 96, 3), 128, np.uint8)  # blur leaves a flat patch untouched: it stays hq
    with pytest.raises(SampleError, match=r"into tier mq in [123] tries") as caught:
        degraded_slot(flat, "blur", "mq", "flat", scorer(tries=3))
    assert caught.value.tier == "mq"


def test_a_patch_too_clean_at_severity_one_is_given_up_before_max_tries():
    flat = np.full((96, 96, 3), 128, np.uint8)
    with pytest.raises(SampleError, match=r"in [1-7] tries .*1\.000->1\.000\)$"):
        degraded_slot(flat, "blur", "mq", "flat", scorer(tries=8))


def test_next_severity_interpolates_extrapolates_and_stays_in_the_bracket():
    assert _next_severity([(0.2, 0.1), (0.6, 0.5)], 0.3) == pytest.approx(0.4)  # between the tries
    assert _next_severity([(0.25, 0.05)], 0.1) == pytest.approx(0.5)  # on the line from severity 0
    assert _next_severity([(0.5, 0.1)], 0.3) == 1.0  # past severity 1: severity 1
    assert _next_severity([(0.6, 0.1), (0.4, 0.5)], 0.3) == pytest.approx(0.5)  # tries that disagree
    guess = _next_severity([(0.2, 0.1), (0.21, 0.5)], 0.11)  # never the severity already tried
    assert 0.2 < guess < 0.21


def test_search_starts_above_mq_where_calibration_says_lq_is_out_of_reach():
    cal = D.default_calibration()
    assert cal.types["blur"].ranges["lq"] is None
    assert cal.interval("blur", "lq") is None
    assert cal.interval("blur", "lq", beyond_mean=True) == (cal.types["blur"].ranges["mq"][1], 1.0)
    assert cal.interval("noise", "lq", beyond_mean=True) == cal.interval("noise", "lq") == tuple(cal.types["noise"].ranges["lq"])
    with pytest.raises(D.UserError, match="perceive-ir calibrate"):
        cal.interval("noise+haze", "mq")


# --- files --------------------------------------------------------------------------------------------


def test_tar_bytes_depend_only_on_members(tmp_path):
    members = [("k1.hq.png", b"\x89PNG" + bytes(range(256))), ("k1.json", b'{"a": 1}')]
    for name in ("a.tar", "b.tar"):
        with shard_writer(tmp_path / name) as add:
            for member, data in members:
                add(member, data)
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert oct((tmp_path / "a.tar").stat().st_mode & 0o777) == "0o644"
    with tarfile.open(tmp_path / "a.tar") as tar:
        assert [(m.name, tar.extractfile(m).read()) for m in tar] == members


def test_failed_tar_leaves_nothing_behind(tmp_path):
    with pytest.raises(RuntimeError), shard_writer(tmp_path / "c.tar") as add:
        add("k.json", b"{}")
        raise RuntimeError("worker died")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("spec, ext, lossless", [("png", "png", True), ("webp", "webp", True), ("jpeg:90", "jpg", False)])
def test_codecs(spec, ext, lossless):
    codec = shards.parse_codec(spec)
    image = np.ascontiguousarray(D.builtin_photo("coffee")[:64, :80])
    data = codec.encode(image)
    assert codec.extension == ext and codec.lossy is not lossless and data == codec.encode(image)
    decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert decoded.shape == image.shape
    assert np.array_equal(decoded, image) is lossless
    assert np.array_equal(shards.decode(data), decoded)


@pytest.mark.parametrize("spec", ["gif", "jpeg", "jpeg:0", "png:3", "webp:lossy"])
def test_bad_codecs_are_refused(spec):
    with pytest.raises(ValueError, match="codec"):
        shards.parse_codec(spec)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"patch": 0}, "patches-per-image must be 1"),
        ({"patch": 32}, "smaller than blur needs"),
        ({"types": ("noise", "noise")}, "named twice"),
        ({"types": ()}, "at least one"),
        ({"splits": (("train", 0.5), ("val", 0.4))}, "sum to 1"),
        ({"splits": (("tr.ain", 1.0),)}, "may hold only"),
        ({"layout": "spiral"}, "unknown layout"),
        ({"samples_per_shard": 0}, "samples_per_shard"),
    ],
)
def test_config_is_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        shards.BuildConfig(**kwargs)


# --- a composite type, its own calibration and a lossy codec, end to end ------------------------------


def test_build_with_composite_type_custom_calibration_and_lossy_codec(tmp_path):
    photos = {n: D.builtin_photo(n) for n in ("astronaut", "coffee")}
    cal = D.calibrate(photos, ["rain+low_light"], severities=np.linspace(0, 1, 6), patch=96, patches_per_image=2)
    cal.save(tmp_path / "cal.json")
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, image in photos.items():
        Image.fromarray(image).save(folder / f"{name}.png")
    config = shards.BuildConfig(
        types=("rain+low_light",), patch=96, patches_per_image=3, samples_per_shard=2, codec="jpeg:90",
        splits=(("train", 1.0),), calibration=str(tmp_path / "cal.json"),
    )
    with pytest.warns(UserWarning, match="lossy"):
        result = shards.build(folder, tmp_path / "out", config, workers=1, progress=False)
    out = tmp_path / "out"
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["config"]["codec"] == {"spec": "jpeg:90", "name": "jpeg", "extension": "jpg", "lossy": True, "quality": 90}
    assert dataset["calibration"]["types"]["low_light+rain"]["ranges"] == cal.types["low_light+rain"].ranges
    assert dataset["calibration_file"] == str(tmp_path / "cal.json")
    tars = sorted(out.glob("train/low_light-rain/shard-*.tar"))
    assert len(tars) == 3 and result.report.samples + result.report.skipped_samples == 6
    with tarfile.open(tars[0]) as tar:
        names = tar.getnames()
        assert names[0].endswith(".hq.jpg") and names[3].endswith(".json")
        record = json.loads(tar.extractfile(names[3]).read())
    assert [c["type"] for c in record["lq"]["recipe"]["components"]] == ["low_light", "rain"]
    manifest = pq.read_table(out / "manifest.parquet").to_pandas()
    assert set(manifest["type"]) == {"low_light+rain"} and manifest["member"].str.endswith(".jpg").all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert shards.inspect(out).samples == result.report.samples


# --- the workers' photo cache ---------------------------------------------------------------------


def test_photo_cache_serves_the_current_file_and_stays_in_budget(tmp_path):
    from shards.shard import _PhotoCache
    from shards.sources import BadImage, Source

    def write(path, value, side=32):
        Image.fromarray(np.full((side, side, 3), value, np.uint8)).save(path)

    cache = _PhotoCache(budget=3 * 32 * 32 * 3)  # three 32 px photos, not two of them and a 33 px one
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write(tmp_path / "a" / "p.png", 10)
    write(tmp_path / "b" / "p.png", 200)
    first, other = Source("p.png", str(tmp_path / "a" / "p.png")), Source("p.png", str(tmp_path / "b" / "p.png"))
    assert cache.get(first, 10**6)[0, 0, 0] == 10
    assert cache.get(first, 10**6) is cache.get(first, 10**6)  # decoded once
    assert cache.get(other, 10**6)[0, 0, 0] == 200  # the same id in another build's folder
    write(tmp_path / "a" / "p.png", 90, side=33)  # edited in place: another size and mtime
    assert cache.get(first, 10**6)[0, 0, 0] == 90
    assert len(cache._photos) == 2  # the oldest went when the budget was exceeded
    (tmp_path / "bad.png").write_bytes(b"not an image")
    bad = Source("bad.png", str(tmp_path / "bad.png"))
    for _ in range(2):  # an unusable photo is remembered as such
        with pytest.raises(BadImage):
            cache.get(bad, 10**6)
    cache.clear()
    assert not cache._photos


# --- a bug is a failure, not a skipped sample -----------------------------------------------------------


@pytest.mark.parametrize("error", [TypeError, ValueError, D.UserError])
def test_a_bug_inside_sample_making_fails_the_build(tmp_path, monkeypatch, error):
    """Only unusable photos and unreachable tiers are recorded; anything else raised while making a
    sample fails its shard, and the build, loudly; the fixed code then completes the same build."""
    from distributed import LocalCluster

    import shards.shard

    def broken(*args, **kwargs):
        raise error("a bug in sample making")

    config = shards.BuildConfig(types=("noise",), patch=64, patches_per_image=1, samples_per_shard=4, splits=(("train", 1.0),))
    monkeypatch.setattr(shards.shard, "make_slots", broken)
    # Threads, not processes: the workers run this process's (patched) code.
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with pytest.warns(UserWarning, match="malloc"), pytest.raises(shards.BuildError, match=f"{error.__name__}.*a bug in sample making"):
            shards.build("builtin", tmp_path / "out", config, scheduler=cluster.scheduler_address, progress=False)
        assert not list((tmp_path / "out").glob("*/*/*.parquet"))  # no shard marked done
        monkeypatch.undo()
        with pytest.warns(UserWarning, match="malloc"):
            result = shards.build("builtin", tmp_path / "out", config, scheduler=cluster.scheduler_address, progress=False)
    assert result.report.samples == 7 and result.report.errors.empty


def test_a_split_left_empty_is_warned_about_at_build_time(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(D.builtin_photo("astronaut")).save(folder / "only.png")
    config = shards.BuildConfig(types=("noise",), patch=64, patches_per_image=1, splits=(("train", 0.5), ("val", 0.5)))
    with pytest.warns(UserWarning, match=r"split (train|val) holds no samples: 1 photos are too few for --splits train=0.5,val=0.5"):
        result = shards.build(folder, tmp_path / "out", config, workers=1, progress=False)
    assert result.report.samples == 1


def test_a_second_build_into_a_folder_in_use_is_refused_naming_the_holder(tmp_path):
    import os

    import shards
    from shards.files import LOCK, folder_lock

    config = shards.BuildConfig(types=("noise",), patch=64, patches_per_image=1)
    with folder_lock(tmp_path):
        assert (tmp_path / LOCK).read_text().strip() == str(os.getpid())
        with pytest.raises(D.OutputExists, match=f"in use by another build \\(pid {os.getpid()}\\)"):
            shards.build("builtin", tmp_path, config, workers=1, progress=False)
    assert not (tmp_path / LOCK).exists()  # released and removed: the build runs now
    shards.build("builtin", tmp_path, config, workers=1, progress=False)
    assert (tmp_path / "dataset.json").is_file() and not (tmp_path / LOCK).exists()


def test_a_killed_build_leaves_its_folder_unlocked(tmp_path):
    import signal
    import subprocess
    import sys

    from shards.files import folder_lock

    code = ("import sys, time; from pathlib import Path; from shards.files import folder_lock\n"
            "with folder_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(D.OutputExists, match=f"pid {holder.pid}"), folder_lock(tmp_path):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with folder_lock(tmp_path):  # the kernel released the dead holder's lock
        pass


def test_every_unusable_path_is_an_error_row_and_odd_names_are_built(tmp_path, monkeypatch):
    import errno
    import os

    import cv2
    import pyarrow.parquet as pq

    import shards
    import shards.sources

    photos = tmp_path / "photos"
    (photos / "locked").mkdir(parents=True)
    crop = D.builtin_photo("astronaut")[:96, :96, ::-1]
    cv2.imwrite(str(photos / "good.png"), crop)
    odd = os.fsencode(str(photos)) + b"/caf\xe9.png"  # a Latin-1 name: not valid UTF-8
    with open(odd, "wb") as f:
        f.write(cv2.imencode(".png", crop)[1].tobytes())
    (photos / "gone.png").symlink_to(photos / "missing.png")
    os.mkfifo(photos / "pipe.png")
    cv2.imwrite(str(photos / "locked" / "hidden.png"), crop)
    # A folder this user cannot list (chmod does not stop root, who runs CI): os.walk reports it.
    walk = os.walk

    def walk_with_a_locked_folder(top, onerror=None, **kw):
        for folder, dirs, names in walk(top, onerror=onerror, **kw):
            if "locked" in dirs:
                dirs.remove("locked")
                onerror(PermissionError(errno.EACCES, "Permission denied", os.path.join(folder, "locked")))
            yield folder, dirs, names

    monkeypatch.setattr(shards.sources.os, "walk", walk_with_a_locked_folder)
    out = tmp_path / "out"
    config = shards.BuildConfig(types=("noise",), patch=64, patches_per_image=1, splits=(("train", 1.0),))
    result = shards.build(photos, out, config, workers=1, progress=False)
    reasons = {e["source"]: e["reason"] for e in pq.read_table(out / "errors.parquet").to_pylist()}
    assert "broken symbolic link" in reasons["gone.png"] and "not a regular file" in reasons["pipe.png"]
    assert "folder cannot be read: Permission denied" in reasons["locked/"]
    built = set(pq.read_table(out / "manifest.parquet", columns=["source"]).column("source").to_pylist())
    assert built == {"good.png", "caf\\xe9.png"}  # the odd name is built, its id escaped
    assert result.report.samples == 2


def test_a_photo_changed_since_the_build_started_refuses_the_resume(tmp_path):
    import os

    import cv2

    import shards

    photos = tmp_path / "photos"
    photos.mkdir()
    for i, name in enumerate(("astronaut", "coffee")):
        cv2.imwrite(str(photos / f"{i}.png"), D.builtin_photo(name)[:96, :96, ::-1])
    config = shards.BuildConfig(types=("noise",), patch=64, patches_per_image=1, splits=(("train", 1.0),))
    shards.build(photos, tmp_path / "out", config, workers=1, progress=False)
    shards.build(photos, tmp_path / "out", config, workers=1, progress=False)  # unchanged: resumes
    cv2.imwrite(str(photos / "0.png"), D.builtin_photo("rocket")[:96, :96, ::-1])
    os.utime(photos / "0.png", ns=(1, 1))
    with pytest.raises(D.OutputExists, match="a photo changed since it started"):
        shards.build(photos, tmp_path / "out", config, workers=1, progress=False)


def test_high_bit_depth_and_float_tiffs_are_scaled_or_refused_with_a_reason(tmp_path):
    from PIL import Image

    from shards import BadImage, load_image

    ramp = np.linspace(0, 1, 64 * 64).reshape(64, 64)
    Image.fromarray(ramp.astype(np.float32), mode="F").save(tmp_path / "float.tif")
    Image.fromarray((ramp * (2**31 - 1)).astype(np.int32), mode="I").save(tmp_path / "int32.tif")
    Image.fromarray((ramp * 4095).astype(np.int32), mode="I").save(tmp_path / "int12.tif")  # 12-bit data in 32 bits
    for name, top in (("float.tif", 255), ("int32.tif", 255), ("int12.tif", 16)):
        image = load_image(tmp_path / name)
        assert image.dtype == np.uint8 and image[0, 0, 0] == 0 and image[-1, -1, 0] == top, name
        assert np.all(np.diff(image[..., 0].ravel().astype(int)) >= 0), name  # a ramp stays a ramp: nothing wraps
    Image.fromarray((ramp * 4).astype(np.float32), mode="F").save(tmp_path / "hdr.tif")
    with pytest.raises(BadImage, match="tone-map HDR"):
        load_image(tmp_path / "hdr.tif")


def test_max_pixels_is_the_only_pixel_limit(tmp_path):
    from PIL import Image

    from shards import BadImage, load_image

    # A 10000 x 9000 PNG (90 MP, above Pillow's own 89.5 MP bomb limit), cheap to write: one grey.
    Image.new("L", (10000, 9000), 128).save(tmp_path / "big.png")
    assert load_image(tmp_path / "big.png", max_pixels=100_000_000).shape == (9000, 10000, 3)
    with pytest.raises(BadImage, match="over the limit of 50000000"):
        load_image(tmp_path / "big.png", max_pixels=50_000_000)
