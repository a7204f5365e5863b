"""gzip on several cores, with output that does not depend on how many (pigz's scheme).

The input is cut into fixed blocks; each block is deflated on its own, primed with
the last 32 KiB of the block before it (so little compression is lost), and ends
with a sync flush (byte-aligned, not final); the last block finishes the stream.
The raw deflate pieces, concatenated in order between a fixed gzip header and the
CRC-32/size trailer, are one ordinary gzip member any gunzip reads. zlib drops
the GIL while it deflates, so the blocks of a big layer compress in parallel
threads; the bytes are the same with one thread or eight, which keeps layer
digests reproducible from one machine to the next (for the same zlib).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

BLOCK = 256 << 10
_WINDOW = 32 << 10


def default_threads() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


def _deflate(data: bytes, primer: bytes, last: bool, level: int) -> bytes:
    if primer:
        c = zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, primer)
    else:
        c = zlib.compressobj(level, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


class ParallelGzip:
    """A compressobj-like: `compress(data)` returns what is ready, `flush()` the rest."""

    def __init__(self, level: int = 6, threads: int | None = None):
        self.level = level
        self.threads = threads if threads is not None else default_threads()
        self._pool: ThreadPoolExecutor | None = None
        self._buf = bytearray()
        self._primer = b""
        self._crc = 0
        self._size = 0
        self._queue: deque[Future | bytes] = deque()
        xfl = 2 if level == 9 else (4 if level < 2 else 0)
        self._header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + bytes((xfl, 3))  # mtime 0, OS unix

    def compress(self, data: bytes) -> bytes:
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        self._buf += data
        while len(self._buf) > BLOCK:  # keep the last block back: it may be the final one
            block = bytes(self._buf[:BLOCK])
            del self._buf[:BLOCK]
            self._submit(block, last=False)
        return self._ready(wait=len(self._queue) > 2 * self.threads)

    def flush(self) -> bytes:
        self._submit(bytes(self._buf), last=True)
        self._buf = bytearray()
        out = self._ready(wait=True, everything=True)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        return out + struct.pack("<II", self._crc & 0xFFFFFFFF, self._size & 0xFFFFFFFF)

    def _submit(self, block: bytes, last: bool) -> None:
        primer, self._primer = self._primer, block[-_WINDOW:]
        if self.threads <= 1 or (last and not self._queue):
            self._queue.append(_deflate(block, primer, last, self.level))
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, "pgzip")
        self._queue.append(self._pool.submit(_deflate, block, primer, last, self.level))

    def _ready(self, wait: bool, everything: bool = False) -> bytes:
        out = [self._header] if self._header else []
        self._header = b""
        while self._queue:
            head = self._queue[0]
            if isinstance(head, Future):
                if not (head.done() or wait or everything):
                    break
                piece = head.result()
                wait = False
            else:
                piece = head
            self._queue.popleft()
            out.append(piece)
        return b"".join(out)
