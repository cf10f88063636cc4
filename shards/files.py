"""Atomic, reproducible output files.

Every file of a build is written under a temporary name in its final
directory and renamed into place (rename is atomic within a filesystem),
so a reader or a resumed build sees a whole file or none. Tar members carry
no time, owner or host: the bytes depend only on the members and their
order, which is what makes shards identical across runs and machines.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import degradations as D

TEMP_SUFFIX = ".partial"  # leftovers of a killed build end in this; `build` removes them
_MTIME = 0  # fixed, so a tar made today and one made next year are equal


def output_folder(folder: str | Path, what: str = "output folder") -> Path:
    """`folder`, made with its parents; NotWritable naming `what` when that cannot be done."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise D.NotWritable(f"cannot make the {what} {folder}: {err.strerror or err}") from None
    return folder


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed to `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)  # mkstemp makes 0600 files; datasets are shared
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())  # the rename marks the file done; its bytes must be on disk first
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextmanager
def shard_writer(path: str | Path) -> Iterator[Callable[[str, bytes], None]]:
    """Write a tar member by member (memory stays at one member); it appears at `path` on success.

    with shard_writer(path) as add:
        add("KEY.hq.png", data)
    """
    with atomic_output(path) as tmp, tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = _MTIME
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))

        yield add
