"""struct stat / statx decoding and patching, checked against buffers the kernel filled."""

from __future__ import annotations

import ctypes
import os
import struct

import pytest

from ocirun.engine.extensions.fake_id0.tables import stat_abi
from ocirun.engine.extensions.shared import statbuf
from ocirun.util.linux import AT_FDCWD, AT_SYMLINK_NOFOLLOW

libc = ctypes.CDLL(None, use_errno=True)
HOST = stat_abi(os.uname().machine)
SYS_newfstatat = HOST.fstatat_nr


def kernel_stat(path: str) -> bytes:
    buf = ctypes.create_string_buffer(statbuf.STAT_SIZE)
    rc = libc.syscall(SYS_newfstatat, AT_FDCWD, os.fsencode(path), buf, AT_SYMLINK_NOFOLLOW)
    assert rc == 0, ctypes.get_errno()
    return buf.raw


def kernel_statx(path: str) -> bytes:
    buf = ctypes.create_string_buffer(statbuf.STATX_SIZE)
    rc = libc.statx(AT_FDCWD, os.fsencode(path), AT_SYMLINK_NOFOLLOW, 0xFFF, buf)
    assert rc == 0, ctypes.get_errno()
    return buf.raw


def test_parse_stat_matches_os_stat(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"x" * 1234)
    os.chmod(f, 0o640)
    view = statbuf.parse_stat(kernel_stat(str(f)))
    st = os.lstat(f)
    assert (view.dev, view.ino, view.nlink, view.mode, view.uid, view.gid, view.size) == (
        st.st_dev, st.st_ino, st.st_nlink, st.st_mode, st.st_uid, st.st_gid, 1234)


def test_parse_statx_matches_os_stat_and_has_btime(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"abc")
    view = statbuf.parse_statx(kernel_statx(str(f)))
    st = os.lstat(f)
    assert (view.dev, view.ino, view.mode, view.uid, view.gid, view.size) == (
        st.st_dev, st.st_ino, st.st_mode, st.st_uid, st.st_gid, 3)
    assert view.btime_ns is None or view.btime_ns > 0


def test_statx_device_numbers_of_a_real_device():
    view = statbuf.parse_statx(kernel_statx("/dev/null"))
    assert (statbuf.major(view.rdev), statbuf.minor(view.rdev)) == (1, 3)
    assert view.rdev == os.stat("/dev/null").st_rdev


def test_patch_stat_changes_only_named_fields(tmp_path):
    f = tmp_path / "f"
    f.write_text("hello")
    raw = kernel_stat(str(f))
    dev = statbuf.makedev(4, 70000)
    patched = statbuf.patch_stat(raw, uid=0, gid=42, mode=0o20644, rdev=dev, nlink=3, size=0)
    view = statbuf.parse_stat(patched)
    assert (view.uid, view.gid, view.mode, view.rdev, view.nlink, view.size) == (
        0, 42, 0o20644, dev, 3, 0)
    # everything else is byte-identical (times, blocks, inode)
    changed = [i for i in range(len(raw)) if raw[i] != patched[i]]
    assert all(16 <= i < 56 for i in changed)


def test_patch_statx_roundtrip(tmp_path):
    f = tmp_path / "f"
    f.write_text("hello")
    raw = kernel_statx(str(f))
    dev = statbuf.makedev(259, 3)
    view = statbuf.parse_statx(
        statbuf.patch_statx(raw, uid=7, gid=8, mode=0o60600, rdev=dev, nlink=9, size=0))
    assert (view.uid, view.gid, view.mode, view.rdev, view.nlink, view.size) == (
        7, 8, 0o60600, dev, 9, 0)
    assert view.ino == os.lstat(f).st_ino


def test_makedev_matches_os():
    for ma, mi in [(1, 3), (8, 1), (259, 70000), (4095, 255), (5000, 1 << 19)]:
        dev = statbuf.makedev(ma, mi)
        assert dev == os.makedev(ma, mi)
        assert (statbuf.major(dev), statbuf.minor(dev)) == (ma, mi)


@pytest.mark.parametrize("arch, nr, size", [("x86_64", 262, 144), ("aarch64", 79, 128)])
def test_stat_abi_per_architecture(arch, nr, size):
    """newfstatat's number and struct stat's size per architecture (arch/x86/entry/syscalls/
    syscall_64.tbl and asm/stat.h; include/uapi/asm-generic/unistd.h and stat.h)."""
    abi = stat_abi(arch)
    assert (abi.fstatat_nr, abi.layout.size) == (nr, size)


def test_host_stat_abi_reads_what_the_kernel_wrote(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    st = os.lstat(f)
    assert HOST.head.unpack_from(kernel_stat(str(f))) == (st.st_dev, st.st_ino, st.st_uid, st.st_gid)


def generic_stat(dev, ino, mode, nlink, uid, gid, rdev, size) -> bytes:
    """A struct stat as aarch64 (asm-generic/stat.h) lays it out, field by field."""
    return struct.pack("<QQIIIIQQqiiqqQqQqQII", dev, ino, mode, nlink, uid, gid, rdev, 0, size,
                       4096, 0, 8, 1700000000, 1, 1700000001, 2, 1700000002, 3, 0, 0)


def test_aarch64_layout_parse_and_patch():
    abi = stat_abi("aarch64")
    raw = generic_stat(0x803, 1234567, 0o100644, 2, 1000, 1001, 0, 77)
    assert len(raw) == abi.layout.size
    assert abi.head.unpack_from(raw) == (0x803, 1234567, 1000, 1001)
    view = statbuf.parse_stat(raw, abi.layout)
    assert (view.dev, view.ino, view.mode, view.nlink, view.uid, view.gid, view.rdev, view.size) == (
        0x803, 1234567, 0o100644, 2, 1000, 1001, 0, 77)
    dev = statbuf.makedev(4, 70000)
    patched = statbuf.patch_stat(raw, uid=0, gid=0, mode=0o20600, rdev=dev, nlink=5, size=0,
                                 layout=abi.layout)
    assert patched == generic_stat(0x803, 1234567, 0o20600, 5, 0, 0, dev, 0)


def test_stat64_of_an_i386_caller_from_the_host_stat(tmp_path) -> None:
    """A host struct stat becomes the struct stat64 a 32-bit caller gets (what the kernel's
    cp_stat64 writes), and the fields -0 changes are found in it."""
    if os.uname().machine != "x86_64":
        pytest.skip("i386 callers exist on x86_64 hosts only")
    f = tmp_path / "f"
    f.write_bytes(b"x" * 4097)
    st = os.lstat(f)
    out = statbuf.stat64_from_x86_64(kernel_stat(str(f)))
    assert len(out) == statbuf.STAT64.size == 96
    view = statbuf.parse_stat(out, statbuf.STAT64)
    assert (view.dev, view.ino, view.nlink, view.mode, view.uid, view.gid, view.size) == (
        st.st_dev, st.st_ino, 1, st.st_mode, st.st_uid, st.st_gid, 4097)
    assert struct.unpack_from("<I", out, 12)[0] == st.st_ino & 0xFFFFFFFF  # __st_ino
    assert struct.unpack_from("<I", out, 72)[0] == int(st.st_mtime) & 0xFFFFFFFF
    patched = statbuf.patch_stat(out, uid=1234, gid=5678, layout=statbuf.STAT64)
    assert statbuf.parse_stat(patched, statbuf.STAT64).uid == 1234
    assert statbuf.parse_stat(patched, statbuf.STAT64).gid == 5678
