"""`perceive-ir benchmarks check`: what a benchmark folder holds, in plain words, before it is evaluated."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from pipeline.eval.benchmarks import Pairing, pair_spec, size_note
from shards import BadImage, load_image

# The first bytes of each format and the suffixes it may carry.
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG", (".png",)),
    (b"\xff\xd8\xff", "JPEG", (".jpg", ".jpeg")),
    (b"BM", "BMP", (".bmp",)),
    (b"II*\x00", "TIFF", (".tif", ".tiff")),
    (b"MM\x00*", "TIFF", (".tif", ".tiff")),
)


def sniff(path: Path) -> str | None:
    """The format named by a file's first bytes (PNG, JPEG, BMP, TIFF, WEBP), or None."""
    with path.open("rb") as f:
        head = f.read(12)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return next((name for magic, name, _ in _SIGNATURES if head.startswith(magic)), None)


def _suffix_fits(path: Path, kind: str | None) -> bool:
    suffixes = {name: sfx for _, name, sfx in _SIGNATURES} | {"WEBP": (".webp",)}
    return kind is None or path.suffix.lower() in suffixes[kind]


@dataclass
class BenchmarkCheck:
    pairing: Pairing
    sizes: dict[Path, tuple[int, int]] = field(default_factory=dict)  # (width, height) of each readable file
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    wrong_extension: list[tuple[Path, str]] = field(default_factory=list)
    duplicates: list[list[Path]] = field(default_factory=list)  # groups of files with identical pixels

    @property
    def size_mismatches(self) -> list[tuple[Path, Path]]:
        return [(d, c) for pairs in self.pairing.pairs.values() for d, c in pairs
                if d != c and d in self.sizes and c in self.sizes and self.sizes[d] != self.sizes[c]]

    @property
    def usable(self) -> bool:
        """Whether `perceive-ir eval` can score this folder as it is."""
        p = self.pairing
        return not (p.unpaired_degraded or p.ambiguous or self.size_mismatches or self.unreadable or not p.count)

    def format(self, limit: int = 5) -> str:
        p, bench = self.pairing, self.pairing.benchmark
        lines = [f"{bench.title} in {p.root}"]
        if p.layout is not None:
            lines.append(f"layout: degraded {p.layout.degraded}/, clean {p.layout.clean}/")
        if bench.note:
            lines.append(f"known about this set: {bench.note}")
        noun = "clean images" if bench.clean_only else "pairs"
        per_task = ", ".join(f"{t}: {len(v)}" for t, v in p.pairs.items()) if len(p.pairs) > 1 else ""
        lines.append(f"{p.count} {noun} found" + (f" ({per_task})" if per_task else "")
                     + (f"; {bench.title} has {bench.size}" if bench.size else "; no known size for this name"))
        note = size_note(bench, p.count)
        if note:
            lines.append(f"  note: {note}")

        def listed(title: str, items: list, show) -> None:
            if items:
                lines.append(f"{title}: {len(items)}")
                lines.extend(f"  {show(x)}" for x in items[:limit])
                if len(items) > limit:
                    lines.append(f"  ... and {len(items) - limit} more")

        listed("degraded images without a clean partner (eval refuses these)", p.unpaired_degraded, str)
        listed("clean images no degraded image uses", p.unpaired_clean, str)
        listed("pairing keys several clean files answer to (eval refuses these)", p.ambiguous,
               lambda kv: f"{kv[0]}: {', '.join(str(f.name) for f in kv[1])}")
        mismatches = self.size_mismatches
        listed("pairs whose sizes differ (eval refuses these)", mismatches,
               lambda dc: f"{dc[0]} {_wh(self.sizes[dc[0]])} vs {dc[1].name} {_wh(self.sizes[dc[1]])}")
        if mismatches:
            w = min(min(self.sizes[d][0], self.sizes[c][0]) for d, c in mismatches)
            h = min(min(self.sizes[d][1], self.sizes[c][1]) for d, c in mismatches)
            lines.append(f"  a crop both sides could take: the top-left {w}x{h} of each image of these pairs")
        listed("unreadable files", self.unreadable, lambda fr: f"{fr[0]}: {fr[1]}")
        listed("files whose content is not what their extension says (read by their content)", self.wrong_extension,
               lambda fk: f"{fk[0]} is a {fk[1]} file")
        listed("groups of images with identical pixels", self.duplicates, lambda g: ", ".join(str(f) for f in g))
        lines.append("usable as it is: " + ("yes" if self.usable else "no"))
        return "\n".join(lines)


def _wh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def check_benchmark(spec: str, progress: bool = True) -> BenchmarkCheck:
    """Pair `NAME=DIR`, then decode every file once: sizes, content against extension, duplicates."""
    pairing = pair_spec(spec)
    check = BenchmarkCheck(pairing)
    files = sorted({f for pairs in pairing.pairs.values() for pair in pairs for f in pair}
                   | set(pairing.unpaired_degraded) | set(pairing.unpaired_clean))
    by_pixels: dict[str, list[Path]] = {}
    for f in tqdm(files, desc="check", unit="image", disable=not progress):
        kind = sniff(f)
        if not _suffix_fits(f, kind):
            check.wrong_extension.append((f, kind))
        try:
            image = load_image(f)
        except BadImage as err:
            check.unreadable.append((f, str(err)))
            continue
        check.sizes[f] = (image.shape[1], image.shape[0])
        digest = hashlib.sha1(image.tobytes() + repr(image.shape).encode()).hexdigest()
        by_pixels.setdefault(digest, []).append(f)
    check.duplicates = [group for group in by_pixels.values() if len(group) > 1]
    return check
