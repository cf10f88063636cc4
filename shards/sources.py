"""Where clean photos come from: a folder, a list of paths, or the builtin photos.

A source is a list of `Source` records in a fixed order (sorted relative
paths), so a plan built from it is a pure function of the files present.
Pixels are read only when a task needs them, through `load()`, which turns
every way a file can be unusable into a `BadImage` with a reason.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import degradations as D
from shards.codec import pillow_pixel_limit_lifted

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
DEFAULT_MAX_PIXELS = 100_000_000  # beyond this a file is treated as a decompression bomb
BUILTIN = "builtin"


class BadImage(D.UserError):
    """A source file that cannot be used; the message is the reason recorded in the errors table."""


@dataclass(frozen=True)
class Source:
    """One clean photo: `id` is its path relative to the source root (or `builtin:NAME`)."""

    id: str
    path: str | None  # None for builtin photos
    # What the file was when listed (os.stat; None when it could not be stat'ed): a resume compares
    # them, so a photo edited between a kill and the rerun is not mixed into a half-done build.
    size: int | None = None
    mtime_ns: int | None = None
    problem: str | None = None  # found but unusable whatever its content (a broken link, an unreadable folder)

    def load(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
        if self.problem:
            raise BadImage(self.problem)
        return load_photo(self.id if self.path is None else self.path, max_pixels)


def load_photo(spec: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A photo by path, or `builtin:NAME` for one of the builtin photos."""
    spec = str(spec)
    if spec.startswith(f"{BUILTIN}:"):
        return D.builtin_photo(spec.split(":", 1)[1])
    return load_image(spec, max_pixels)


def load_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a photo as uint8 RGB with its EXIF orientation applied; BadImage if unusable."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise BadImage(f"cannot read: {err.strerror}") from err
    if size == 0:
        raise BadImage("empty file (0 bytes)")
    try:
        # --max-pixels is the one limit, checked from the header before anything is decoded: Pillow's
        # own (89.5 MP) would refuse larger photos first.
        with pillow_pixel_limit_lifted():
            opened = Image.open(path)  # the header only
        with opened:
            w, h = opened.size
            if w * h > max_pixels:
                raise BadImage(f"{w}x{h} = {w * h} pixels is over the limit of {max_pixels} (--max-pixels; "
                               "a decompression bomb, or a photo to allow with a higher limit)")
            im = ImageOps.exif_transpose(opened)
            array = _high_bit_depth(im) if im.mode.startswith(("I", "F")) else None
            if array is None:
                array = np.asarray(im.convert("RGBA" if "A" in im.getbands() else "RGB" if im.mode != "L" else "L"))
    except BadImage:
        raise
    except UnidentifiedImageError:
        raise BadImage("not an image PIL can identify") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise BadImage(f"corrupt or truncated image: {err}") from None
    try:
        return D.as_rgb_uint8(array)
    except ValueError as err:
        raise BadImage(str(err)) from None


def _high_bit_depth(im) -> np.ndarray:
    """One-channel 16-bit, 32-bit integer or float images as uint16, scaled like a 16-bit PNG.

    32-bit integers (Pillow's signed mode I) fill 0..2**31-1 (values all below 2**16 are 16-bit
    data in a wider container, as some scanners write them); floats are linear in [0, 1]. Anything else (negative values, HDR
    floats above 1, NaN) has no display scaling to guess: refused with the reason.
    """
    array = np.asarray(im)
    if im.mode.startswith("I;16"):
        return array.astype(np.uint16, copy=False)
    if im.mode == "F":
        if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
            raise BadImage(f"float image with values in [{np.nanmin(array):g}, {np.nanmax(array):g}]: only [0, 1] "
                           "(linear, display-referred) is read; tone-map HDR images first")
        return np.round(array.astype(np.float64) * 65535).astype(np.uint16)
    if array.min() < 0:
        raise BadImage(f"32-bit integer image with negative values (min {array.min()}): no display scaling to assume")
    if array.max() < 1 << 16:
        return array.astype(np.uint16)
    return (array.astype(np.int64) >> 15).astype(np.uint16)


def load_sources(source: str | Path, limit: int | None = None) -> tuple[dict[str, np.ndarray], list[tuple[str, str]]]:
    """The photos of `source` (the first `limit`, in source order) by id, and (id, reason) for each unusable one."""
    images, unusable = {}, []
    for src in list_sources(source)[:limit]:
        try:
            images[src.id] = src.load()
        except BadImage as err:
            unusable.append((src.id, str(err)))
    return images, unusable


def list_sources(source: str | Path) -> list[Source]:
    """Every photo of `source`: `builtin`, a folder (recursive), or a .txt / .parquet list of paths.

    Raises D.InputNotFound or D.UserError before any work when the source is
    missing or holds no image files.
    """
    if str(source) == BUILTIN:
        return [Source(f"{BUILTIN}:{name}", None) for name in D.BUILTIN_PHOTOS]
    # Absolute, so tasks find the files whatever the working directory of the worker running them.
    root = Path(source).expanduser().absolute()
    if not root.exists():
        raise D.InputNotFound(f"source {str(source)!r} does not exist (give a folder, a .txt or .parquet list, or 'builtin')")
    if root.is_dir():
        found = _folder_sources(root)
    else:
        found = [_stat_source(p, (root.parent / p) if not Path(p).is_absolute() else Path(p)) for p in _read_list(root)]
    if not found:
        raise D.UserError(f"source {str(source)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    ids = [s.id for s in found]
    if len(set(ids)) != len(ids):
        raise D.UserError(f"source list {str(source)!r} names a file twice")
    return found


def image_files(folder: Path) -> list[Path]:
    """Every image file under `folder` (recursive, any case of IMAGE_SUFFIXES), sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_name(p.name))


def is_image_name(name: str) -> bool:
    """Whether a file name says image (any case of IMAGE_SUFFIXES)."""
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def printable_id(relative: str) -> str:
    """A relative path as a source id: names that are not valid UTF-8 get their bytes escaped
    (`caf\\xe9.jpg`), so ids can be written to JSON and parquet; the file is read by its real name."""
    return os.fsencode(relative).decode("utf-8", "backslashreplace")


def _stat_source(source_id: str, path: Path) -> Source:
    try:
        st = path.stat()
    except OSError as err:
        problem = "broken symbolic link" if path.is_symlink() else f"cannot read: {err.strerror}"
        return Source(printable_id(source_id), str(path), problem=problem)
    if not stat.S_ISREG(st.st_mode):
        return Source(printable_id(source_id), str(path), st.st_size, st.st_mtime_ns, "not a regular file")
    return Source(printable_id(source_id), str(path), st.st_size, st.st_mtime_ns)


def _folder_sources(root: Path) -> list[Source]:
    """Every image-named entry under `root`, usable or not: what cannot be used (a broken link, a FIFO,
    a folder that cannot be listed) is a Source whose load() says why, so it becomes an error row
    rather than disappearing. Symbolic links to folders are not followed (a link loop cannot recur)."""
    found = []

    def unreadable(err: OSError) -> None:
        folder = Path(err.filename)
        if folder != root:  # the root itself failing is the user's error, raised below
            found.append(Source(printable_id(folder.relative_to(root).as_posix()) + "/", str(folder),
                                problem=f"folder cannot be read: {err.strerror}"))

    for folder, _, names in os.walk(root, onerror=unreadable):
        for name in names:
            if is_image_name(name):
                path = Path(folder, name)
                found.append(_stat_source(path.relative_to(root).as_posix(), path))
    if not os.access(root, os.R_OK | os.X_OK):
        raise D.UserError(f"source folder {root} cannot be read")
    return sorted(found, key=lambda s: Path(s.id).parts)  # path order, as image_files lists


def _read_list(path: Path) -> list[str]:
    if path.suffix.lower() == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as err:
            raise D.UserError(f"source list {path} cannot be read as parquet: {err}") from None
        column = "path" if "path" in table.column_names else table.column_names[0]
        return [str(p) for p in table.column(column).to_pylist() if p]
    if path.suffix.lower() in (".txt", ".lst", ".csv"):
        lines = (line.strip() for line in path.read_text().splitlines())
        return [line for line in lines if line and not line.startswith("#")]
    raise D.UserError(f"source file {str(path)!r} must be a .txt or .parquet list of image paths")
