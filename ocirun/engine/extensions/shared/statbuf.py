"""Reading and rewriting `struct stat` (the host architecture's) and `struct statx` as raw bytes.

The fake-root and link2symlink extensions change what the guest sees in a
stat result (owner, mode, device number, link count) at the syscall's exit
stop. These are pure functions over the bytes the kernel wrote, so they are
unit-tested without a tracee.
"""

from __future__ import annotations

import functools
import os
import struct

from ocirun.util.records import dataclass

# Where each field is: name -> (offset, struct format). A "<II" field is a device
# number as (major, minor) (statx); the others are plain integers.
Fields = dict[str, tuple[int, str]]


@dataclass(frozen=True)
class StatLayout:
    """Where the fields are in an architecture's `struct stat`."""

    size: int
    nlink: tuple[int, str]  # offset, struct format (x86_64: 64-bit, generic: 32-bit)
    mode: int  # mode, then... 32-bit each
    uid: int  # uid, gid: 32-bit each, adjacent
    rdev: int
    dev: int = 0
    ino: int = 8
    st_size: int = 48

    @functools.cached_property
    def fields(self) -> Fields:
        """The layout as the table parse and patch read."""
        return {
            "dev": (self.dev, "<Q"), "ino": (self.ino, "<Q"), "nlink": self.nlink,
            "mode": (self.mode, "<I"), "uid": (self.uid, "<I"), "gid": (self.uid + 4, "<I"),
            "rdev": (self.rdev, "<Q"), "size": (self.st_size, "<q"),
        }


STAT_LAYOUTS = {
    "x86_64": StatLayout(size=144, nlink=(16, "<Q"), mode=24, uid=28, rdev=40),  # asm/stat.h
    "aarch64": StatLayout(size=128, nlink=(20, "<I"), mode=16, uid=24, rdev=32),  # asm-generic/stat.h
}
_L = STAT_LAYOUTS.get(os.uname().machine, STAT_LAYOUTS["x86_64"])
# i386's struct stat64 (asm/stat.h; stat64, lstat64, fstat64, fstatat64 on an x86_64 host)
STAT64 = StatLayout(size=96, nlink=(20, "<I"), mode=16, uid=24, rdev=32, dev=0, ino=88, st_size=44)
_STAT64_FROM_X86_64 = struct.Struct("<QQQIII4xQqqqqQqQqQ")  # x86_64's struct stat, up to st_ctime_nsec
_STAT64 = struct.Struct("<Q4xIIIIIQ4xqIQIIIIIIQ")
STAT_SIZE = _L.size

# struct statx (linux/stat.h): 256 bytes, the same on every architecture.
STATX_SIZE = 256
STATX_FIELDS: Fields = {
    "nlink": (16, "<I"), "uid": (20, "<I"), "gid": (24, "<I"), "mode": (28, "<H"),
    "ino": (32, "<Q"), "size": (40, "<Q"), "rdev": (128, "<II"), "dev": (136, "<II"),
}
_STX_MASK = 0
_STX_BTIME = 80
STATX_BTIME = 0x800

S_IFMT = 0o170000


@dataclass
class StatView:
    """The fields the extensions read or change; `None` in a change means "keep"."""

    dev: int
    ino: int
    nlink: int
    mode: int
    uid: int
    gid: int
    rdev: int
    size: int
    btime_ns: int | None = None  # statx only, when the kernel filled it


def makedev(major: int, minor: int) -> int:
    """glibc's makedev for the 64-bit dev_t encoding."""
    return (
        ((major & 0xFFFFF000) << 32)
        | ((major & 0xFFF) << 8)
        | ((minor & 0xFFFFFF00) << 12)
        | (minor & 0xFF)
    )


def major(dev: int) -> int:
    return ((dev >> 32) & 0xFFFFF000) | ((dev >> 8) & 0xFFF)


def minor(dev: int) -> int:
    return ((dev >> 12) & 0xFFFFFF00) | (dev & 0xFF)


_VIEW_FIELDS = ("dev", "ino", "nlink", "mode", "uid", "gid", "rdev", "size")


def _get(fields: Fields, buf: bytes, name: str) -> int:
    offset, fmt = fields[name]
    value = struct.unpack_from(fmt, buf, offset)
    return makedev(*value) if len(value) == 2 else value[0]


def _patch(fields: Fields, buf: bytes, changes: dict[str, int | None]) -> bytes:
    """`buf` with the fields of `changes` that are not None replaced (unsigned
    fields wrap as the kernel's would)."""
    out = bytearray(buf)
    for name, value in changes.items():
        if value is None:
            continue
        offset, fmt = fields[name]
        if fmt == "<II":
            struct.pack_into(fmt, out, offset, major(value), minor(value))
        else:
            if fmt[-1].isupper():
                value &= (1 << 8 * struct.calcsize(fmt)) - 1
            struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def parse_stat(buf: bytes, layout: StatLayout = _L) -> StatView:
    """Decode the interesting fields of a `struct stat` (the host's layout unless told)."""
    return StatView(*(_get(layout.fields, buf, name) for name in _VIEW_FIELDS))


def patch_stat(buf: bytes, layout: StatLayout = _L, **changes: int | None) -> bytes:
    """Return `buf` (a struct stat, the host's layout unless told) with the given
    fields (uid, gid, mode, rdev, nlink, size) replaced."""
    return _patch(layout.fields, buf, changes)


def parse_statx(buf: bytes) -> StatView:
    """Decode the interesting fields of a `struct statx` (btime when the kernel filled it)."""
    view = StatView(*(_get(STATX_FIELDS, buf, name) for name in _VIEW_FIELDS))
    (mask,) = struct.unpack_from("<I", buf, _STX_MASK)
    if mask & STATX_BTIME:
        sec, nsec = struct.unpack_from("<qI", buf, _STX_BTIME)
        view.btime_ns = sec * 1_000_000_000 + nsec
    return view


def patch_statx(buf: bytes, **changes: int | None) -> bytes:
    """Return `buf` (a struct statx) with the given fields replaced.

    Only fields the kernel reported (stx_mask) are meaningful to the guest, but
    writing the others is harmless: the guest ignores them.
    """
    return _patch(STATX_FIELDS, buf, changes)


# By the kind of result a stat syscall writes: "stat" (the ABI's struct stat, `layout`),
# "stat64" (i386's struct stat64) or "statx".
def _layout_of(kind: str, layout: StatLayout) -> StatLayout:
    return STAT64 if kind == "stat64" else layout


def result_size(kind: str, layout: StatLayout = _L) -> int:
    return STATX_SIZE if kind == "statx" else _layout_of(kind, layout).size


def parse(kind: str, buf: bytes, layout: StatLayout = _L) -> StatView:
    return parse_statx(buf) if kind == "statx" else parse_stat(buf, _layout_of(kind, layout))


def patch(kind: str, buf: bytes, layout: StatLayout = _L, **changes: int | None) -> bytes:
    return _patch(STATX_FIELDS if kind == "statx" else _layout_of(kind, layout).fields, buf, changes)


def stat64_from_x86_64(buf: bytes) -> bytes:
    """i386's struct stat64 holding what an x86_64 struct stat says (what the kernel's
    cp_new_stat64 writes for a 32-bit caller: times in 32 bits)."""
    (dev, ino, nlink, mode, uid, gid, rdev, size, blksize, blocks,
     atime, atime_ns, mtime, mtime_ns, ctime, ctime_ns) = _STAT64_FROM_X86_64.unpack_from(buf)
    return _STAT64.pack(dev, ino & 0xFFFFFFFF, mode, nlink & 0xFFFFFFFF, uid, gid, rdev, size, blksize & 0xFFFFFFFF,
                        blocks, atime & 0xFFFFFFFF, atime_ns, mtime & 0xFFFFFFFF, mtime_ns, ctime & 0xFFFFFFFF,
                        ctime_ns, ino)
