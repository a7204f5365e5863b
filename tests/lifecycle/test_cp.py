"""`ocirun cp` in both directions, with docker's rules, through a container's lazy tree."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from layers.store import Store
from tests.helpers import assert_one_line_error, is_root, run_ocirun


def _ok(cp: subprocess.CompletedProcess) -> str:
    assert cp.returncode == 0, f"exit {cp.returncode}\nstdout: {cp.stdout}\nstderr: {cp.stderr}"
    return cp.stdout


@pytest.fixture
def oc(tmp_path: Path, registry_images):
    root = tmp_path / "root"

    def run(*args, **kw):
        return run_ocirun("--root", root, *args, **kw)

    _ok(run("pull", "-q", registry_images.busybox))
    # an image with a read-only directory and a symlinked one (like usrmerge's /bin -> usr/bin)
    _ok(run("run", "--name", "prep", registry_images.busybox, "sh", "-c",
            "mkdir -p /ro/sub /usr/lib && echo ro > /ro/sub/f && chown 1000:1000 /ro/sub/f && chmod 555 /ro/sub /ro"
            " && ln -s usr/lib /lib"))
    _ok(run("commit", "prep", "base:1"))
    _ok(run("create", "--name", "c", "-v", f"{tmp_path / 'vol'}:/data", "base:1", "cat", "/etc/passwd", "/ro/sub/new"))
    run.root, run.tmp = root, tmp_path
    return run


def test_cp_out(oc) -> None:
    out = oc.tmp / "out"
    out.mkdir()
    _ok(oc("cp", "c:/etc/passwd", str(out / "pw")))  # file -> new name
    assert (out / "pw").read_text().startswith("root:x:0:0")
    _ok(oc("cp", "c:/etc/passwd", str(out)))  # file -> into a directory
    assert (out / "passwd").read_bytes() == (out / "pw").read_bytes()
    _ok(oc("cp", "c:/ro", str(out / "ro")))  # dir -> new name: the directory itself
    assert (out / "ro/sub/f").read_text() == "ro\n" and oct((out / "ro/sub").stat().st_mode & 0o777) == "0o555"
    _ok(oc("cp", "c:/ro", str(out)))  # dir -> into an existing directory: out/ro exists, merged
    (out / "dest").mkdir()
    _ok(oc("cp", "c:/ro/.", str(out / "dest")))  # content only
    assert sorted(os.listdir(out / "dest")) == ["sub"]
    _ok(oc("cp", "c:/bin/sh", str(out / "sh")))  # a symlink stays a symlink
    assert os.readlink(out / "sh") == "busybox"
    _ok(oc("cp", "-L", "c:/bin/sh", str(out / "shL")))
    assert (out / "shL").stat().st_size > 100_000 and not (out / "shL").is_symlink()
    _ok(oc("cp", "c:/lib/../lib/../../etc/passwd", str(out / "through-link")))  # /lib -> usr/lib, .. stops at /
    assert (out / "through-link").read_bytes() == (out / "pw").read_bytes()
    (oc.tmp / "vol").mkdir(exist_ok=True)
    (oc.tmp / "vol/v.txt").write_text("from the volume\n")
    _ok(oc("cp", "c:/data/v.txt", str(out / "v.txt")))
    assert (out / "v.txt").read_text() == "from the volume\n"


def test_cp_in_never_touches_the_image(oc) -> None:
    store = Store.open(oc.root)
    image = store.resolve("base:1")
    before = (image.rootfs / "etc/passwd").read_bytes()
    src = oc.tmp / "passwd"
    src.write_text("new:x:0:0::/:/bin/sh\n")
    _ok(oc("cp", str(src), "c:/etc/passwd"))  # replaces a file still hardlinked to the image's
    new = oc.tmp / "new"
    new.write_text("in a read-only dir\n")
    _ok(oc("cp", str(new), "c:/ro/sub/"))  # into a 0555 directory of the image
    assert _ok(oc("start", "-a", "c")) == "new:x:0:0::/:/bin/sh\nin a read-only dir\n"
    assert (image.rootfs / "etc/passwd").read_bytes() == before and not (image.rootfs / "ro/sub/new").exists()
    tree = oc.tmp / "tree"
    (tree / "a/b").mkdir(parents=True)
    (tree / "a/b/c.txt").write_text("c\n")
    os.symlink("b/c.txt", tree / "a/link")
    _ok(oc("cp", str(tree / "a"), "c:/lib"))  # through the symlinked /lib into usr/lib
    _ok(oc("cp", str(tree / "a") + "/.", "c:/ro"))  # the content into an existing read-only directory
    _ok(oc("commit", "c", "after:1"))
    rec = store.resolve("after:1")
    with tarfile.open(store.blobs.path(rec.layers[-1])) as tar:
        names = {m.name.rstrip("/"): m for m in tar.getmembers()}
    assert {"etc/passwd", "ro/sub/new", "usr/lib/a/b/c.txt", "ro/b/c.txt", "ro/link"} <= set(names)
    assert names["usr/lib/a/link"].linkname == "b/c.txt" and names["ro/sub/new"].uid == 0


@pytest.mark.parametrize("args, code, words", [
    (["cp", "c:/nonexistent", "{tmp}/x"], 125, "Could not find the file /nonexistent in container c"),
    (["cp", "nosuch:/etc", "{tmp}/x"], 1, "No such container: nosuch"),
    (["cp", "c:/etc", "c:/tmp"], 125, "copying between containers is not supported"),
    (["cp", "{tmp}/a", "{tmp}/b"], 125, "must specify at least one container source"),
    (["cp", "c:/etc", "{tmp}/file"], 125, "cannot copy a directory to a file"),
    (["cp", "c:/etc/passwd", "{tmp}/missing/"], 125, "does not exist"),
    (["cp", "{tmp}/file", "c:/no/such/dir/x"], 125, "does not exist"),
])
def test_cp_errors(oc, args: list[str], code: int, words: str) -> None:
    (oc.tmp / "file").write_text("x")
    line = assert_one_line_error(oc(*[a.format(tmp=oc.tmp) for a in args]), code)
    assert words in line


def test_cp_tar_streams(oc) -> None:
    import io

    cp = oc("cp", "c:/ro", "-", text=False)
    assert cp.returncode == 0, cp.stderr
    with tarfile.open(fileobj=io.BytesIO(cp.stdout)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert tar.extractfile("ro/sub/f").read() == b"ro\n"
    assert sorted(members) == ["ro", "ro/sub", "ro/sub/f"]
    assert members["ro/sub"].mode == 0o555 and members["ro/sub/f"].uid == 1000  # the guest's owner
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("in/a.txt", b"a\n"), ("in/deep/b.txt", b"b\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o640
            tar.addfile(info, io.BytesIO(data))
    _ok(oc("cp", "-", "c:/ro/sub", input=buf.getvalue(), text=False))
    _ok(oc("cp", "c:/ro/sub/in", str(oc.tmp / "back")))
    assert (oc.tmp / "back/deep/b.txt").read_bytes() == b"b\n" and (oc.tmp / "back/a.txt").stat().st_mode & 0o777 == 0o640
    assert not (Store.open(oc.root).resolve("base:1").rootfs / "ro/sub/in").exists()
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tar:
        info = tarfile.TarInfo("../../escape")
        tar.addfile(info, io.BytesIO(b""))
    line = assert_one_line_error(oc("cp", "-", "c:/ro", input=evil.getvalue(), text=False), 125)
    assert "escape" in line and not list(oc.root.rglob("escape"))
    line = assert_one_line_error(oc("cp", "-", "c:/etc/passwd", input=buf.getvalue(), text=False), 125)
    assert "must be a directory" in line


def test_cp_into_and_commit_a_running_container(oc, registry_images) -> None:
    import time

    script = ("echo a > /etc/written; i=0; while [ $i -lt 100 ]; do if [ -e /etc/fromhost ]; then "
              "read x < /etc/fromhost; echo \"seen $x\"; break; fi; sleep 0.2; i=$((i+1)); done; sleep 60")
    _ok(oc("run", "-d", "--name", "live", registry_images.busybox, "sh", "-c", script))
    try:
        (oc.tmp / "fromhost").write_text("hello\n")
        deadline = time.monotonic() + 60
        while "written" not in _ok(oc("cp", "live:/etc", "-", text=False)).decode(errors="replace"):
            assert time.monotonic() < deadline, "the container never wrote /etc/written"
            time.sleep(0.2)
        _ok(oc("cp", str(oc.tmp / "fromhost"), "live:/etc/"))
        while "seen hello" not in _ok(oc("logs", "live")):
            assert time.monotonic() < deadline, "the running guest never saw the copied file"
            time.sleep(0.2)
        _ok(oc("commit", "live", "live:1"))  # not paused: the files as they are now
        shown = _ok(oc("run", "--rm", "live:1", "sh", "-c", "read a < /etc/written; read b < /etc/fromhost; echo $a $b"))
        assert shown == "a hello\n"
    finally:
        oc("rm", "-f", "live")


def test_cp_archive_mode(oc, registry_images) -> None:
    _ok(oc("create", "--name", "own", "base:1", "ls", "-ln", "/etc/plain", "/etc/kept"))
    src = oc.tmp / "owned"
    src.write_text("x\n")
    want = os.getuid()
    if is_root():
        os.chown(src, 4321, 4321)
        want = 4321
    _ok(oc("cp", str(src), "own:/etc/plain"))
    _ok(oc("cp", "-a", str(src), "own:/etc/kept"))
    shown = {ln.split()[-1]: ln.split()[2:4] for ln in _ok(oc("start", "-a", "own")).splitlines()}
    assert shown == {"/etc/plain": ["0", "0"], "/etc/kept": [str(want), str(want)]}
    out = oc.tmp / "out-a"
    if is_root():  # the guest's owner (1000, from the image) on the host file
        _ok(oc("cp", "-a", "own:/ro/sub/f", str(out)))
        assert (out.stat().st_uid, out.stat().st_gid) == (1000, 1000)
    else:
        line = assert_one_line_error(oc("cp", "-a", "own:/ro/sub/f", str(out)), 125)
        assert "needs root" in line
