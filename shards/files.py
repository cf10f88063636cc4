"""Atomic, reproducible output files.

Every file of a build is written under a temporary name in its final
directory and renamed into place (rename is atomic within a filesystem),
so a reader or a resumed build sees a whole file or none. Tar members carry
no time, owner or host: the bytes depend only on the members and their
order, which is what makes shards identical across runs and machines.
"""

from __future__ import annotations

import fcntl
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


LOCK = ".perceive-ir.lock"  # in OUT while a build runs; held by an flock, so a killed build frees it


@contextmanager
def folder_lock(folder: Path, what: str = "build") -> Iterator[None]:
    """Hold OUT for one process: a second build into it is refused, naming the holder's pid.

    An advisory flock on OUT/.perceive-ir.lock: the kernel drops it when the holder exits, however
    it exits, so a killed build never leaves OUT locked. The file is removed at the end (a build
    leaves only its own files); a process that locked a file already removed tries again. (On
    network filesystems flock may be local to one machine: run one build per OUT there.)
    """
    path = folder / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise D.OutputExists(
                f"{folder} is in use by another {what} (pid {holder}); wait for it to end, or give another --out"
            ) from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder removed the file between our open and our lock: a fresh one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)  # before the close, so nobody locks a file about to go
        os.close(fd)


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
