"""Writing a build's parquet tables: per-shard manifests, the merged manifest and the errors table.

Parquet files are written with fixed options (codec, level, page version,
statistics) and rows in a fixed order, so their bytes depend only on the
content (and the pyarrow version, which pyarrow writes into each file).

A shard's problems (unusable photos, samples whose tier was out of reach)
travel in its parquet's key-value metadata: the file that marks the shard
done then also carries them, and a resumed build that skips the shard still
knows them. The rows of the table are images only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from shards.files import atomic_output
from shards.format import (
    ERRORS_SCHEMA,
    FORMAT_VERSION,
    MANIFEST_SCHEMA,
    SHARD_ERRORS_KEY,
    SHARD_VERSION_KEY,
)

_ROW_GROUP = 1 << 17
_WRITE_OPTIONS: dict[str, Any] = dict(
    compression="zstd",
    compression_level=3,
    use_dictionary=True,
    write_statistics=True,
    version="2.6",
    data_page_version="1.0",
    write_page_index=False,
)


def write_table(table: pa.Table, path: str | Path) -> None:
    """One parquet file, atomically, with the fixed options."""
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp, row_group_size=_ROW_GROUP, **_WRITE_OPTIONS)


def write_shard_manifest(
    rows: Sequence[dict[str, Any]], errors: Sequence[dict[str, Any]], path: str | Path, schema: pa.Schema = MANIFEST_SCHEMA,
) -> None:
    meta = {SHARD_ERRORS_KEY: json.dumps(list(errors), sort_keys=True).encode(), SHARD_VERSION_KEY: str(FORMAT_VERSION).encode()}
    table = pa.Table.from_pylist(list(rows), schema=schema.with_metadata(meta))
    write_table(table, path)


def read_shard_errors(path: str | Path) -> list[dict[str, Any]]:
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(SHARD_ERRORS_KEY, b"[]"))


def merge_manifests(paths: Iterable[Path], out: Path, schema: pa.Schema = MANIFEST_SCHEMA) -> int:
    """Concatenate per-shard manifests (or companion tables: `schema`), in the order given, into `out`; returns the row count.

    Streams: at most one row group is held, whatever the size of the build.
    """
    rows = 0
    buffer: list[pa.Table] = []
    with atomic_output(out) as tmp, pq.ParquetWriter(tmp, schema, **_WRITE_OPTIONS) as writer:
        for path in paths:
            table = pq.read_table(path, schema=schema)
            rows += table.num_rows
            buffer.append(table)
            if sum(t.num_rows for t in buffer) >= _ROW_GROUP:
                writer.write_table(pa.concat_tables(buffer), row_group_size=_ROW_GROUP)
                buffer = []
        if buffer:
            writer.write_table(pa.concat_tables(buffer), row_group_size=_ROW_GROUP)
    return rows


def write_errors(errors: Iterable[dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    """The errors table: one row per unusable photo and per skipped sample, sorted; returns the rows."""
    unique = {(e["source"], e.get("type") or "", e.get("key") or ""): e for e in errors}
    rows = [unique[k] for k in sorted(unique)]
    write_table(pa.Table.from_pylist(rows, schema=ERRORS_SCHEMA), out)
    return rows
