"""The lazy container tree and copy-up, without the engine (the engine tests are in test_run_e2e).

The trees live where pytest's tmp_path is: on a filesystem that refuses user xattrs the
placeholders keep their mark in a file and the image carries no xattr
(tests/runner/test_store_noxattr.py runs this module again on a ramfs)."""

from __future__ import annotations

import os
import stat
import threading
import time

import pytest

from ocirun.engine import cow
from ocirun.engine.lazymarks import MARK_FILE, FileMarks
from ocirun.engine.path.fsview import DIR, FILE, LINK, MISSING, HostFs
from ocirun.util.fs import rmtree
from tests.helpers.ramfs import takes_user_xattrs


@pytest.fixture
def image(tmp_path):
    """An image-like tree: nested dirs, a 0555 dir, hardlinks, symlinks, a fifo, xattrs."""
    img = tmp_path / "image"
    (img / "usr" / "bin").mkdir(parents=True)
    (img / "usr" / "lib" / "deep" / "er").mkdir(parents=True)
    (img / "etc").mkdir()
    (img / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (img / "usr" / "bin" / "tool").write_text("#!/bin/sh\necho tool\n")
    os.chmod(img / "usr" / "bin" / "tool", 0o755)
    os.link(img / "usr" / "bin" / "tool", img / "usr" / "bin" / "tool2")  # in-image hardlink
    (img / "usr" / "lib" / "deep" / "er" / "f").write_text("deep")
    (img / "bin").symlink_to("usr/bin")
    os.mkfifo(img / "etc" / "fifo")
    if takes_user_xattrs(tmp_path):
        os.setxattr(img / "etc" / "passwd", "user.origin", b"image")
    os.chmod(img / "usr" / "lib", 0o555)
    yield img
    os.chmod(img / "usr" / "lib", 0o755)


def snapshot(root):
    """Everything of the image that a container must never change (not ctime/nlink)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            data = open(p, "rb").read() if stat.S_ISREG(st.st_mode) else None
            xattrs = {a: os.getxattr(p, a, follow_symlinks=False) for a in os.listxattr(p, follow_symlinks=False)} if not stat.S_ISLNK(st.st_mode) else {}
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, data, xattrs)
    return out


def placeholder(tree: cow.ContainerTree) -> list[str]:
    """What a placeholder directory holds on the tree's filesystem: nothing, or its mark file."""
    return [MARK_FILE] if isinstance(tree.marks, FileMarks) else []


def test_create_is_lazy(image, tmp_path) -> None:
    tree = cow.ContainerTree(image, tmp_path / "c" / "rootfs")
    assert not tree.is_lazy(str(tmp_path / "c" / "rootfs"))  # asked before it exists
    tree.create()
    root = tmp_path / "c" / "rootfs"
    assert isinstance(tree.marks, FileMarks) != takes_user_xattrs(root)
    assert sorted(os.listdir(root)) == ["bin", "etc", "usr"]
    assert os.listdir(root / "usr") == placeholder(tree)
    assert tree.is_lazy(str(root / "usr"))
    assert os.readlink(root / "bin") == "usr/bin"


def test_view_materialises_before_lookup(image, tmp_path) -> None:
    tree = cow.ContainerTree(image, tmp_path / "rootfs")
    tree.create()
    view = cow.ContainerView(HostFs(), tree)
    r = str(tree.root)
    assert view.lstat_kind(r + "/usr/lib/deep/er/f") == FILE
    assert view.lstat_kind(r + "/usr/bin") == DIR
    assert sorted(os.listdir(r + "/usr/bin")) == ["tool", "tool2"]  # a DIR answer is listable
    assert view.lstat_kind(r + "/bin") == LINK and view.readlink(r + "/bin") == "usr/bin"
    assert view.lstat_kind(r + "/etc/nothing") == MISSING
    assert stat.S_IMODE(os.stat(r + "/usr/lib").st_mode) == 0o555  # final mode restored
    assert os.stat(r + "/usr/lib").st_mtime_ns == os.stat(image / "usr" / "lib").st_mtime_ns
    assert stat.S_ISFIFO(os.lstat(r + "/etc/fifo").st_mode)
    assert os.stat(r + "/etc/passwd").st_ino == os.stat(image / "etc" / "passwd").st_ino
    assert not tree.is_lazy(r + "/usr/lib/deep")


def test_renamed_placeholder_stays_lazy(image, tmp_path) -> None:
    tree = cow.ContainerTree(image, tmp_path / "rootfs")
    tree.create()
    r = str(tree.root)
    tree.ensure(r + "/usr")
    os.rename(r + "/usr/lib", r + "/moved")  # a guest rename of a placeholder
    view = cow.ContainerView(HostFs(), tree)
    assert view.lstat_kind(r + "/moved/deep/er/f") == FILE
    assert open(r + "/moved/deep/er/f").read() == "deep"


def test_concurrent_materialisation(image, tmp_path) -> None:
    tree = cow.ContainerTree(image, tmp_path / "rootfs")
    tree.create()
    errors = []

    def walk():
        try:
            v = cow.ContainerView(HostFs(), tree)
            assert v.lstat_kind(tree.root + "/usr/lib/deep/er/f") == FILE
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=walk) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert os.listdir(tree.root + "/usr/lib/deep/er") == ["f"]


def test_copy_up_keeps_image(image, tmp_path) -> None:
    before = snapshot(image)
    tree = cow.ContainerTree(image, tmp_path / "rootfs")
    tree.create()
    tree.materialise_all()
    r = tree.root
    for rel in ("etc/passwd", "usr/bin/tool", "usr/lib/deep/er/f"):
        p = os.path.join(r, rel)
        assert cow.copy_up(p)
        assert os.stat(p).st_nlink == 1
        assert not cow.copy_up(p)  # already private
    p = os.path.join(r, "etc/passwd")
    xattrs = takes_user_xattrs(tmp_path)
    if xattrs:
        assert os.getxattr(p, "user.origin") == b"image"
    assert oct(os.stat(os.path.join(r, "usr/bin/tool")).st_mode) == oct(os.stat(image / "usr/bin/tool").st_mode)
    with open(p, "a") as f:
        f.write("x\n")
    os.chmod(p, 0o600)
    if xattrs:
        os.setxattr(p, "user.origin", b"container")
    os.utime(p, (1, 1))
    with open(os.path.join(r, "usr/lib/deep/er/f"), "w") as f:
        f.write("changed")
    assert snapshot(image) == before


def test_materialise_all_and_rmtree(image, tmp_path) -> None:
    tree = cow.ContainerTree(image, tmp_path / "rootfs")
    tree.create()
    tree.materialise_all()
    got = sorted(os.path.relpath(os.path.join(d, n), tree.root) for d, ds, fs in os.walk(tree.root) for n in ds + fs)
    want = sorted(os.path.relpath(os.path.join(d, n), image) for d, ds, fs in os.walk(image) for n in ds + fs)
    assert got == want
    rmtree(tree.root)
    assert not os.path.exists(tree.root)
    assert (image / "usr" / "bin" / "tool").exists()


def test_create_time_independent_of_size(tmp_path) -> None:
    big = tmp_path / "big"
    for i in range(30):
        d = big / f"d{i}"
        d.mkdir(parents=True)
        for j in range(300):
            (d / f"f{j}").write_text("x")
    t0 = time.perf_counter()
    tree = cow.ContainerTree(big, tmp_path / "rootfs")
    tree.create()
    elapsed = time.perf_counter() - t0
    # one listing of the top directory: the 9,000 files are not touched
    assert all(os.listdir(tmp_path / "rootfs" / f"d{i}") == placeholder(tree) for i in range(30))
    assert elapsed < 0.2
