"""Read samples of a built dataset back by key (for previews and checks; training streams the tars).

Members are read with tarfile and decoded as images or JSON, never unpickled.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

import degradations as D
from shards.codec import decode, decode_map
from shards.format import MAP_KINDS, MEDIUM_KIND, Build, map_kind, open_build, record_member


def read_samples(out: str | Path | Build, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """{key: {"hq": image, "mq": image, "lq": image, "json": record}} for the given keys of a finished
    build; with maps (`build --maps`), also "mq_sev", "mq_qmap", "lq_sev", "lq_qmap" (H x W float32). A paper-scheme build has mq once it is rendered: then record["mq"] is its KEY.medium.json
    with the input's severity; before, the sample has no mq."""
    build = out if isinstance(out, Build) else open_build(out)
    columns = ["key", "tier", "severity", "shard", "member"]
    rows = build.manifest(columns, filters=[("key", "in", list(keys))])
    if build.tiers == "paper" and build.rendered:
        rows = pa.concat_tables([rows, build.medium(columns, filters=[("key", "in", list(keys))])])
    missing = set(keys) - set(rows.column("key").to_pylist())
    if missing:
        raise D.UserError(f"no sample with key {sorted(missing)[0]!r} in {build.root}")
    samples: dict[str, dict[str, Any]] = {k: {} for k in keys}
    for shard in sorted(set(rows.column("shard").to_pylist())):
        in_shard = rows.filter(pc.equal(rows.column("shard"), shard)).to_pylist()
        try:
            with tarfile.open(build.path(shard)) as tar:
                for row in in_shard:
                    samples[row["key"]][row["tier"]] = decode(_member(tar, row["member"]))
                    if row["tier"] == "mq" and build.tiers == "paper":  # a companion: its record is KEY.medium.json
                        medium = json.loads(_member(tar, f"{row['key']}.{MEDIUM_KIND}.json"))
                        samples[row["key"]]["medium"] = {**medium, "severity": row["severity"], "tier": "mq"}
                for key in {r["key"] for r in in_shard if r["tier"] != "mq" or build.tiers == "bands"}:
                    record = samples[key]["json"] = json.loads(_member(tar, record_member(key)))
                    for tier in D.DEGRADED_TIERS:  # a build made with --maps: each degraded image's maps
                        for kind in MAP_KINDS:
                            if kind in record.get(tier, {}):
                                samples[key][map_kind(tier, kind)] = decode_map(_member(tar, record[tier][kind]))
        except (OSError, tarfile.TarError, ValueError) as err:  # ValueError: an undecodable member or JSON
            raise D.UserError(f"shard {build.path(shard)} is damaged: {err}") from None
    for sample in samples.values():
        if "medium" in sample:
            sample["json"]["mq"] = sample.pop("medium")
    return samples


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    f = tar.extractfile(name)
    if f is None:
        raise tarfile.ReadError(f"{tar.name}: {name} is not a file member")
    return f.read()
