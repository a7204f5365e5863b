"""struct stat / statx decoding and patching, checked against buffers the kernel filled."""

from __future__ import annotations

import ctypes
import os

from ocirun.engine.extensions.shared import statbuf
from ocirun.util.linux import AT_FDCWD, AT_SYMLINK_NOFOLLOW

libc = ctypes.CDLL(None, use_errno=True)
SYS_newfstatat = 262


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
