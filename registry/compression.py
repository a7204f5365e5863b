"""Layer streams: detect the compression by magic bytes and hash what comes out.

A layer's mediaType may say gzip for a plain tar (Docker's `.tar` layers in a
`docker save` archive) or the other way round, so the first bytes decide. The
uncompressed bytes are hashed as they are read: that hash is the layer's diff_id,
which the image config lists in rootfs.diff_ids.

Memory stays bounded whatever the layer expands to (1 MiB of gzip'd zeros is about
1 GiB of tar): every decoder is asked for at most the bytes the caller wants, via
the standard library's file objects (gzip, xz, bzip2; they bound each decompress
call by its max_length and handle concatenated members/streams) and zstandard's
stream reader (read_across_frames for several frames).
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import zlib
from collections.abc import Callable
from typing import BinaryIO

import zstandard

from ocirun.errors import OcirunError
from registry.zstdframes import FrameWalker, ZstdFrameError, is_skippable_magic

# magic prefix -> compression name; tables as data.
MAGIC: list[tuple[bytes, str]] = [
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bzip2"),
]
_CHUNK = 1 << 20
_HEAD = 8
_ERRORS = (zlib.error, zstandard.ZstdError, ZstdFrameError, lzma.LZMAError, OSError, EOFError)


class LayerFormatError(OcirunError):
    """A layer blob cannot be decompressed."""


def detect(head: bytes) -> str:
    """'gzip', 'zstd', 'xz', 'bzip2' or 'tar' (uncompressed) from a blob's first bytes."""
    for magic, name in MAGIC:
        if head.startswith(magic):
            return name
    if len(head) >= 4 and is_skippable_magic(head[:4]):  # zstd:chunked and seekable zstd start so
        return "zstd"
    return "tar"


class _Rewound:
    """The raw stream with the already-read head put back in front (no seeking needed)."""

    def __init__(self, head: bytes, raw: BinaryIO):
        self._head = head
        self._raw = raw

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n is None or n < 0:
                out, self._head = self._head + self._raw.read(), b""
                return out
            out, self._head = self._head[:n], self._head[n:]
            if len(out) < n:
                out += self._raw.read(n - len(out))
            return out
        return self._raw.read(n)

    def readinto(self, buf) -> int:  # used by zstandard's stream reader
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        """The caller owns the raw stream."""


class _Walked(_Rewound):
    """The raw stream, its bytes shown to a zstd frame walker as they are read."""

    def __init__(self, head: bytes, raw: BinaryIO):
        super().__init__(head, raw)
        self.walker = FrameWalker()

    def read(self, n: int = -1) -> bytes:
        data = super().read(n)
        self.walker.feed(data)
        return data


class _ZstdStream:
    """zstandard's stream reader, which ends quietly at a cut-off frame: the walker
    tells a truncated stream from a complete one when the reader reaches its end."""

    def __init__(self, raw: _Rewound):
        self._raw = _Walked(raw.read(_HEAD), raw)
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            self._raw, read_size=_CHUNK, read_across_frames=True, closefd=False)

    def read(self, n: int) -> bytes:
        out = self._reader.read(n)
        if not out:
            walker = self._raw.walker
            if not walker.at_boundary or not walker.frames:
                raise EOFError("the stream ends in the middle of a frame (truncated)")
        return out


def _zstd(raw: _Rewound) -> BinaryIO:
    return _ZstdStream(raw)  # type: ignore[return-value]


# compression name -> opener of a bounded-read decoder over the raw stream.
_OPENERS: dict[str, Callable[[_Rewound], BinaryIO]] = {
    "gzip": lambda raw: gzip.GzipFile(fileobj=raw, mode="rb"),
    "zstd": _zstd,
    "xz": lambda raw: lzma.LZMAFile(raw, mode="rb"),
    "bzip2": lambda raw: bz2.BZ2File(raw, mode="rb"),
    "tar": lambda raw: raw,
}


class LayerReader:
    """A read-only stream of a layer's tar bytes that hashes them (the diff_id).

    read(n) returns at most n bytes and decodes no more than that (plus the
    decoder's fixed-size input buffer), so a tiny blob of a huge layer is read in
    constant memory.
    """

    def __init__(self, raw: BinaryIO, kind: str | None = None):
        head = raw.read(_HEAD)
        self.kind = kind or detect(head)
        self._stream = _OPENERS[self.kind](_Rewound(head, raw))
        self._diff = hashlib.sha256()
        self._eof = False
        self.uncompressed_size = 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            return b"".join(iter(lambda: self.read(_CHUNK), b""))
        if self._eof or n == 0:
            return b""
        try:
            out = self._stream.read(n)
        except _ERRORS as exc:
            raise LayerFormatError(f"corrupt {self.kind} data: {exc or type(exc).__name__}") from None
        if not out:
            self._eof = True
            return b""
        self._diff.update(out)
        self.uncompressed_size += len(out)
        return out

    def drain(self) -> None:
        """Read to the end so the diff_id covers the tar's trailing padding too."""
        while self.read(_CHUNK):
            pass

    @property
    def diff_id(self) -> str:
        return "sha256:" + self._diff.hexdigest()
