"""Layers that expand to GiBs, made as small blobs without the big tar ever existing.

The tar stream (one file of zeros) is generated piece by piece; gzip, xz and bzip2
blobs are concatenated members (one 64 MiB piece of zeros compressed once and
repeated: 1 MiB of such a gzip blob is about 1 GiB of output), zstd is one frame.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import zstandard

PIECE = 64 << 20
_ZEROS = bytes(PIECE)

# kind -> compress one whole piece into a self-contained member/stream.
_MEMBER: dict[str, Callable[[bytes], bytes]] = {
    "gzip": lambda b: gzip.compress(b, compresslevel=9, mtime=0),
    "xz": lambda b: lzma.compress(b, preset=0),
    "bzip2": lambda b: bz2.compress(b, 9),
}


def tar_head_tail(size: int, name: str) -> tuple[bytes, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info.tobuf(format=tarfile.PAX_FORMAT), bytes(-size % 512 + 1024)


def zeros_layer(kind: str, size: int, name: str = "zeros", diff_id: bool = False) -> tuple[bytes, str | None]:
    """(blob, diff_id or None) of a tar holding one file of `size` zero bytes
    (a multiple of 64 MiB). The diff_id costs a hash over the whole size."""
    assert size % PIECE == 0
    head, tail = tar_head_tail(size, name)
    n = size // PIECE
    if kind == "zstd":
        c = zstandard.ZstdCompressor(level=1).compressobj()
        parts = [c.compress(head)] + [c.compress(_ZEROS) for _ in range(n)] + [c.compress(tail), c.flush()]
    else:
        member = _MEMBER[kind]
        parts = [member(head), member(_ZEROS) * n, member(tail)]
    digest = None
    if diff_id:
        h = hashlib.sha256(head)
        for _ in range(n):
            h.update(_ZEROS)
        h.update(tail)
        digest = "sha256:" + h.hexdigest()
    return b"".join(parts), digest


def sparse_layer(tmp: Path, size: int, marks: dict[int, bytes]) -> bytes:
    """A zstd blob of GNU tar's --sparse archive of a file of apparent `size` holding
    only `marks` ({offset: bytes}); the file on disk is sparse too."""
    src = tmp / "sparse-src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.truncate(size)
        for off, data in marks.items():
            os.pwrite(f.fileno(), data, off)
    tar = subprocess.run(
        ["tar", "--sparse", "--format=posix", "--numeric-owner", "-C", str(src), "-cf", "-", "sparse"],
        check=True, capture_output=True,
    ).stdout
    return zstandard.ZstdCompressor().compress(tar)
