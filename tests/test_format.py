"""The build format has one owner: shards.format. Readers open builds through it, and it refuses
folders that are no build, builds of another format version and unfinished builds."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import degradations as D
import model
import shards
import shards.format as F
from helpers import SMALL_BUILD_ARGS
from pipeline import make_loader
from pipeline.cli import main

PACKAGES = ("degradations", "shards", "pipeline", "model")


def test_open_build_gives_the_record_its_calibration_and_tables(small_build):
    build = shards.open_build(small_build)
    assert build.finished and build.record["format_version"] == F.FORMAT_VERSION
    assert build.calibration == D.default_calibration().subset(build.types)  # the record round-trips
    assert build.manifest(["key"]).num_rows == build.counts["images"]
    assert build.errors().num_rows == build.counts["errors"]
    shard = build.manifest(["shard"]).column("shard")[0].as_py()
    assert build.path(shard).is_file() and pq.read_schema(build.path(F.shard_manifest(shard))).metadata[F.SHARD_VERSION_KEY] == str(F.FORMAT_VERSION).encode()


def copy_record(small_build: Path, out: Path, **changes) -> Path:
    """A copy of the small build whose record has `changes`."""
    shutil.copytree(small_build, out)
    record = json.loads((out / F.DATASET).read_text())
    (out / F.DATASET).write_text(json.dumps({**record, **changes}))
    return out


@pytest.mark.parametrize("version", [0, 5])
def test_a_build_of_another_format_version_is_refused_naming_both(small_build, tmp_path, capsys, version):
    other = copy_record(small_build, tmp_path / "other", format_version=version)
    with pytest.raises(shards.FormatError, match=f"format version {version}; this perceive-ir reads versions 1, 2, 3 and 4"):
        shards.open_build(other)
    with pytest.raises(shards.FormatError, match=f"version {version}"):
        make_loader(other, num_workers=0)
    assert main(["inspect", str(other)]) == 2
    err = capsys.readouterr().err
    assert f"format version {version}" in err and "reads versions 1, 2, 3 and 4" in err and len(err.strip().splitlines()) == 1
    # A rebuild into it is a build of another config: refused unless asked to overwrite.
    assert main(["build", "--source", "builtin", "--out", str(other), *SMALL_BUILD_ARGS]) == 2
    assert f"format_version: {version} -> {F.FORMAT_VERSION}" in capsys.readouterr().err


def test_a_version_1_build_is_read(small_build, tmp_path):
    """Version 1 recorded only the ranges and notes of each type's calibration, and no version in shard manifests."""
    record = json.loads((small_build / F.DATASET).read_text())
    reduced = {**record["calibration"], "types": {t: {"ranges": c["ranges"], "notes": c["notes"]} for t, c in record["calibration"]["types"].items()}}
    old = copy_record(small_build, tmp_path / "v1", format_version=1, calibration=reduced)
    build = shards.open_build(old)
    new = shards.open_build(small_build)
    for t in build.types:
        for tier in D.TIERS:
            assert build.calibration.interval(t, tier, beyond_mean=True) == new.calibration.interval(t, tier, beyond_mean=True)
    assert epoch_keys(make_loader(old, num_workers=0, crop=32)) == epoch_keys(make_loader(small_build, num_workers=0, crop=32))
    synth = dict(mode="synth", num_workers=0, crop=64, types=["noise", "rain"])
    assert epoch_keys(make_loader(old, **synth)) == epoch_keys(make_loader(small_build, **synth))


def epoch_keys(loader) -> list[tuple[str, float]]:
    """Keys and severities (synth mode draws them from the build's calibration) of an epoch."""
    return [(k, float(s)) for batch in loader for k, s in zip(batch["key"], batch["severity"])]


def test_a_shard_manifest_of_another_format_version_is_refused_in_a_url_list(small_build, tmp_path):
    tar = sorted(small_build.glob(F.SHARD_GLOB + ".tar"))[0]
    copy = tmp_path / tar.name
    shutil.copy(tar, copy)
    table = pq.read_table(small_build / F.shard_manifest(str(tar.relative_to(small_build))))
    meta = {**table.schema.metadata, F.SHARD_VERSION_KEY: b"5"}
    pq.write_table(table.replace_schema_metadata(meta), F.shard_manifest(str(copy)))
    with pytest.raises(shards.FormatError, match=f"{copy}.*version 5.*versions 1, 2, 3 and 4"):
        make_loader([str(copy)], split=table.column("split")[0].as_py(), num_workers=0, batch_size=1, crop=None)


def test_folders_that_hold_no_finished_build_are_refused(small_build, tmp_path):
    with pytest.raises(shards.FormatError, match="does not exist"):
        shards.open_build(tmp_path / "missing")
    with pytest.raises(shards.FormatError, match=f"holds no {F.DATASET}"):
        shards.open_build(tmp_path)
    unfinished = copy_record(small_build, tmp_path / "unfinished", counts=None)
    with pytest.raises(shards.FormatError, match="not finished; run the same `perceive-ir build` command again"):
        shards.open_build(unfinished)
    assert not shards.open_build(unfinished, finished=False).finished


def library_sources() -> list[Path]:
    root = Path(shards.__file__).parent.parent
    return [p for package in PACKAGES for p in sorted((root / package).rglob("*.py"))]


@pytest.mark.parametrize("name", [F.DATASET, F.MANIFEST, F.ERRORS])
def test_format_file_names_appear_only_in_the_format_module(name):
    root = Path(shards.__file__).parent.parent
    found = [str(p.relative_to(root)) for p in library_sources() if name in p.read_text() and p.name != "format.py"]
    assert not found, f"{name} is spelled outside shards/format.py: {found}"


def test_one_tier_order():
    assert model.TIERS == D.TIERS  # the model may not import the engine: the same order, checked here
    assert F.MEMBER_TIERS == tuple(reversed(D.TIERS))
    spelled = [p.name for p in library_sources() if re.search(r"""\(\s*["'](hq|lq)["'],\s*["']mq["'],\s*["'](lq|hq)["']\s*\)""", p.read_text())]
    assert spelled == ["tiers.py", "perceiver.py"], spelled  # D.TIERS, and model.TIERS


def test_a_damaged_table_is_a_clear_error_and_a_rerun_rewrites_it(small_build, tmp_path, capsys):
    damaged = copy_record(small_build, tmp_path / "damaged")
    (damaged / F.MANIFEST).write_bytes(b"PAR1 damaged")
    assert main(["inspect", str(damaged)]) == 2
    assert "cannot be read" in capsys.readouterr().err
    assert main(["build", "--source", "builtin", "--out", str(damaged), *SMALL_BUILD_ARGS]) == 0
    assert (damaged / F.MANIFEST).read_bytes() == (small_build / F.MANIFEST).read_bytes()
