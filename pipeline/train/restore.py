"""Using a trained restorer: load it from a run, restore an array, restore files.

    from pipeline import load_restorer, restore
    model = load_restorer("runs/restorer")          # a run folder, or its last.pt
    clean = restore(model, noisy)                   # uint8 H x W x 3 in, uint8 H x W x 3 out

Large images are restored tile by tile with overlap, the tiles blended with
linear ramps, so memory stays bounded and no seam shows. Loading never
contacts a hub: every weight, the frozen semantic network's included, comes
from the checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

import degradations as D
import shards
from pipeline.eval.metrics import to_tensor, to_uint8
from pipeline.train.stages import get_stage

TILE, OVERLAP = 512, 32  # px: a 512 x 512 tile of the paper's Restormer fits in a few GB


def load_restorer(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The restorer of a run folder (config.yaml + last.pt) or of its last.pt, in eval mode on `device`."""
    path = Path(path)
    run = path.parent if path.is_file() else path
    return get_stage("restorer").load_trained(run, torch.device(device))


@torch.no_grad()
def restore(model: nn.Module, image: np.ndarray, *, tile: int = TILE, overlap: int = OVERLAP,
            progress: Callable[[int], None] | None = None) -> np.ndarray:
    """`image` (uint8 H x W x 3 RGB; grayscale, RGBA and 16-bit are converted) restored by `model`.

    Images larger than `tile` are cut into tiles of that side overlapping by
    `overlap` px; each output pixel is the ramp-weighted mean of the tiles that
    cover it. `progress` is called with 1 after each tile.
    """
    _check_tiling(tile, overlap)
    image = D.as_rgb_uint8(image)
    device = next(model.parameters()).device
    h, w = image.shape[:2]
    x = to_tensor(image, device)
    out = torch.zeros(3, h, w, device=device)
    weight = torch.zeros(1, h, w, device=device)
    for y0, y1, x0, x1 in _tiles(h, w, tile, overlap):
        restored = model(x[..., y0:y1, x0:x1])[0].clamp(0, 1)
        ramp = _ramp(y1 - y0, x1 - x0, overlap, (y0 > 0, y1 < h, x0 > 0, x1 < w), device)
        out[:, y0:y1, x0:x1] += restored * ramp
        weight[:, y0:y1, x0:x1] += ramp
        if progress:
            progress(1)
    return to_uint8((out / weight)[None])[0]


def _check_tiling(tile: int, overlap: int) -> None:
    if tile < 16 or not 0 <= overlap < tile // 2:
        raise D.UserError(f"--tile {tile} must be at least 16 px and --overlap {overlap} at least 0 and less than half of it")


def _tiles(h: int, w: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) of tiles of side `tile` (or the image's side) covering the image, neighbours overlapping by >= `overlap`."""

    def starts(n: int) -> list[int]:
        if n <= tile:
            return [0]
        count = -(-(n - overlap) // (tile - overlap))
        return [round(i * (n - tile) / (count - 1)) for i in range(count)]

    return [(y, min(y + tile, h), x, min(x + tile, w)) for y in starts(h) for x in starts(w)]


def _ramp(h: int, w: int, overlap: int, inner: tuple[bool, bool, bool, bool], device: torch.device) -> torch.Tensor:
    """Weights rising linearly over `overlap` px along the tile's edges that border another tile."""
    top, bottom, left, right = inner

    def axis(n: int, start: bool, end: bool) -> torch.Tensor:
        ramp = torch.ones(n, device=device)
        steps = torch.arange(1, overlap + 1, device=device, dtype=torch.float32) / (overlap + 1)
        if start and overlap:
            ramp[:overlap] = steps
        if end and overlap:
            ramp[-overlap:] = torch.minimum(ramp[-overlap:], steps.flip(0))
        return ramp

    return axis(h, top, bottom)[:, None] * axis(w, left, right)[None, :]


def restore_files(checkpoint: str | Path, source: str | Path, out: str | Path, *, device: str | torch.device = "cpu",
                  tile: int = TILE, overlap: int = OVERLAP, progress: bool = True) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Restore one image file into the file `out`, or every image under a folder into the folder `out`
    (same relative paths and formats). Returns the files written, and (file, reason) for each
    unusable one, which is skipped."""
    from PIL import Image
    from tqdm import tqdm

    _check_tiling(tile, overlap)
    source, out = Path(source), Path(out)
    if not source.exists():
        raise D.InputNotFound(f"{source} does not exist")
    if source.is_dir():
        pairs = [(p, out / p.relative_to(source)) for p in shards.image_files(source)]
        if not pairs:
            raise D.UserError(f"{source} holds no images ({', '.join(shards.IMAGE_SUFFIXES)})")
    else:
        pairs = [(source, out / source.name if out.is_dir() else out)]
    for _, dest in pairs:
        if dest.suffix.lower() not in shards.IMAGE_SUFFIXES:
            raise D.UserError(f"cannot write {dest}: give an image name ending in {', '.join(shards.IMAGE_SUFFIXES)}")
    model = load_restorer(checkpoint, device)

    def tiles(path: Path) -> int:  # from the header alone: images are decoded one at a time
        try:
            with Image.open(path) as im:
                return len(_tiles(im.height, im.width, tile, overlap))
        except (OSError, ValueError):
            return 0

    written, unusable = [], []
    with tqdm(total=sum(tiles(src) for src, _ in pairs), unit="tile", desc="restore", disable=not progress) as bar:
        for src, dest in pairs:
            try:
                image = shards.load_image(src)
            except shards.BadImage as err:
                unusable.append((src, str(err)))
                continue
            written.append(_save(restore(model, image, tile=tile, overlap=overlap, progress=bar.update), dest))
    return written, unusable


def _save(image: np.ndarray, path: Path) -> Path:
    from PIL import Image

    shards.output_folder(path.parent)
    options = {"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg", ".webp") else {}
    with shards.atomic_output(path) as tmp:
        Image.fromarray(image).save(tmp, format=Image.registered_extensions()[path.suffix.lower()], **options)
    return path
