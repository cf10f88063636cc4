"""Where clean photos come from: a folder, a list of paths, or the builtin photos.

A source is a list of `Source` records in a fixed order (sorted relative
paths), so a plan built from it is a pure function of the files present.
Pixels are read only when a task needs them, through `load()`, which turns
every way a file can be unusable into a `BadImage` with a reason.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import degradations as D

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

    def load(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
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
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise BadImage(f"{w}x{h} = {w * h} pixels is over the limit of {max_pixels}")
                im = ImageOps.exif_transpose(im)
                if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                    array = np.asarray(im).astype(np.uint16, copy=False)
                else:
                    array = np.asarray(im.convert("RGBA" if "A" in im.getbands() else "RGB" if im.mode != "L" else "L"))
    except BadImage:
        raise
    except UnidentifiedImageError:
        raise BadImage("not an image PIL can identify") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise BadImage(f"decompression bomb: {err}") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise BadImage(f"corrupt or truncated image: {err}") from None
    try:
        return D.as_rgb_uint8(array)
    except ValueError as err:
        raise BadImage(str(err)) from None


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
        files = image_files(root)
        found = [Source(p.relative_to(root).as_posix(), str(p)) for p in files]
    else:
        found = [Source(p, str((root.parent / p) if not Path(p).is_absolute() else p)) for p in _read_list(root)]
    if not found:
        raise D.UserError(f"source {str(source)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    ids = [s.id for s in found]
    if len(set(ids)) != len(ids):
        raise D.UserError(f"source list {str(source)!r} names a file twice")
    return found


def image_files(folder: Path) -> list[Path]:
    """Every image file under `folder` (recursive, any case of IMAGE_SUFFIXES), sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


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
