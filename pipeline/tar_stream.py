"""Opening shard URLs and reading samples out of a tar, forward only.

`open_url` takes what webdataset's `gopen` takes (local paths, `file:`,
`pipe:CMD`, http(s), `gs:` through gsutil, ...) and any other protocol
fsspec knows (`s3://`, `gcs://`, `az://`, ... with s3fs, gcsfs, adlfs).
A local file is read with seeks, so members a reader does not want cost a
512-byte header; anything else is streamed front to back.

Members are only ever read as bytes: images are decoded with OpenCV, the
JSON is never needed, nothing is unpickled.
"""

from __future__ import annotations

import contextlib
import tarfile
from collections.abc import Container, Generator
from typing import IO, Any
from urllib.parse import urlparse

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


def read_samples(url: str, wanted: Container[str], suffixes: Container[str]) -> Generator[tuple[str, dict[str, bytes]], None, None]:
    """Yield (key, {suffix: bytes}) for the samples of the tar at `url` whose key is in `wanted`.

    Only members whose suffix (`hq.png` -> `hq`) is in `suffixes` are read.
    A sample's members are adjacent (webdataset's convention); the key is the
    member name up to its first dot. Errors propagate to the caller, which
    decides what a truncated or unreadable shard means.
    """
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
