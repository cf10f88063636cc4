"""From a sample's member bytes to a batch entry, and entries to a batch.

`SampleMaker` decodes the members the loader's mode asks for, cuts the same
crop box and flips from every image of a sample (aligned lq / mq / hq), and
lets the mode (pipeline.data.modes) make the entry. Crop draws come from
D.rng(seed, epoch, "crop", key, repeat): the same on every rank and worker,
and new each epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import get_worker_info

import degradations as D
from pipeline.data.catalog import Catalog, member_sha_prefix
from pipeline.data.modes import Entry, Mode
from shards import decode, image_size
from shards.codec import decode_map
from shards.format import MAP_KINDS, map_kind


class UnusableSample(Exception):
    """A sample whose stored members are missing, undecodable or inconsistent: damaged data, which the
    loader replaces and reports. Any other exception while making an entry is a bug and propagates."""


@dataclass(frozen=True)
class SampleMaker:
    """Decodes, crops, flips one sample and has the mode make its entry; pure given its inputs."""

    catalog: Catalog
    mode: Mode
    seed: int
    crop: int | None  # square side; None keeps the whole patch
    augment: bool  # random box and flips; False: centre box, no flips
    verify: bool = True  # members checked against the manifest's SHA-256 before decoding
    maps: bool = False  # also the severity and quality maps of each degraded image read

    @property
    def reads(self) -> tuple[str, ...]:
        """The member kinds read from the tar: the mode's, and with maps those of its degraded tiers."""
        if not self.maps:
            return self.mode.reads
        return self.mode.reads + tuple(map_kind(t, k) for t in self.mode.reads if t != "hq" for k in MAP_KINDS)

    def make(self, sid: int, members: dict[str, bytes], epoch: int, repeat: int, draw: int | None = None) -> dict[str, Any]:
        """The batch entry of sample `sid`: key, type and the mode's fields (images may be strided views)."""
        key = str(self.catalog.keys[sid])
        names = self.mode.decodes(draw)
        missing = [n for n in names if n not in members]
        if missing:
            raise UnusableSample(f"sample {key} has no {'/'.join(missing)} member")
        if self.verify and self.catalog.member_sha is not None:
            for n in names:
                expected = int(self.catalog.member_sha[sid, D.TIERS.index(n)]) if n in D.TIERS else 0
                if expected and member_sha_prefix(members[n]) != expected:
                    raise UnusableSample(f"sample {key}: its {n} member is not the one the manifest lists (SHA-256)")
        # The manifest's size bounds what is decoded: a member that claims more pixels (a PNG bomb)
        # is refused from its header before any memory is spent on it.
        width, height = (int(v) for v in self.catalog.sizes[sid])
        for n in names:
            size = image_size(members[n])
            if size is not None and size != (width, height):
                raise UnusableSample(f"sample {key}: its {n} member is {size[0]}x{size[1]}, the manifest says {width}x{height}")
        try:
            decoded = {n: decode(members[n], view=True) for n in names}
        except (ValueError, cv2.error) as err:
            raise UnusableSample(f"sample {key}: {err}") from None
        shapes = {im.shape for im in decoded.values()}
        if len(shapes) > 1:
            raise UnusableSample(f"sample {key}: tiers differ in size {sorted(shapes)}")
        window = self._window(D.rng(self.seed, epoch, "crop", key, repeat), *next(iter(shapes))[:2])
        images = {n: _cut(im, window) for n, im in decoded.items()}
        if self.maps:
            images.update(self._maps(key, names, members, window, next(iter(shapes))[:2]))
        entry = Entry(self.catalog, sid, key, self.catalog.type_of(sid), self.seed, epoch, repeat)
        return {"key": key, "type": entry.type, **self.mode.make(entry, images, draw)}

    def _maps(self, key: str, names: tuple[str, ...], members: dict[str, bytes], window: tuple, shape: tuple[int, int]) -> dict[str, np.ndarray]:
        """The severity and quality maps of the decoded tiers, H x W float32 in [0, 1], cut by `window`.
        hq has none stored: it is clean, severity 0 and quality 1 everywhere."""
        out = {}
        for tier in names:
            for kind in MAP_KINDS:
                name = map_kind(tier, kind)
                if tier == "hq":
                    out[name] = np.full(window[2:4], 0.0 if kind == "sev" else 1.0, np.float32)
                    continue
                if name not in members:
                    raise UnusableSample(f"sample {key} has no {name} member (was its build made with --maps?)")
                try:
                    values = decode_map(members[name])
                except ValueError as err:
                    raise UnusableSample(f"sample {key}: its {name} member: {err}") from None
                if values.shape != shape:
                    raise UnusableSample(f"sample {key}: its {name} member is {values.shape[1]}x{values.shape[0]}, its image {shape[1]}x{shape[0]}")
                out[name] = _cut(values, window)
        return out

    def _window(self, rng: np.random.Generator, h: int, w: int) -> tuple[int, int, int, int, bool, bool]:
        """(y, x, height, width, flip left-right, flip up-down)."""
        ch, cw = (h, w) if self.crop is None else (self.crop, self.crop)
        if ch > h or cw > w:
            raise UnusableSample(f"crop {self.crop} is larger than the stored {w}x{h} image")
        if not self.augment:
            return (h - ch) // 2, (w - cw) // 2, ch, cw, False, False
        y, x, flips = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1)), rng.integers(2, size=2)
        return y, x, ch, cw, bool(flips[0]), bool(flips[1])


def _cut(image: np.ndarray, window: tuple[int, int, int, int, bool, bool]) -> np.ndarray:
    y, x, h, w, flip_lr, flip_ud = window
    view = image[y : y + h, x : x + w]
    return view[::-1 if flip_ud else 1, ::-1 if flip_lr else 1]


def collate(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """A dict batch by the kind of each field: images to B x 3 x H x W float32 in [0, 1], floats to
    float32 and ints to int64 tensors, anything else (key, type) to a list."""
    batch: dict[str, Any] = {}
    for name, first in entries[0].items():
        values = [e[name] for e in entries]
        if isinstance(first, np.ndarray):
            batch[name] = _to_tensor(values)
        elif isinstance(first, (float, np.floating)):
            batch[name] = torch.tensor(values, dtype=torch.float32)
        elif isinstance(first, (int, np.integer)) and not isinstance(first, bool):
            batch[name] = torch.tensor(values, dtype=torch.int64)
        else:
            batch[name] = values
    return batch


def _to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """One pass per image from its (possibly flipped) H x W x 3 view into B x 3 x H x W float32;
    a map (H x W float32 in [0, 1]) becomes B x 1 x H x W."""
    h, w = images[0].shape[:2]
    if images[0].ndim == 2:
        return torch.from_numpy(np.stack(images)[:, None].astype(np.float32, copy=False))
    batch = _empty((len(images), 3, h, w))
    out = batch.numpy()
    for i, image in enumerate(images):
        np.divide(image.transpose(2, 0, 1), np.float32(255), out=out[i], dtype=np.float32)
    return batch


def _empty(shape: tuple[int, ...]) -> torch.Tensor:
    """A float32 batch. In a DataLoader worker it is made in shared memory, as torch's default_collate
    does, which saves a copy per batch on its way to the main process. torch allocates it either way:
    numpy would advise huge pages, whose zeroing costs more than the conversion."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=torch.float32)
    prototype = torch.empty(0, dtype=torch.float32)
    storage = prototype._typed_storage()._new_shared(math.prod(shape), device="cpu")
    return prototype.new(storage).resize_(shape)
