"""Contact sheets that check degradations, or a build, by eye."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

import degradations as D
import shards
from pipeline.eval.realism import RealismReport
from pipeline.report.contact_sheet import colour_map, grid, save_png, tile


def severity_sheet(
    image: np.ndarray, types: Sequence[str], severities: Sequence[float], seed: int = 0, size: int = 192, severity_map: str | None = None,
) -> np.ndarray:
    """Rows = types, columns = severities; each tile labelled with severity, SSIM and tier. With
    `severity_map` (a generator name), severity varies over the image from 0 to s, and each row
    ends with the severity map and the measured quality map of its strongest severity."""
    rows = []
    for name in types:
        row = []
        for s in severities:
            level = {"map": severity_map, "lo": 0.0, "hi": s} if severity_map else s
            out, recipe = D.degrade(image, name, level, seed=seed)
            score = D.ssim(image, out)
            row.append(tile(out, [f"s={'0-' if severity_map else ''}{s:.2f} ssim={score:.2f} {D.tier_of(score)}"], size))
        if severity_map:
            row.append(tile(colour_map(D.severity_map_of(image, recipe.steps[0])), [f"severity map ({severity_map})"], size))
            row.append(tile(colour_map(D.ssim_map(image, out)), ["quality map (local SSIM)"], size))
        rows.append(row)
    return grid(rows, row_labels=list(types))


def build_sheet(
    out: str | Path, types: Sequence[str] | None = None, split: str | None = None, samples: int = 3, size: int = 192
) -> np.ndarray:
    """Rows = types; per sample three tiles, hq / mq / lq, labelled with tier, severity and score
    (and, for a build made with --maps, each degraded image's severity and quality maps beside it)."""
    if samples < 1:
        raise D.UserError("--samples must be at least 1")
    build = shards.open_build(out)
    split = split or build.splits[0]
    if split not in build.splits:
        raise D.UserError(f"split {split!r} is not in {out} (splits: {', '.join(build.splits)})")
    types = [D.canonical_name(t) for t in types] if types else build.types
    rows = build.manifest(["key", "type"], filters=[("split", "=", split), ("tier", "=", "hq")])
    keys_by_type = rows.to_pandas().groupby("type")["key"].apply(sorted).to_dict()
    chosen = {}
    for name in types:
        keys = keys_by_type.get(name, [])
        if not keys:
            raise D.UserError(f"{out} holds no {name!r} samples in split {split!r} (types: {', '.join(build.types)})")
        # Spread over the sorted keys, so the tiles come from different photos where there are several.
        picks = np.unique(np.linspace(0, len(keys) - 1, min(samples, len(keys))).round().astype(int))
        chosen[name] = [keys[i] for i in picks]
    images = shards.read_samples(build, [k for keys in chosen.values() for k in keys])
    metric = build.calibration.metric
    grid_rows = []
    for name in types:
        row = []
        for key in chosen[name]:
            record = images[key]["json"]
            for tier in shards.MEMBER_TIERS:
                if tier not in images[key]:  # a paper build's mq before render-medium
                    continue
                r = record[tier]
                row.append(tile(images[key][tier], [f"{tier} s={r['severity']:.2f} {metric}={r['score']:.2f}"], size))
                if f"{tier}_sev" in images[key]:  # a build made with --maps: the maps beside their image
                    row.append(tile(colour_map(images[key][f"{tier}_sev"]), [f"{tier} severity map"], size))
                    row.append(tile(colour_map(images[key][f"{tier}_qmap"]), [f"{tier} quality map"], size))
        grid_rows.append(row)
    return grid(grid_rows, row_labels=list(types))


def realism_sheet(triplets: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], report: RealismReport, path: str | Path,
                  rows: int = 4, size: int = 256) -> Path:
    """clean | real | synthetic for `rows` images spread over the set, labelled with PSNR, as a PNG."""
    picked = triplets[:: max(1, len(triplets) // rows)][:rows]
    cells = [[tile(c, ["clean", ""], size), tile(r, [f"real {report.benchmark}", f"{D.psnr(c, r):.1f} dB"], size),
              tile(s, [f"{report.type} at {report.severity:.2f}", f"{D.psnr(c, s):.1f} dB"], size)]
             for c, r, s in picked]
    return save_png(grid(cells), Path(path))
