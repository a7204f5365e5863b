"""Layer streams: detect the compression by magic bytes and hash what comes out.

A layer's mediaType may say gzip for a plain tar (Docker's `.tar` layers in a
`docker save` archive) or the other way round, so the first bytes decide. The
uncompressed bytes are hashed as they are read: that hash is the layer's diff_id,
which the image config lists in rootfs.diff_ids.
"""

from __future__ import annotations

import bz2
import hashlib
import lzma
import zlib
from typing import BinaryIO

import zstandard

from ocirun.errors import OcirunError

# magic prefix -> compression name; tables as data.
MAGIC: list[tuple[bytes, str]] = [
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bzip2"),
]
_CHUNK = 1 << 20


class LayerFormatError(OcirunError):
    """A layer blob cannot be decompressed."""


def detect(head: bytes) -> str:
    """'gzip', 'zstd', 'xz', 'bzip2' or 'tar' (uncompressed) from a blob's first bytes."""
    for magic, name in MAGIC:
        if head.startswith(magic):
            return name
    return "tar"


class _Decoder:
    """A decompressor with one interface: feed(bytes) -> bytes, plus multi-member gzip."""

    def __init__(self, kind: str):
        self.kind = kind
        self._obj = self._new()

    def _new(self):
        if self.kind == "gzip":
            return zlib.decompressobj(wbits=31)
        if self.kind == "zstd":
            return zstandard.ZstdDecompressor().decompressobj()
        if self.kind == "xz":
            return lzma.LZMADecompressor()
        if self.kind == "bzip2":
            return bz2.BZ2Decompressor()
        return None

    def feed(self, data: bytes) -> bytes:
        if self._obj is None:
            return data
        out = []
        while data:
            out.append(self._obj.decompress(data))
            data = self._restart_if_member_ended()
        return b"".join(out)

    def _restart_if_member_ended(self) -> bytes:
        """Concatenated gzip members / zstd frames: continue with a fresh decoder."""
        obj = self._obj
        eof = getattr(obj, "eof", False)
        unused = getattr(obj, "unused_data", b"")
        if eof and unused:
            if self.kind in ("gzip", "zstd", "bzip2", "xz"):
                self._obj = self._new()
                return unused
        return b""

    def finish(self) -> bytes:
        if self.kind == "gzip":
            return self._obj.flush()
        return b""


class LayerReader:
    """A read-only stream of a layer's tar bytes that hashes them (the diff_id)."""

    def __init__(self, raw: BinaryIO, kind: str | None = None):
        self.raw = raw
        head = raw.read(8)
        self.kind = kind or detect(head)
        self._decoder = _Decoder(self.kind)
        self._diff = hashlib.sha256()
        self._buf = bytearray()
        self._pending_raw = head
        self._eof = False
        self.uncompressed_size = 0

    def _fill(self, want: int) -> None:
        while len(self._buf) < want and not self._eof:
            chunk = self._pending_raw or self.raw.read(_CHUNK)
            self._pending_raw = b""
            try:
                if chunk:
                    out = self._decoder.feed(chunk)
                else:
                    out = self._decoder.finish()
                    self._eof = True
            except (zlib.error, zstandard.ZstdError, lzma.LZMAError, OSError, EOFError) as exc:
                raise LayerFormatError(f"corrupt {self.kind} data: {exc}") from None
            if out:
                self._diff.update(out)
                self.uncompressed_size += len(out)
                self._buf += out

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            while not self._eof:
                self._fill(len(self._buf) + _CHUNK)
            n = len(self._buf)
        else:
            self._fill(n)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def drain(self) -> None:
        """Read to the end so the diff_id covers the tar's trailing padding too."""
        while not self._eof:
            self._buf.clear()
            self._fill(_CHUNK)
        self._buf.clear()

    @property
    def diff_id(self) -> str:
        return "sha256:" + self._diff.hexdigest()
