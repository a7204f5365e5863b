"""openat2 RESOLVE_* flags in the guest namespace, checked against the kernel's own openat2."""

from __future__ import annotations

import ctypes
import errno
import os
import random
import struct

import pytest

from ocirun.engine.path import GuestPathError, PathTranslator
from ocirun.engine.path.openat2 import (
    RESOLVE_BENEATH,
    RESOLVE_IN_ROOT,
    RESOLVE_NO_MAGICLINKS,
    RESOLVE_NO_SYMLINKS,
    RESOLVE_NO_XDEV,
)
from ocirun.engine.plan import Binding
from ocirun.util.linux import AT_FDCWD
from tests.path import randtree

SYS_openat2 = 437  # x86_64
_libc = ctypes.CDLL(None, use_errno=True)


def openat2(dirfd: int, path: str, flags: int, resolve: int) -> int:
    how = struct.pack("QQQ", flags, 0, resolve)
    fd = _libc.syscall(SYS_openat2, dirfd, os.fsencode(path), how, len(how))
    if fd < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return fd


def ident(dirfd: int, path: str, flags: int, resolve: int) -> tuple:
    try:
        fd = openat2(dirfd, path, flags, resolve)
    except OSError as exc:
        return ("errno", exc.errno)
    try:
        st = os.fstat(fd)
        return (st.st_dev, st.st_ino)
    finally:
        os.close(fd)


FLAG_SETS = [
    0,
    RESOLVE_BENEATH,
    RESOLVE_IN_ROOT,
    RESOLVE_NO_SYMLINKS,
    RESOLVE_NO_MAGICLINKS,
    RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
    RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS,
]  # RESOLVE_NO_XDEV depends on host mount points, which the resolver does not see


@pytest.mark.parametrize("seed", range(6))
def test_openat2_flags_agree_with_kernel(tmp_path, seed, cache_mode):
    rng = random.Random(seed)
    base = os.path.realpath(tmp_path / "tree")
    os.mkdir(base)
    entries = randtree.build(base, rng)
    dirs = [""] + [e for e in entries if os.path.isdir(os.path.join(base, e)) and not os.path.islink(os.path.join(base, e))]
    tr = PathTranslator("/", [], cache=cache_mode)
    checked = 0
    for _ in range(250):
        start = os.path.join(base, rng.choice(dirs) if rng.random() < 0.3 else "").rstrip("/")
        path = randtree.random_path(base, entries, rng)
        if rng.random() < 0.8:
            path = path[len(base) + 1 :] or "."
        resolve = rng.choice(FLAG_SETS)
        nofollow = rng.random() < 0.3
        flags = os.O_PATH | (os.O_NOFOLLOW if nofollow else 0)
        dirfd = os.open(start, os.O_PATH | os.O_DIRECTORY)
        try:
            expected = ident(dirfd, path, flags, resolve)
        finally:
            os.close(dirfd)
        try:
            host = tr.to_host_openat2(path, cwd=start, follow_last=not nofollow, resolve=resolve)
        except GuestPathError as exc:
            got = ("errno", exc.errno)
        else:
            got = ident(AT_FDCWD, host, flags, 0)
        assert got == expected, (start, path, hex(resolve), nofollow)
        checked += expected[0] != "errno"
    assert checked > 50  # not only errors


def test_in_root_keeps_the_guest_inside_dirfd(rootfs, cache_mode):
    tr = PathTranslator(str(rootfs), [], cache=cache_mode)
    # /dir is the root: '..' and absolute names stay in it
    assert tr.to_host_openat2("../../sub", cwd="/dir", resolve=RESOLVE_IN_ROOT) == f"{rootfs}/dir/sub"
    assert tr.to_host_openat2("/sub/deep", cwd="/dir", resolve=RESOLVE_IN_ROOT) == f"{rootfs}/dir/sub/deep"
    with pytest.raises(GuestPathError) as info:
        tr.to_host_openat2("../etc", cwd="/dir", resolve=RESOLVE_BENEATH)
    assert info.value.errno == errno.EXDEV
    assert tr.to_host_openat2("etc/passwd", cwd="/", resolve=0) == f"{rootfs}/etc/passwd"


def test_no_xdev_stops_at_bindings(rootfs, hostdir, cache_mode):
    tr = PathTranslator(str(rootfs), [Binding(str(hostdir), "/data")], cache=cache_mode)
    assert tr.to_host_openat2("/etc/passwd", resolve=RESOLVE_NO_XDEV) == f"{rootfs}/etc/passwd"
    assert tr.to_host_openat2("sub", cwd="/data", resolve=RESOLVE_NO_XDEV) == f"{hostdir}/sub"
    for path, cwd in (("/data/sub", "/"), ("../etc", "/data")):
        with pytest.raises(GuestPathError) as info:
            tr.to_host_openat2(path, cwd=cwd, resolve=RESOLVE_NO_XDEV)
        assert info.value.errno == errno.EXDEV


def test_no_magiclinks(rootfs, cache_mode):
    tr = PathTranslator(str(rootfs), [Binding("/proc", "/proc")], cache=cache_mode)
    me = os.getpid()
    assert tr.to_host_openat2("/proc/self/status", resolve=RESOLVE_NO_MAGICLINKS, pid=me) == f"/proc/{me}/status"
    with pytest.raises(GuestPathError) as info:
        tr.to_host_openat2("/proc/self/root/etc", resolve=RESOLVE_NO_MAGICLINKS, pid=me)
    assert info.value.errno == errno.ELOOP
