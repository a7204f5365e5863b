"""Reading and rewriting `struct stat` (the host architecture's) and `struct statx` as raw bytes.

The fake-root and link2symlink extensions change what the guest sees in a
stat result (owner, mode, device number, link count) at the syscall's exit
stop. These are pure functions over the bytes the kernel wrote, so they are
unit-tested without a tracee.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass


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

# struct statx (linux/stat.h): 256 bytes.
STATX_SIZE = 256
_STX_MASK, _STX_NLINK, _STX_UID, _STX_GID, _STX_MODE = 0, 16, 20, 24, 28
_STX_INO, _STX_SIZE = 32, 40
_STX_BTIME = 80
_STX_RDEV_MAJOR, _STX_RDEV_MINOR = 128, 132
_STX_DEV_MAJOR, _STX_DEV_MINOR = 136, 140
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


def parse_stat(buf: bytes, layout: StatLayout = _L) -> StatView:
    """Decode the interesting fields of a `struct stat` (the host's layout unless told)."""
    (dev,) = struct.unpack_from("<Q", buf, layout.dev)
    (ino,) = struct.unpack_from("<Q", buf, layout.ino)
    (nlink,) = struct.unpack_from(layout.nlink[1], buf, layout.nlink[0])
    (mode,) = struct.unpack_from("<I", buf, layout.mode)
    uid, gid = struct.unpack_from("<II", buf, layout.uid)
    (rdev,) = struct.unpack_from("<Q", buf, layout.rdev)
    (size,) = struct.unpack_from("<q", buf, layout.st_size)
    return StatView(dev, ino, nlink, mode, uid, gid, rdev, size)


def patch_stat(
    buf: bytes,
    *,
    uid: int | None = None,
    gid: int | None = None,
    mode: int | None = None,
    rdev: int | None = None,
    nlink: int | None = None,
    size: int | None = None,
    layout: StatLayout = _L,
) -> bytes:
    """Return `buf` (a struct stat, the host's layout unless told) with the given fields replaced."""
    out = bytearray(buf)
    if uid is not None:
        struct.pack_into("<I", out, layout.uid, uid & 0xFFFFFFFF)
    if gid is not None:
        struct.pack_into("<I", out, layout.uid + 4, gid & 0xFFFFFFFF)
    if mode is not None:
        struct.pack_into("<I", out, layout.mode, mode & 0xFFFFFFFF)
    if rdev is not None:
        struct.pack_into("<Q", out, layout.rdev, rdev)
    if nlink is not None:
        struct.pack_into(layout.nlink[1], out, layout.nlink[0], nlink)
    if size is not None:
        struct.pack_into("<q", out, layout.st_size, size)
    return bytes(out)


def parse_statx(buf: bytes) -> StatView:
    """Decode the interesting fields of a `struct statx`."""
    (mask,) = struct.unpack_from("<I", buf, _STX_MASK)
    nlink, uid, gid = struct.unpack_from("<III", buf, _STX_NLINK)
    (mode,) = struct.unpack_from("<H", buf, _STX_MODE)
    ino, size = struct.unpack_from("<QQ", buf, _STX_INO)
    rmaj, rmin, dmaj, dmin = struct.unpack_from("<IIII", buf, _STX_RDEV_MAJOR)
    btime = None
    if mask & STATX_BTIME:
        sec, nsec = struct.unpack_from("<qI", buf, _STX_BTIME)
        btime = sec * 1_000_000_000 + nsec
    return StatView(
        makedev(dmaj, dmin), ino, nlink, mode, uid, gid, makedev(rmaj, rmin), size, btime
    )


def patch_statx(
    buf: bytes,
    *,
    uid: int | None = None,
    gid: int | None = None,
    mode: int | None = None,
    rdev: int | None = None,
    nlink: int | None = None,
    size: int | None = None,
) -> bytes:
    """Return `buf` (a struct statx) with the given fields replaced.

    Only fields the kernel reported (stx_mask) are meaningful to the guest, but
    writing the others is harmless: the guest ignores them.
    """
    out = bytearray(buf)
    if uid is not None:
        struct.pack_into("<I", out, _STX_UID, uid & 0xFFFFFFFF)
    if gid is not None:
        struct.pack_into("<I", out, _STX_GID, gid & 0xFFFFFFFF)
    if mode is not None:
        struct.pack_into("<H", out, _STX_MODE, mode & 0xFFFF)
    if rdev is not None:
        struct.pack_into("<II", out, _STX_RDEV_MAJOR, major(rdev), minor(rdev))
    if nlink is not None:
        struct.pack_into("<I", out, _STX_NLINK, nlink & 0xFFFFFFFF)
    if size is not None:
        struct.pack_into("<Q", out, _STX_SIZE, size)
    return bytes(out)


def stat64_from_x86_64(buf: bytes) -> bytes:
    """i386's struct stat64 holding what an x86_64 struct stat says (what the kernel's
    cp_new_stat64 writes for a 32-bit caller: times in 32 bits)."""
    (dev, ino, nlink, mode, uid, gid, rdev, size, blksize, blocks,
     atime, atime_ns, mtime, mtime_ns, ctime, ctime_ns) = _STAT64_FROM_X86_64.unpack_from(buf)
    return _STAT64.pack(dev, ino & 0xFFFFFFFF, mode, nlink & 0xFFFFFFFF, uid, gid, rdev, size, blksize & 0xFFFFFFFF,
                        blocks, atime & 0xFFFFFFFF, atime_ns, mtime & 0xFFFFFFFF, mtime_ns, ctime & 0xFFFFFFFF,
                        ctime_ns, ino)
