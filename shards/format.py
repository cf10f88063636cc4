"""The on-disk format of a build: file and member names, table schemas, the version, and `open_build`.

Everything that writes or reads a build goes through here, so the format is
known in one place (its specification, for people and other tools, is
shards/FORMAT.md). A build is:

    OUT/dataset.json                          the build record (`make_record`)
    OUT/{split}/{type_dir}/shard-NNNNNN.tar   webdataset shard: KEY.hq.EXT, KEY.mq.EXT, KEY.lq.EXT, KEY.json
                                              (with --maps also KEY.{mq,lq}_sev.png and KEY.{mq,lq}_qmap.png)
    OUT/{split}/{type_dir}/shard-NNNNNN.parquet   its manifest, written last: it marks the shard done
    OUT/manifest.parquet                      every image, one row each (MANIFEST_SCHEMA)
    OUT/errors.parquet                        every photo or sample that could not be used (ERRORS_SCHEMA)

A paper-scheme build (`config.tiers == "paper"`) holds KEY.hq.EXT, KEY.lq.EXT and KEY.json in its
shards; `perceive-ir render-medium` adds the mq images beside them, never rewriting a shard:

    OUT/{split}/{type_dir}/shard-NNNNNN.mq.tar      KEY.mq.EXT, KEY.medium.json per sample
    OUT/{split}/{type_dir}/shard-NNNNNN.mq.parquet  its rows (MEDIUM_SCHEMA), written last
    OUT/medium.parquet                              every mq image, one row each
    OUT/medium.json                                 the render record: models, folds, counts

A reader opens a build with `open_build(OUT)`, which refuses a folder that
is not a build, a build of another format version (naming both), and,
unless asked otherwise, a build that is not finished.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

import degradations as D
from shards.files import atomic_output

FORMAT = "perceive-ir/shards"
# 2: dataset.json records the calibration whole (D.Calibration.to_record), and shard manifests
# carry the version in their metadata. 3: config.tiers names the tier scheme (bands or paper); a
# paper build's mq images live in companion shards. 4: severity and quality maps (config.maps), their
# statistics in the manifest's map_* and quality_* and area_* columns (null without maps).
FORMAT_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)  # what open_build reads; a build is always written in FORMAT_VERSION

DATASET = "dataset.json"
MANIFEST = "manifest.parquet"
ERRORS = "errors.parquet"
MEDIUM = "medium.parquet"  # a paper build's rendered mq images (MEDIUM_SCHEMA)
MEDIUM_RECORD = "medium.json"  # how they were rendered
SHARD_GLOB = "*/*/shard-*"  # every shard file of a build, relative to OUT, without suffix
MEMBER_TIERS = tuple(reversed(D.TIERS))  # member order inside a sample: clean first
MEDIUM_KIND = "medium"  # the companion's per-sample record: KEY.medium.json (model, fold, input)


def member_tiers(scheme: str) -> tuple[str, ...]:
    """The tier members a build's shards hold under its tier scheme, in tar order."""
    return MEMBER_TIERS if scheme == "bands" else ("hq", "lq")


# A degraded image's maps, 8-bit greyscale PNG whatever the codec: its severity map (0-255 for
# severity 0-1) and its measured quality map (local SSIM 0-1 as 0-255).
MAP_KINDS = ("sev", "qmap")


def map_kind(tier: str, kind: str) -> str:
    """The member kind of a tier's map: `lq_sev`, `mq_qmap` (no dot: webdataset splits keys at dots)."""
    return f"{tier}_{kind}"

# Keys of a shard manifest's key-value metadata.
SHARD_ERRORS_KEY = b"perceive_ir.errors"  # the shard's error rows, as JSON (see shards.manifest)
SHARD_VERSION_KEY = b"perceive_ir.format_version"

MANIFEST_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("split", pa.string()),
        ("type", pa.string()),
        ("tier", pa.string()),
        ("severity", pa.float64()),
        ("score", pa.float64()),
        ("psnr", pa.float64()),  # null for hq: PSNR of identical images is infinite
        ("shard", pa.string()),  # tar path relative to OUT
        ("member", pa.string()),  # member name in the tar: KEY.TIER.EXT
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("bytes", pa.int64()),
        ("sha256", pa.string()),  # of the member's bytes
        ("source", pa.string()),  # source id: path relative to the source root, or builtin:NAME
        # Severity and quality maps (config.maps): their mean, min and max, and the fraction of the
        # image's pixels whose measured quality lies in each tier; null for hq and builds without maps.
        ("map_mean", pa.float64()),
        ("map_min", pa.float64()),
        ("map_max", pa.float64()),
        ("quality_mean", pa.float64()),
        ("quality_min", pa.float64()),
        ("quality_max", pa.float64()),
        ("area_lq", pa.float64()),
        ("area_mq", pa.float64()),
        ("area_hq", pa.float64()),
    ]
)

# A companion shard's rows: the manifest's columns, then the fold the sample belongs to and the
# digest of the model that rendered it (the SHA-256 of its checkpoint, or of the image folder's file).
MEDIUM_SCHEMA = MANIFEST_SCHEMA.append(pa.field("fold", pa.int32())).append(pa.field("model", pa.string()))

ERRORS_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("split", pa.string()),
        ("type", pa.string()),  # null when the photo itself is unusable
        ("key", pa.string()),  # null when the photo itself is unusable
        ("tier", pa.string()),  # the tier out of reach of a skipped sample, else null
        ("reason", pa.string()),
    ]
)


class FormatError(D.UserError):
    """A folder or file that is not a (finished) build of this format version."""


def type_dir(name: str) -> str:
    """Directory and key form of a type: `low_light+rain` -> `low_light-rain`.

    Type names hold only [a-z0-9_], so '-' is free to stand for '+' and the
    mapping is reversible; '+' and '.' stay out of keys (webdataset splits a
    key at its first dot).
    """
    return name.replace("+", "-")


def shard_stem(split: str, type_name: str, index: int) -> str:
    """A shard's path relative to OUT, without suffix: train/noise/shard-000000."""
    return f"{split}/{type_dir(type_name)}/shard-{index:06d}"


def shard_manifest(tar: str) -> str:
    """The manifest beside a shard: its path or URL with the last `.tar` made `.parquet`."""
    head, sep, tail = tar.rpartition(".tar")
    if not sep:
        raise FormatError(f"{tar!r} does not name a .tar shard")
    return f"{head}.parquet{tail}"


def companion_tar(tar: str, tier: str = "mq") -> str:
    """The companion shard that holds a shard's rendered `tier` images: shard-000000.tar -> shard-000000.mq.tar."""
    head, sep, tail = tar.rpartition(".tar")
    if not sep:
        raise FormatError(f"{tar!r} does not name a .tar shard")
    return f"{head}.{tier}.tar{tail}"


def member_name(key: str, tier: str, extension: str) -> str:
    return f"{key}.{tier}.{extension}"


def record_member(key: str) -> str:
    """The sample's JSON record: source, patch box, split, and per tier severity, score and recipe."""
    return f"{key}.json"


def split_member(name: str) -> tuple[str, str]:
    """`dir/KEY.hq.png` -> (KEY, "hq"): webdataset's key (up to the first dot) and the member's kind."""
    key, _, suffix = name.rsplit("/", 1)[-1].partition(".")
    return key, suffix.split(".", 1)[0]


def make_record(
    config: Mapping[str, Any], types: Sequence[str], extension: str, calibration: D.Calibration,
    sources: Mapping[str, Any], source: str, calibration_file: str,
) -> dict[str, Any]:
    """The build record, its counts still null (the builder fills them in when it finishes).
    Everything but NOT_IDENTITY must match for a rerun into the same OUT to resume."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "engine_version": D.ENGINE_VERSION,
        "config": dict(config),
        "calibration": calibration.subset(types).to_record(),
        "sources": dict(sources),
        "layout": {
            "shards": "{split}/{type_dir}/shard-{index:06d}.tar",
            "type_dirs": {t: type_dir(t) for t in types},
            "members": [member_name("KEY", tier, extension) for tier in member_tiers(config.get("tiers", "bands"))]
            + [member_name("KEY", map_kind(t, k), "png") for t in member_tiers(config.get("tiers", "bands")) if t != "hq"
               for k in MAP_KINDS if config.get("maps")]
            + [record_member("KEY")],
            "null_psnr": "hq images are the clean patch: psnr is null (infinite), score is the metric of identical images",
        },
        "source": source,
        "calibration_file": calibration_file,
        "counts": None,
    }


NOT_IDENTITY = ("source", "calibration_file", "counts")  # record fields a resumed build may change


def read_record(root: str | Path) -> dict[str, Any] | None:
    """OUT's build record as written, or None when OUT has none; {} when it cannot be parsed."""
    path = Path(root) / DATASET
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def write_record(root: Path, record: Mapping[str, Any]) -> None:
    with atomic_output(root / DATASET) as tmp:
        tmp.write_text(json.dumps(dict(record), indent=1) + "\n")


def shard_version(schema: pa.Schema) -> int | str:
    """The format version a shard manifest was written in (version 1 did not record it)."""
    value = (schema.metadata or {}).get(SHARD_VERSION_KEY)
    if value is None:
        return 1
    return int(value) if value.isdigit() else value.decode(errors="replace")


def check_version(version: Any, where: str) -> None:
    if version not in READABLE_VERSIONS:
        *rest, last = (str(v) for v in READABLE_VERSIONS)
        readable = f"{', '.join(rest)} and {last}" if rest else last
        raise FormatError(
            f"{where} was written in build format version {version}; this perceive-ir reads versions {readable}: "
            "read it with the perceive-ir that wrote it, or rebuild it with this one (`perceive-ir build ... --overwrite`)"
        )


@dataclass(frozen=True)
class Build:
    """A build on disk: its record (dataset.json) and its tables, read on demand."""

    root: Path
    record: Mapping[str, Any]

    @property
    def config(self) -> Mapping[str, Any]:
        return self.record["config"]

    @property
    def types(self) -> list[str]:
        return list(self.config["types"])

    @property
    def splits(self) -> list[str]:
        return list(self.config["splits"])

    @property
    def tiers(self) -> str:
        """The tier scheme: bands (builds before format 3 are) or paper."""
        return self.config.get("tiers", "bands")

    @property
    def rendered(self) -> bool:
        """Whether a paper build's mq images are all rendered (a bands build holds its own)."""
        return self.tiers == "bands" or ((self.root / MEDIUM).is_file() and (self.medium_record() or {}).get("counts") is not None)

    def medium_record(self) -> dict[str, Any] | None:
        """medium.json, as `perceive-ir render-medium` wrote it, or None."""
        path = self.root / MEDIUM_RECORD
        return json.loads(path.read_text()) if path.is_file() else None

    def medium(self, columns: Sequence[str] | None = None, filters: Any = None) -> pa.Table:
        """Rows of medium.parquet (a paper build's rendered mq images)."""
        return _read_table(self.root / MEDIUM, columns=list(columns) if columns else None, filters=filters)

    @cached_property
    def calibration(self) -> D.Calibration:
        """The calibration the build was tiered with: metric, bands and the curves of its types."""
        record = self.record["calibration"]
        if self.record.get("format_version") == 1:  # ranges and notes only: the curves were not kept
            types = {t: {"severities": [], "mean": [], "std": [], "ranges": c["ranges"], "notes": c.get("notes", [])}
                     for t, c in record["types"].items()}
            record = {**record, "types": types}
        return D.Calibration.from_record(record)

    @property
    def counts(self) -> Mapping[str, Any] | None:
        return self.record.get("counts")

    @property
    def finished(self) -> bool:
        return self.counts is not None and (self.root / MANIFEST).is_file() and (self.root / ERRORS).is_file()

    def manifest(self, columns: Sequence[str] | None = None, filters: Any = None) -> pa.Table:
        """Rows of manifest.parquet: the columns asked for, filtered as pyarrow filters say."""
        return _read_table(self.root / MANIFEST, columns=list(columns) if columns else None, filters=filters)

    def errors(self) -> pa.Table:
        return _read_table(self.root / ERRORS)

    def path(self, relative: str) -> Path:
        """A shard (as the manifest's `shard` column names it) or other file of the build."""
        return self.root / relative


def _read_table(path: Path, **kwargs: Any) -> pa.Table:
    try:
        return pq.read_table(path, **kwargs)
    except (OSError, pa.ArrowException) as err:
        raise FormatError(f"{path} cannot be read ({err}); rerun the `perceive-ir build` command to rewrite it") from None


def open_build(root: str | Path, *, finished: bool = True) -> Build:
    """The build in `root`; FormatError when it holds none, another format version, or (with
    `finished`) a build that a rerun of its command would still have to complete."""
    root = Path(root).expanduser()
    record = read_record(root)
    if record is None:
        what = "does not exist" if not root.exists() else f"holds no {DATASET}"
        raise FormatError(f"{root} {what}: not a perceive-ir build (give the folder `perceive-ir build --out` wrote)")
    if record.get("format") != FORMAT:
        raise FormatError(f"{root / DATASET} is not a perceive-ir build record")
    check_version(record.get("format_version"), str(root))
    build = Build(root, record)
    if finished and not build.finished:
        raise FormatError(
            f"the build in {root} is not finished; run the same `perceive-ir build` command again to complete it"
        )
    return build
