"""Checkpoints that resume exactly: model, optimiser, scheduler, step, RNG and loader state.

Written by rank 0 to a temporary name and renamed, so a crash never leaves a
half-written `last.pt`; read with `torch.load(weights_only=True)`, which
refuses anything but tensors and plain containers (no pickled code).

Each checkpoint has its SHA-256 beside it (`last.pt.sha256`), checked on load:
a file damaged on disk (flipped bytes, a truncated copy) is refused by name
instead of resuming from garbage weights. Before a save replaces `last.pt`,
the previous verified one becomes `previous.pt`, so one damaged file never
loses the whole run.
"""

from __future__ import annotations

import hashlib
import os
import pickle  # only for its exception: torch.load(weights_only=True) raises it for a foreign file
from pathlib import Path
from typing import Any

import torch

from degradations import InputNotFound, UserError
from shards import atomic_output

PREVIOUS = "previous.pt"


class CheckpointDamaged(UserError):
    """A checkpoint whose bytes are not the ones written (digest mismatch) or that does not load."""


def digest_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: str | Path) -> None:
    """CheckpointDamaged unless `path` matches its recorded digest. A checkpoint without one
    (written before digests, or a crash between the two renames) passes: its rename was atomic."""
    path = Path(path)
    recorded = digest_path(path)
    if not recorded.is_file():
        return
    try:
        expected = recorded.read_text().split()[0]
    except (UnicodeDecodeError, IndexError, OSError):
        raise CheckpointDamaged(f"{path}: its digest file {recorded.name} is damaged") from None
    if expected != _sha256(path):
        raise CheckpointDamaged(f"{path} is damaged: its SHA-256 differs from the one written with it ({recorded.name})")


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` to `path` with its digest; a verified checkpoint already there becomes previous.pt."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        try:
            verify(path)
        except CheckpointDamaged:
            pass  # a damaged one is not worth keeping: the new one replaces it
        else:
            previous = path.with_name(PREVIOUS)
            os.replace(path, previous)
            if digest_path(path).is_file():
                os.replace(digest_path(path), digest_path(previous))
            else:
                digest_path(previous).unlink(missing_ok=True)
    digest_path(path).unlink(missing_ok=True)  # a crash before the new one is written leaves none, not a stale one
    with atomic_output(path) as tmp:
        torch.save(state, tmp)
        digest = _sha256(Path(tmp))
    with atomic_output(digest_path(path)) as tmp:
        Path(tmp).write_text(f"{digest}  {path.name}\n")
    return path


def load(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """The state saved at `path`, verified; InputNotFound or CheckpointDamaged otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFound(f"no checkpoint at {path}")
    verify(path)
    try:
        return torch.load(path, map_location=device, weights_only=True)
    # A truncated zip, a foreign file; random bytes read as a legacy pickle can also fail inside the
    # weights-only unpickler with a KeyError or IndexError (a memo or stack it never filled).
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, IndexError, pickle.UnpicklingError) as err:
        raise CheckpointDamaged(f"{path} does not load as a checkpoint ({type(err).__name__}: {str(err)[:200]})") from None
