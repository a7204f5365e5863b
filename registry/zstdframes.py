"""Where a zstd stream's frames end, found from the compressed bytes alone.

zstandard's stream reader returns end-of-file when its input ends, also in the
middle of a frame, so a truncated zstd layer would decode "successfully" to a
shorter tar. This walker reads the frame and block headers (RFC 8878 §3.1) of the
bytes as they pass by and says whether the input stopped exactly at the end of a
frame. It never decodes anything and holds at most a frame header (18 bytes).
"""

from __future__ import annotations

import struct

ZSTD_MAGIC = 0xFD2FB528
_SKIPPABLE_MASK, _SKIPPABLE = 0xFFFFFFF0, 0x184D2A50
_DICT_ID_SIZES = (0, 1, 2, 4)
_FCS_SIZES = (0, 2, 4, 8)  # with Single_Segment and flag 0 the size is 1 (below)


def is_skippable_magic(first4: bytes) -> bool:
    """A skippable frame's magic (0x184D2A50-5F): a zstd stream may begin with one."""
    return struct.unpack("<I", first4)[0] & _SKIPPABLE_MASK == _SKIPPABLE


class ZstdFrameError(ValueError):
    """The bytes are not a sequence of zstd frames."""


class FrameWalker:
    """Feed compressed bytes with feed(); `at_boundary` is True between frames."""

    def __init__(self) -> None:
        self._buf = b""        # header bytes gathered so far
        self._need = 4         # bytes the current header field needs
        self._state = "magic"
        self._skip = 0         # payload bytes still to pass over
        self._checksum = False
        self.frames = 0

    @property
    def at_boundary(self) -> bool:
        return self._state == "magic" and not self._buf and not self._skip

    def feed(self, data: bytes | memoryview) -> None:
        view, pos = memoryview(data), 0
        while pos < len(view):
            if self._skip:
                step = min(self._skip, len(view) - pos)
                self._skip -= step
                pos += step
                if not self._skip:
                    self._after_skip()
                continue
            take = min(self._need - len(self._buf), len(view) - pos)
            self._buf += bytes(view[pos:pos + take])
            pos += take
            if len(self._buf) == self._need:
                header, self._buf = self._buf, b""
                self._parse(header)

    def _parse(self, header: bytes) -> None:
        """One complete header field: decide what comes next."""
        getattr(self, "_on_" + self._state)(header)

    def _on_magic(self, header: bytes) -> None:
        (magic,) = struct.unpack("<I", header)
        if magic == ZSTD_MAGIC:
            self._state, self._need = "descriptor", 1
        elif is_skippable_magic(header):
            self._state, self._need = "skippable", 4
        else:
            raise ZstdFrameError(f"not a zstd frame (magic {magic:#010x})")

    def _on_skippable(self, header: bytes) -> None:
        (size,) = struct.unpack("<I", header)
        self._state = "skippable_data"
        self._skip = size
        if not size:
            self._after_skip()

    def _on_descriptor(self, header: bytes) -> None:
        desc = header[0]
        if desc & 0x08:
            raise ZstdFrameError("reserved bit set in a zstd frame header")
        single_segment = bool(desc & 0x20)
        fcs_flag = desc >> 6
        fcs = _FCS_SIZES[fcs_flag] or (1 if single_segment else 0)
        self._checksum = bool(desc & 0x04)
        rest = (0 if single_segment else 1) + _DICT_ID_SIZES[desc & 0x03] + fcs
        self._state, self._need = "header_rest", rest
        if not rest:
            self._state, self._need = "block", 3

    def _on_header_rest(self, header: bytes) -> None:
        self._state, self._need = "block", 3

    def _on_block(self, header: bytes) -> None:
        (value,) = struct.unpack("<I", header + b"\0")
        last, kind, size = value & 1, (value >> 1) & 3, value >> 3
        if kind == 3:
            raise ZstdFrameError("reserved block type in a zstd frame")
        self._state = "block_last" if last else "block_more"
        self._skip = 1 if kind == 1 else size
        if not self._skip:
            self._after_skip()

    def _on_checksum(self, header: bytes) -> None:
        self._end_frame()

    def _after_skip(self) -> None:
        """A block's (or skippable frame's) payload has passed."""
        if self._state == "block_more":
            self._state, self._need = "block", 3
        elif self._state == "block_last" and self._checksum:
            self._state, self._need = "checksum", 4
        else:
            self._end_frame()

    def _end_frame(self) -> None:
        self.frames += 1
        self._state, self._need = "magic", 4

