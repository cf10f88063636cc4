"""Opening shard URLs and reading samples out of a tar, forward only.

`open_url` takes what webdataset's `gopen` takes (local paths, `file:`,
`pipe:CMD`, http(s), `gs:` through gsutil, ...) and any other protocol
fsspec knows (`s3://`, `gcs://`, `az://`, ... with s3fs, gcsfs, adlfs).
A local file is read with seeks, so members a reader does not want cost a
512-byte header; anything else is streamed front to back, or, given a cache
directory, downloaded once per machine and then read like a local file.

Members are only ever read as bytes: images are decoded with OpenCV, the
JSON is never needed, nothing is unpickled.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import tarfile
from collections.abc import Container, Generator
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

from shards.files import TEMP_SUFFIX, atomic_output
from shards.format import split_member

# Everything that a broken or truncated stream can raise while tarfile reads it.
READ_ERRORS = (tarfile.TarError, OSError, EOFError, ValueError)


def is_local(url: str) -> bool:
    scheme = urlparse(url).scheme
    return scheme in ("", "file") or len(scheme) == 1  # len 1: a Windows drive letter


def open_url(url: str) -> IO[bytes]:
    """A binary stream of `url`: webdataset's gopen for its schemes and paths, fsspec for the rest."""
    from webdataset.gopen import gopen, gopen_schemes

    if is_local(url) or urlparse(url).scheme in gopen_schemes:
        return gopen(url, "rb")
    import fsspec

    return fsspec.open(url, "rb").open()


class CacheError(RuntimeError):
    """The local shard cache cannot be written (disk full, no permission): fatal, unlike a bad download."""


def cached(url: str, cache_dir: str | Path, version: str = "") -> str:
    """A local copy of a remote `url` in `cache_dir`, downloaded once per machine.

    Every loader worker of every rank on the machine reads the shards of its
    rank; without a cache each would stream them. The first to ask downloads
    the shard under an exclusive lock (to a temporary name, checked to be a
    complete tar, then renamed); the others wait on the lock and find the
    file. `version` (a digest of the shard's manifest) is part of the name, so
    a shard rebuilt at the same URL is downloaded afresh. Local URLs are
    returned as they are. Nothing is evicted: the cache grows to the shards read.
    """
    if is_local(url):
        return url
    base = re.sub(r"[^A-Za-z0-9._-]", "_", Path(urlparse(url).path).name)[-60:] or "shard.tar"
    digest = hashlib.blake2b(f"{url}\n{version}".encode(), digest_size=8).hexdigest()
    path = Path(cache_dir) / f"{digest}-{base}"
    if path.is_file():
        return str(path)
    import fcntl  # Unix only, and only needed with a cache

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_name(path.name + ".lock"), "a")  # noqa: SIM115 (held across the download)
    except OSError as err:
        raise CacheError(f"cannot use the shard cache {path.parent}: {err}") from err
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        if not path.is_file():
            for stale in path.parent.glob(f".{path.name}.*{TEMP_SUFFIX}"):  # a download killed midway
                stale.unlink(missing_ok=True)
            with atomic_output(path) as tmp:
                _download(url, tmp)
    return str(path)


def _download(url: str, dest: Path) -> None:
    """Copy `url` to `dest` and check it is a whole tar; errors reading the source propagate
    as read errors (a damaged shard), errors writing `dest` as CacheError."""
    with open_url(url) as src:
        try:
            dst = open(dest, "wb")  # noqa: SIM115
        except OSError as err:
            raise CacheError(f"cannot write the shard cache: {err}") from err
        with dst:
            while chunk := src.read(1 << 20):
                try:
                    dst.write(chunk)
                except OSError as err:
                    raise CacheError(f"cannot write the shard cache {dest.parent}: {err}") from err
    size = dest.stat().st_size
    with tarfile.open(dest, "r:") as tar:  # headers only: a download cut short fails here, not later
        for member in tar:
            if member.offset_data + member.size > size:
                raise tarfile.ReadError(f"download of {url} ends inside member {member.name}")


def read_samples(
    url: str, wanted: Container[str], suffixes: Container[str], cache_dir: str | Path | None = None, version: str = ""
) -> Generator[tuple[str, dict[str, bytes]], None, None]:
    """Yield (key, {suffix: bytes}) for the samples of the tar at `url` whose key is in `wanted`.

    Only members whose suffix (`hq.png` -> `hq`) is in `suffixes` are read.
    A sample's members are adjacent (webdataset's convention); the key is the
    member name up to its first dot. Errors propagate to the caller, which
    decides what a truncated or unreadable shard means (a failed download
    into `cache_dir` among them; a cached copy that fails to read is deleted,
    to be downloaded again the next time it is needed).
    """
    local = cached(url, cache_dir, version) if cache_dir is not None else url
    if is_local(local):
        parsed = urlparse(local)
        path = parsed.path if parsed.scheme == "file" else local
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO or a device would block or never end
            raise OSError(f"{path} is not a regular file")
    stream = open_url(local)
    try:
        # Seeking over unwanted members pays on a local disk; on object storage each seek would be a request.
        with tarfile.open(fileobj=stream, mode="r:" if is_local(local) else "r|") as tar:
            key, members = None, {}
            for info in tar:
                if not info.isfile():
                    continue
                k, kind = split_member(info.name)
                if k != key:
                    if members:
                        yield key, members
                    key, members = k, {}
                if k in wanted and kind in suffixes:
                    f = tar.extractfile(info)
                    if f is None:
                        raise tarfile.ReadError(f"member {info.name} has no data")
                    data = f.read()
                    if len(data) != info.size:
                        raise tarfile.ReadError(f"member {info.name} is truncated")
                    members[kind] = data
            if members:
                yield key, members
    except READ_ERRORS:
        if local != url:
            Path(local).unlink(missing_ok=True)  # the cached copy went bad: fetch it again next time
        raise
    finally:
        _close_quietly(stream)


def _close_quietly(stream: Any) -> None:
    # A pipe closed before its command finished exits with SIGPIPE; we stopped reading on purpose.
    with contextlib.suppress(*READ_ERRORS):
        stream.close()
