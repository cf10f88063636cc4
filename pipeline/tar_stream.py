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
import re
import shutil
import tarfile
from collections.abc import Container, Generator
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

from shards import atomic_output

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


def cached(url: str, cache_dir: str | Path) -> str:
    """A local copy of a remote `url` in `cache_dir`, downloaded once per machine.

    Every loader worker of every rank on the machine reads the shards of its
    rank; without a cache each would stream them. The first to ask downloads
    the shard under an exclusive lock (to a temporary name, renamed when
    complete); the others wait on the lock and find the file. Local URLs are
    returned as they are. Nothing is ever evicted: the cache grows to the
    shards read.
    """
    if is_local(url):
        return url
    base = re.sub(r"[^A-Za-z0-9._-]", "_", Path(urlparse(url).path).name)[-60:] or "shard.tar"
    path = Path(cache_dir) / f"{hashlib.blake2b(url.encode(), digest_size=8).hexdigest()}-{base}"
    if not path.is_file():
        import fcntl  # Unix only, and only needed with a cache

        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
            if not path.is_file():
                with atomic_output(path) as tmp, open_url(url) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    return str(path)


def read_samples(
    url: str, wanted: Container[str], suffixes: Container[str], cache_dir: str | Path | None = None
) -> Generator[tuple[str, dict[str, bytes]], None, None]:
    """Yield (key, {suffix: bytes}) for the samples of the tar at `url` whose key is in `wanted`.

    Only members whose suffix (`hq.png` -> `hq`) is in `suffixes` are read.
    A sample's members are adjacent (webdataset's convention); the key is the
    member name up to its first dot. Errors propagate to the caller, which
    decides what a truncated or unreadable shard means (a failed download
    into `cache_dir` among them).
    """
    if cache_dir is not None:
        url = cached(url, cache_dir)
    stream = open_url(url)
    try:
        # Seeking over unwanted members pays on a local disk; on object storage each seek would be a request.
        with tarfile.open(fileobj=stream, mode="r:" if is_local(url) else "r|") as tar:
            key, members = None, {}
            for info in tar:
                if not info.isfile():
                    continue
                name = info.name.rsplit("/", 1)[-1]
                k, _, suffix = name.partition(".")
                if k != key:
                    if members:
                        yield key, members
                    key, members = k, {}
                if k in wanted and suffix.split(".", 1)[0] in suffixes:
                    f = tar.extractfile(info)
                    if f is None:
                        raise tarfile.ReadError(f"member {info.name} has no data")
                    data = f.read()
                    if len(data) != info.size:
                        raise tarfile.ReadError(f"member {info.name} is truncated")
                    members[suffix.split(".", 1)[0]] = data
            if members:
                yield key, members
    finally:
        _close_quietly(stream)


def _close_quietly(stream: Any) -> None:
    # A pipe closed before its command finished exits with SIGPIPE; we stopped reading on purpose.
    with contextlib.suppress(*READ_ERRORS):
        stream.close()
