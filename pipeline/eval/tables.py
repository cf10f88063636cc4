"""Result tables: printed for people, written as CSV and JSON for scripts."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from shards import output_folder


def write_table(rows: Sequence[Mapping[str, float | str]], out: Path, stem: str) -> tuple[Path, Path]:
    """`stem.csv` and `stem.json` in `out`."""
    output_folder(out, "folder for the tables")
    csv_path, json_path = out / f"{stem}.csv", out / f"{stem}.json"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    json_path.write_text(json.dumps(list(rows), indent=1) + "\n")
    return csv_path, json_path


def format_table(rows: Sequence[Mapping[str, float | str]]) -> str:
    cols = list(rows[0]) if rows else []
    lines = ["  ".join(f"{c:>12}" for c in cols)]
    for r in rows:
        lines.append("  ".join(f"{r[c]:>12.3f}" if isinstance(r[c], float) else f"{r[c]!s:>12}" for c in cols))
    return "\n".join(lines)
