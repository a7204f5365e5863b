"""PathTranslator.to_host against real trees: symlinks, '..', errors, trailing slashes."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from ocirun.engine.path import GuestPathError, PathTranslator
from ocirun.engine.path.errors import PATH_MAX
from ocirun.engine.path.translator import MAXSYMLINKS


@pytest.fixture
def tr(rootfs: Path, cache_mode: bool) -> PathTranslator:
    return PathTranslator(str(rootfs), [], cache=cache_mode)


def R(rootfs: Path, p: str = "") -> str:
    return str(rootfs) + p


def err(tr: PathTranslator, path: str, **kw) -> int:
    with pytest.raises(GuestPathError) as info:
        tr.to_host(path, **kw)
    return info.value.errno


def test_plain_paths(tr, rootfs):
    assert tr.to_host("/") == R(rootfs)
    assert tr.to_host("/etc/passwd") == R(rootfs, "/etc/passwd")
    assert tr.to_host("//etc///passwd") == R(rootfs, "/etc/passwd")
    assert tr.to_host("/./etc/./passwd") == R(rootfs, "/etc/passwd")
    assert tr.to_host("/usr/lib/x86_64-linux-gnu/libc.so.6") == R(
        rootfs, "/usr/lib/x86_64-linux-gnu/libc.so.6"
    )


def test_relative_to_cwd(tr, rootfs):
    assert tr.to_host("passwd", cwd="/etc") == R(rootfs, "/etc/passwd")
    assert tr.to_host("../etc/passwd", cwd="/usr") == R(rootfs, "/etc/passwd")
    assert tr.to_host(".", cwd="/dir/sub") == R(rootfs, "/dir/sub/.")
    assert tr.to_host("x", cwd="/") == R(rootfs, "/x")


def test_dotdot_never_above_root(tr, rootfs):
    assert tr.to_host("/..") == R(rootfs, "/.")
    assert tr.to_host("/../../etc/passwd") == R(rootfs, "/etc/passwd")
    assert tr.to_host("../../../etc/passwd", cwd="/usr") == R(rootfs, "/etc/passwd")
    assert tr.canonical("/../..") == "/"


def test_relative_symlinks(tr, rootfs):
    assert tr.to_host("/lib/x86_64-linux-gnu/libc.so.6") == R(
        rootfs, "/usr/lib/x86_64-linux-gnu/libc.so.6"
    )
    assert tr.to_host("/dir/sub/rel_etc/passwd") == R(rootfs, "/etc/passwd")
    assert tr.to_host("/dir/up/etc/passwd") == R(rootfs, "/etc/passwd")
    assert tr.to_host("/dir/sub/toroot/etc/passwd") == R(rootfs, "/etc/passwd")


def test_absolute_symlinks_stay_in_guest(tr, rootfs):
    assert tr.to_host("/bin/sh") == R(rootfs, "/usr/bin/sh")
    assert tr.to_host("/abs_etc/passwd") == R(rootfs, "/etc/passwd")
    assert tr.to_host("/abs_etc") == R(rootfs, "/etc")
    assert tr.canonical("/abs_etc") == "/etc"


def test_escape_attempts(tr, rootfs):
    assert tr.to_host("/escape") == R(rootfs)
    assert tr.to_host("/escape/etc/passwd") == R(rootfs, "/etc/passwd")
    assert tr.to_host("/escape2/etc/passwd") == R(rootfs, "/etc/passwd")
    assert tr.to_host("/escape/../escape/../../etc/passwd") == R(rootfs, "/etc/passwd")
    with open(tr.to_host("/escape/etc/passwd")) as f:
        assert f.read() == "guest passwd\n"


def test_symlink_chain(tr, rootfs):
    assert tr.to_host("/c0/passwd") == R(rootfs, "/etc/passwd")
    assert tr.to_host("/c0") == R(rootfs, "/etc")
    assert tr.to_host("/c0", follow_last=False) == R(rootfs, "/c0")


def test_follow_last(tr, rootfs):
    assert tr.to_host("/lib", follow_last=False) == R(rootfs, "/lib")
    assert tr.to_host("/lib") == R(rootfs, "/usr/lib")
    assert tr.to_host("/dangling", follow_last=False) == R(rootfs, "/dangling")
    # creat() through a dangling link creates its target, in the guest
    assert tr.to_host("/dangling2") == R(rootfs, "/newfile")
    # a dangling link whose target's parent is missing: ENOENT like the kernel
    assert err(tr, "/dangling") == errno.ENOENT


def test_eloop(tr, rootfs):
    assert err(tr, "/loop1") == errno.ELOOP
    assert err(tr, "/self/x") == errno.ELOOP
    assert err(tr, "/loop1/x", follow_last=False) == errno.ELOOP
    assert tr.to_host("/loop1", follow_last=False) == R(rootfs, "/loop1")


def test_eloop_limit_is_the_kernels(tmp_path, cache_mode):
    root = tmp_path / "r"
    root.mkdir()
    (root / "target").mkdir()
    os.symlink("target", root / f"l{MAXSYMLINKS}")
    for i in range(MAXSYMLINKS - 1, -1, -1):
        os.symlink(f"l{i + 1}", root / f"l{i}")
    tr = PathTranslator(str(root), [], cache=cache_mode)
    # l1 -> ... -> l40 -> target: 40 links, allowed; l0 adds the 41st
    assert tr.to_host("/l1") == str(root / "target")
    assert err(tr, "/l0") == errno.ELOOP
    # the kernel agrees (rootfs-relative chdir makes the same lookup on the host)
    os.stat(root / "l1")
    with pytest.raises(OSError) as info:
        os.stat(root / "l0")
    assert info.value.errno == errno.ELOOP


def test_enotdir(tr):
    assert err(tr, "/file/x") == errno.ENOTDIR
    assert err(tr, "/file/.") == errno.ENOTDIR
    assert err(tr, "/file/..") == errno.ENOTDIR
    assert err(tr, "/to_file/x") == errno.ENOTDIR
    assert err(tr, "/etc/passwd/x", follow_last=False) == errno.ENOTDIR


def test_enoent(tr, rootfs):
    assert err(tr, "") == errno.ENOENT
    assert err(tr, "/missing/x") == errno.ENOENT
    assert err(tr, "/missing/..") == errno.ENOENT
    assert err(tr, "/missing/.") == errno.ENOENT
    # a missing LAST component is a creat/mkdir target, not an error
    assert tr.to_host("/etc/newfile") == R(rootfs, "/etc/newfile")
    assert tr.to_host("/lib/newfile") == R(rootfs, "/usr/lib/newfile")


def test_enametoolong(tr):
    assert err(tr, "/" + "a/" * (PATH_MAX // 2)) == errno.ENAMETOOLONG
    assert err(tr, "/" + "x" * 300 + "/y") == errno.ENAMETOOLONG
    # the limit is in bytes, as the kernel counts: 2,801 characters but 4,201 bytes
    assert err(tr, "/" + "é/" * 1400) == errno.ENAMETOOLONG
    assert err(tr, "/" + "x/" * 2047) == errno.ENOENT  # 4095 bytes: long enough, but no /x


def test_trailing_slash(tr, rootfs):
    assert tr.to_host("/etc/") == R(rootfs, "/etc/")
    # a trailing slash follows the last link even for lstat
    assert tr.to_host("/lib/", follow_last=False) == R(rootfs, "/usr/lib/")
    assert tr.to_host("/lib/.", follow_last=False) == R(rootfs, "/usr/lib/.")
    # kept on files and missing entries: the kernel decides (ENOTDIR, EISDIR, mkdir ok)
    assert tr.to_host("/file/") == R(rootfs, "/file/")
    assert tr.to_host("/newdir/") == R(rootfs, "/newdir/")
    with pytest.raises(NotADirectoryError):
        os.stat(tr.to_host("/file/"))
    os.mkdir(tr.to_host("/newdir/"))
    assert os.path.isdir(R(rootfs, "/newdir"))
    # a link whose target ends with '/' needs a directory
    assert tr.to_host("/to_etc_slash") == R(rootfs, "/etc/")
    assert tr.canonical("/to_etc_slash") == "/etc"


def test_dot_and_dotdot_endings_are_not_the_directory_itself(tr, rootfs):
    # rmdir("d/.") must not remove d: the '.' stays for the kernel
    assert tr.to_host("/dir/sub/.") == R(rootfs, "/dir/sub/.")
    assert tr.to_host("/dir/sub/deep/..") == R(rootfs, "/dir/sub/.")
    with pytest.raises(OSError):
        os.rmdir(tr.to_host("/dir/sub/deep/."))
    assert os.path.isdir(R(rootfs, "/dir/sub/deep"))


def test_canonical_guest_path(tr):
    assert tr.canonical("/lib/x86_64-linux-gnu") == "/usr/lib/x86_64-linux-gnu"
    assert tr.canonical("/dir/up/lib/") == "/usr/lib"
    assert tr.canonical("../..", cwd="/dir/sub") == "/"
    r = tr.resolve("/bin/sh")
    assert (r.guest, r.host) == ("/usr/bin/sh", tr.rootfs + "/usr/bin/sh")


def test_rootfs_is_realpathed(tmp_path, rootfs, cache_mode):
    os.symlink(rootfs, tmp_path / "alias")
    tr = PathTranslator(str(tmp_path / "alias") + "/", [], cache=cache_mode)
    assert tr.rootfs == str(rootfs)
    assert tr.to_host("/etc/passwd") == str(rootfs) + "/etc/passwd"


def test_eacces_as_root_is_not_applied(tmp_path, cache_mode):
    """Root (CAP_DAC_OVERRIDE) resolves through 000 dirs; an unprivileged user gets EACCES."""
    root = tmp_path / "r"
    (root / "locked/inner").mkdir(parents=True)
    os.chmod(root / "locked", 0)
    try:
        tr = PathTranslator(str(root), [], cache=cache_mode)
        if os.geteuid() == 0:
            assert tr.to_host("/locked/inner/x") == str(root / "locked/inner/x")
        else:
            assert err(tr, "/locked/inner/x") == errno.EACCES
    finally:
        os.chmod(root / "locked", 0o755)


def test_non_utf8_names_round_trip(tmp_path, cache_mode):
    root = tmp_path / "r"
    root.mkdir()
    raw = b"caf\xe9-\xff"
    os.mkdir(os.path.join(os.fsencode(root), raw))
    os.symlink(b"/" + raw, os.path.join(os.fsencode(root), b"lnk\xfe"))
    tr = PathTranslator(str(root), [], cache=cache_mode)
    guest = os.fsdecode(b"/lnk\xfe/x")
    host = tr.to_host(guest)
    assert os.fsencode(host) == os.fsencode(root) + b"/" + raw + b"/x"
    assert os.fsencode(tr.canonical(os.fsdecode(b"/lnk\xfe"))) == b"/" + raw
    assert os.fsencode(tr.to_guest(host)) == b"/" + raw + b"/x"
    assert tr.readlink_guest(tr.to_host(os.fsdecode(b"/lnk\xfe"), follow_last=False)) == os.fsdecode(b"/" + raw)


def test_to_guest_rootfs_and_outside(tr, rootfs):
    assert tr.to_guest(str(rootfs)) == "/"
    assert tr.to_guest(str(rootfs) + "/etc/passwd") == "/etc/passwd"
    assert tr.to_guest(str(rootfs) + "/etc/") == "/etc"
    assert tr.to_guest(str(rootfs) + "x/etc") is None  # a sibling of the rootfs, not inside it
    assert tr.to_guest("/usr/bin") is None
    assert tr.to_guest("pipe:[1234]") is None
    assert PathTranslator("/", []).to_guest("/usr/bin") == "/usr/bin"


def test_round_trip_to_host_to_guest(tr):
    for guest in ("/etc/passwd", "/lib/x86_64-linux-gnu/libc.so.6", "/bin/sh", "/dir/sub/deep", "/"):
        assert tr.to_guest(tr.to_host(guest)) == tr.canonical(guest)
