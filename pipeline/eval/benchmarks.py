"""The standard restoration test sets: how their distributors lay them out, and how their pairs are made.

Each `Benchmark` names its task, its known size, the folder layouts it ships in and how a
degraded file finds its clean partner: by the same relative path first, then (for the files
left over) by its rule, most often the first number of the file name. `--bench rain100l=DIR`
finds the layout by itself; any other name is read with the generic layout (a degraded and a
clean subfolder by their usual names). A pairing in which two clean files answer to one key is
refused: it would score images against the wrong partner.

Noise sets are clean images only: they are noised here with the papers' protocol (Gaussian
noise added to the clean image, clipped to [0, 255] and truncated to uint8, at sigma 15 / 25 / 50),
seeded by (relative path, sigma) so the table is the same on every run and machine.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import degradations as D
from shards import image_files, load_image

NOISE_SIGMAS = (15, 25, 50)
_DEGRADED_NAMES = ("input", "rainy", "rain", "hazy", "haze", "low", "blur", "synthetic", "snow", "degraded", "lq")
_CLEAN_NAMES = ("target", "gt", "groundtruth", "norain", "clear", "high", "sharp", "clean", "hq")


def first_number(rel: str) -> str:
    """The pairing key of most sets: the folders, then the first number of the file name as an integer
    (`rain-001.png` -> `1`, SOTS's `0004_0.9_0.12.jpg` -> `4`, `norain-001.png` -> `1`)."""
    folder, _, name = rel.rpartition("/")
    m = re.search(r"\d+", name)
    key = str(int(m.group())) if m else Path(name).stem
    return f"{folder}/{key}" if folder else key


def same_stem(rel: str) -> str:
    """The relative path without its suffix."""
    return rel.rsplit(".", 1)[0]


@dataclass(frozen=True)
class Layout:
    """Where the images of a set lie below its root: `degraded` and `clean` are glob patterns of
    folders (`*/blur` for GoPro's per-sequence folders); the part a `*` matched is kept in the key,
    so GoPro's `SEQ/blur/1.png` pairs with `SEQ/sharp/1.png`."""

    degraded: str
    clean: str


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    task: str  # the degradation type it measures (a key of the engine's registry where one exists)
    size: int | None  # pairs (clean images for noise sets) in the complete set
    layouts: tuple[Layout, ...] = ()
    key: Callable[[str], str] = first_number
    clean_only: bool = False
    subsets: dict[int, str] = field(default_factory=dict)  # known partial copies, by pair count
    note: str = ""


def _noise(name: str, title: str, size: int, note: str = "") -> Benchmark:
    return Benchmark(name, title, "noise", size, clean_only=True, note=note)


_PAIRS = (Layout("input", "target"), Layout("lq", "gt"))
BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    _noise("cbsd68", "CBSD68", 68, "colour BSD68; portrait and landscape 481x321"),
    _noise("kodak24", "Kodak24", 24),
    _noise("mcmaster", "McMaster", 18),
    _noise("urban100", "Urban100", 100),
    Benchmark("rain100l", "Rain100L", "rain", 100, (Layout("rainy", "norain"), Layout("rain", "norain"), *_PAIRS),
              note="91 distinct backgrounds: 9 clean images are duplicated in the set itself; the 480x320 release is "
                   "cropped by 1 px from the original 481x321"),
    Benchmark("rain100h", "Rain100H", "rain", 100, (Layout("rainy", "norain"), Layout("rain", "norain"), *_PAIRS)),
    Benchmark("sots-outdoor", "SOTS outdoor", "haze", 500, (Layout("hazy", "gt"), Layout("hazy", "clear"),
              Layout("haze", "clear"), *_PAIRS), subsets={5: "the 5-pair subset shared for tests"},
              note="hazy XXXX_A_BETA.jpg pairs with XXXX.png"),
    Benchmark("sots-indoor", "SOTS indoor", "haze", 500, (Layout("hazy", "gt"), Layout("hazy", "clear"),
              Layout("haze", "clear"), *_PAIRS), note="10 hazy images per clear image (1400_1.png ... 1400_10.png -> 1400.png)"),
    Benchmark("hsts", "RESIDE HSTS", "haze", 10, (Layout("hazy", "gt"), Layout("haze", "clear"), Layout("hazy", "clear"), *_PAIRS),
              note="synthetic part; clear/8180.jpg is a PNG with an alpha channel"),
    Benchmark("gopro", "GoPro", "blur", 1111, (Layout("*/blur", "*/sharp"), Layout("blur", "sharp"), *_PAIRS),
              note="11 test sequences, each with blur/ and sharp/"),
    Benchmark("lol", "LOL v1 eval15", "low_light", 15, (Layout("low", "high"), Layout("eval15/low", "eval15/high"), *_PAIRS)),
    Benchmark("cdd11", "CDD-11", "composite", 2200, (Layout("[!c]*", "clear"),),
              note="11 degradation folders of 200 images (low, haze, rain, snow and their mixtures), each paired with clear/"),
    *(Benchmark(f"snow100k-{s.lower()}", f"Snow100K-{s}", "snow", n, (Layout("synthetic", "gt"), *_PAIRS), key=same_stem)
      for s, n in (("S", 16611), ("M", 16588), ("L", 16801))),
)}
ALIASES = {"bsd68": "cbsd68", "sots": "sots-outdoor", "lol-v1": "lol", "lolv1": "lol"}


def find_benchmark(name: str) -> Benchmark | None:
    """The registered set called `name` (any case, `_` for `-`, or an alias); None if unknown."""
    key = name.lower().replace("_", "-")
    return BENCHMARKS.get(ALIASES.get(key, key))


def generic(name: str) -> Benchmark:
    """An unregistered set: no known size or task, the usual subfolder names."""
    layouts = tuple(Layout(d, c) for d in _DEGRADED_NAMES for c in _CLEAN_NAMES)
    return Benchmark(name, name, "unknown", None, layouts, note="")


@dataclass
class Pairing:
    """The result of laying a set's files side by side (before any image is decoded)."""

    benchmark: Benchmark
    root: Path
    layout: Layout | None
    pairs: dict[str, list[tuple[Path, Path]]]  # per degraded folder (one task; CDD-11 has 11)
    unpaired_degraded: list[Path]
    unpaired_clean: list[Path]
    ambiguous: list[tuple[str, list[Path]]]  # a key held by several clean files

    @property
    def count(self) -> int:
        return sum(len(p) for p in self.pairs.values())


def _folders(root: Path, pattern: str) -> list[Path]:
    if not any(ch in pattern for ch in "*?["):
        path = root / pattern
        return [path] if path.is_dir() else []
    depth = pattern.count("/") + 1
    found = []
    for path in sorted(root.glob("/".join(["*"] * depth))):
        rel = path.relative_to(root).as_posix()
        if path.is_dir() and fnmatch.fnmatchcase(rel.lower(), pattern.lower()):
            found.append(path)
    return found


def _case_insensitive(root: Path, layout: Layout) -> Layout:
    """The layout with its literal folder names spelt as they are on disk (`Rainy/`, `GT/`)."""
    names = {p.name.lower(): p.name for p in root.iterdir() if p.is_dir()} if root.is_dir() else {}
    def spelt(pattern: str) -> str:
        head, sep, tail = pattern.partition("/")
        return names.get(head.lower(), head) + sep + tail if not any(ch in head for ch in "*?[") else pattern
    return Layout(spelt(layout.degraded), spelt(layout.clean))


def pair_benchmark(bench: Benchmark, root: str | Path) -> Pairing:
    """Pair the files of `root` by the first of `bench`'s layouts present there; UserError if none is."""
    root = Path(root)
    if not root.is_dir():
        raise D.InputNotFound(f"{bench.title} folder {root} does not exist")
    if bench.clean_only:
        # The top level only: distributions of noise sets often carry noisy copies in subfolders.
        files = sorted(p for p in image_files(root) if p.parent == root)
        if not files:
            raise D.UserError(f"{root} holds no images at its top level; {bench.title} is a folder of clean images")
        return Pairing(bench, root, None, {bench.name: [(p, p) for p in files]}, [], [], [])
    for layout in (_case_insensitive(root, lay) for lay in bench.layouts):
        degraded_dirs, clean_dirs = _folders(root, layout.degraded), _folders(root, layout.clean)
        clean_dirs = [c for c in clean_dirs if c not in degraded_dirs]
        if degraded_dirs and clean_dirs:
            return _pair(bench, root, layout, degraded_dirs, clean_dirs)
    if bench.size is None:  # generic: the two name lists, not their 99 combinations
        tried = f"a degraded subfolder ({'/'.join(_DEGRADED_NAMES)}) and a clean one ({'/'.join(_CLEAN_NAMES)})"
    else:
        tried = "one of its layouts (" + ", ".join(f"{lay.degraded}/ + {lay.clean}/" for lay in bench.layouts) + ")"
    raise D.UserError(f"{root} does not look like {bench.title}: expected {tried}; give NAME=DEGRADED_DIR:CLEAN_DIR "
                      "to name the two folders")


def _pair(bench: Benchmark, root: Path, layout: Layout, degraded_dirs: list[Path], clean_dirs: list[Path],
          split_tasks: bool | None = None) -> Pairing:
    # One task per degraded folder when the pattern names several (CDD-11); GoPro's sequences are one task.
    if split_tasks is None:
        split_tasks = "/" not in layout.degraded and any(ch in layout.degraded for ch in "*?[")
    pairs: dict[str, list[tuple[Path, Path]]] = {}
    unpaired: list[Path] = []
    used: set[Path] = set()
    ambiguous: dict[str, list[Path]] = {}
    # By the same relative path first; the benchmark's rule pairs what is left.
    rules = [same_stem] + ([bench.key] if bench.key is not same_stem else [])
    clean_files = [(folder, f) for folder in clean_dirs for f in image_files(folder)]  # listed once, keyed per rule
    clean_by_rule: list[dict[str, list[Path]]] = []
    for rule in rules:
        by_key: dict[str, list[Path]] = {}
        for folder, f in clean_files:
            by_key.setdefault(_key_of(rule, f, folder, root, layout.clean), []).append(f)
        clean_by_rule.append(by_key)
    for folder in degraded_dirs:
        task = f"{bench.name}_{folder.name.lower()}" if split_tasks else bench.name
        for f in image_files(folder):
            for rule, clean in zip(rules, clean_by_rule):
                key = _key_of(rule, f, folder, root, layout.degraded)
                partners = clean.get(key)
                if partners:
                    if len(partners) > 1:
                        ambiguous[key] = partners
                    pairs.setdefault(task, []).append((f, partners[0]))
                    used.add(partners[0])
                    break
            else:
                unpaired.append(f)
    return Pairing(bench, root, layout, {t: sorted(p) for t, p in sorted(pairs.items())}, sorted(unpaired),
                   sorted(f for _, f in clean_files if f not in used), sorted(ambiguous.items()))


def _key_of(rule: Callable[[str], str], path: Path, folder: Path, root: Path, pattern: str) -> str:
    """`path`'s key under `rule`; a `*` folder part of `pattern` (GoPro's sequence) is kept in it."""
    wild = any(ch in pattern for ch in "*?[") and "/" in pattern
    prefix = folder.relative_to(root).parts[0] + "/" if wild else ""
    return prefix + rule(path.relative_to(folder).as_posix())


def benchmark_noise(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """The papers' noise protocol: clean + N(0, sigma^2), clipped to [0, 255], truncated to uint8."""
    rng = np.random.default_rng(seed)
    return np.clip(clean.astype(np.float64) + rng.standard_normal(clean.shape) * sigma, 0, 255).astype(np.uint8)


def noise_seed(name: str, sigma: float) -> int:
    return D.derive_seed("benchmark-noise", name, sigma)


@dataclass
class BenchTask:
    """One row group of the all-in-one table: `task` (`rain100l`, `cbsd68_sigma25`) of `benchmark`."""

    name: str
    benchmark: Benchmark
    pairs: list[tuple[Path, Path]]
    sigma: float | None = None
    note: str = ""
    root: Path | None = None  # noise sets: seeds follow the path relative to it

    @property
    def degradation(self) -> str:
        return self.benchmark.task

    def __len__(self) -> int:
        return len(self.pairs)

    def images(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """(name, degraded, clean) uint8 RGB, decoded one pair at a time."""
        for degraded_path, clean_path in self.pairs:
            clean = load_image(clean_path)
            if self.sigma is not None:
                name = clean_path.relative_to(self.root).as_posix() if self.root else clean_path.name
                # Grayscale sets (BSD68) get their noise on the one channel, as the gray protocol
                # does: three equal channels score the PSNR and SSIM of that channel.
                gray = np.array_equal(clean[..., 0], clean[..., 1]) and np.array_equal(clean[..., 1], clean[..., 2])
                noisy = benchmark_noise(clean[..., :1] if gray else clean, self.sigma, noise_seed(name, self.sigma))
                yield name, np.repeat(noisy, 3, axis=2) if gray else noisy, clean
                continue
            degraded = load_image(degraded_path)
            if degraded.shape != clean.shape:
                raise D.UserError(
                    f"{degraded_path} is {degraded.shape[1]}x{degraded.shape[0]} but its clean image {clean_path.name} is "
                    f"{clean.shape[1]}x{clean.shape[0]}; `perceive-ir benchmarks check` lists every such pair"
                )
            yield degraded_path.name, degraded, clean


def parse_bench(spec: str) -> tuple[Benchmark, Path | tuple[Path, Path]]:
    """`NAME=DIR` or `NAME=DEGRADED_DIR:CLEAN_DIR` -> (the set, where it is)."""
    if "=" not in spec:
        raise D.UserError(f"benchmark {spec!r} must look like NAME=DIR or NAME=DEGRADED_DIR:CLEAN_DIR (known names: "
                          f"{', '.join(BENCHMARKS)})")
    name, where = spec.split("=", 1)
    bench = find_benchmark(name) or generic(name)
    if ":" in where and not bench.clean_only and not Path(where).is_dir():  # a folder may have ':' in its name
        degraded, clean = (Path(p) for p in where.split(":", 1))
        for p in (degraded, clean):
            if not p.is_dir():
                raise D.InputNotFound(f"benchmark folder {p} does not exist")
        return bench, (degraded, clean)
    return bench, Path(where)


def pair_spec(spec: str) -> Pairing:
    """The pairing of one `--bench` argument; an explicit DEGRADED_DIR:CLEAN_DIR pairs those two folders."""
    bench, where = parse_bench(spec)
    if isinstance(where, tuple):
        degraded, clean = where
        return _pair(bench, degraded.parent, Layout(degraded.name, clean.name), [degraded], [clean], split_tasks=False)
    return pair_benchmark(bench, where)


def benchmark_tasks(specs: Sequence[str]) -> list[BenchTask]:
    """The tasks of `--bench` arguments, every folder paired before anything is scored.

    Refuses a set with unpaired degraded images (naming a few), notes a set whose size differs from
    the benchmark's (a known subset by its name); noise sets give one task per sigma."""
    tasks: list[BenchTask] = []
    for spec in specs:
        pairing = pair_spec(spec)
        bench = pairing.benchmark
        if not pairing.count:
            raise D.UserError(f"{pairing.root}: no image pairs found (layout {pairing.layout.degraded}/ + {pairing.layout.clean}/)"
                              if pairing.layout else f"{pairing.root}: no images found")
        if pairing.ambiguous:
            key, files = pairing.ambiguous[0]
            raise D.UserError(f"{pairing.root}: {len(pairing.ambiguous)} pairing keys match several clean images, e.g. "
                              f"{', '.join(f.name for f in files[:3])} (key {key!r}): pairs would be wrong; "
                              f"`perceive-ir benchmarks check` lists them; give NAME=DEGRADED_DIR:CLEAN_DIR with one name per image")
        if pairing.unpaired_degraded:
            names = [p.name for p in pairing.unpaired_degraded[:3]]
            raise D.UserError(f"{pairing.root}: no clean image for {len(pairing.unpaired_degraded)} degraded images, e.g. {names}; "
                              f"`perceive-ir benchmarks check {bench.name} {pairing.root}` lists them")
        note = size_note(bench, pairing.count)
        if bench.clean_only:
            pairs = pairing.pairs[bench.name]
            tasks += [BenchTask(f"{bench.name}_sigma{s}", bench, pairs, sigma=s, note=note, root=pairing.root) for s in NOISE_SIGMAS]
        else:
            tasks += [BenchTask(task, bench, pairs, note=note) for task, pairs in pairing.pairs.items()]
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise D.UserError(f"a benchmark is given twice: {sorted({n for n in names if names.count(n) > 1})}")
    return tasks


def size_note(bench: Benchmark, count: int) -> str:
    """'' for a complete set; otherwise what the count means (a known subset, or how far from the known size)."""
    if bench.size is None or count == bench.size:
        return ""
    if count in bench.subsets:
        return f"{bench.subsets[count]} ({count} of {bench.size} pairs): not comparable with published tables"
    return f"{count} pairs where {bench.title} has {bench.size}: not comparable with published tables"
