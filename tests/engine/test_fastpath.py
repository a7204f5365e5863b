"""The compiled fast path (ocirun/engine/_fastpath.c): it takes the common stops, and
what it answers from its mirror of the path cache follows the guest's own mutations
exactly as the pure-Python loop does."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.helpers import ocirun_argv, ocirun_env

# stat the same paths many times (cache hits), then rename, symlink, remove and
# re-create what they name: every answer must be the one of the current tree
SCRIPT = """
mkdir -p /w/a && echo x > /w/a/f
for i in 1 2 3 4 5 6 7 8; do stat -c %s /w/a/f; done
mv /w/a /w/b; stat /w/a/f 2>/dev/null || echo gone
ln -s /w/b /w/a; stat -L -c %s /w/a/f; stat -c %F /w/a  # absolute: only the guest resolves it
rm /w/a; mkdir /w/a; echo yyy > /w/a/f; stat -c %s /w/a/f; stat -c %F /w/a
rm -r /w/a /w/b
"""
EXPECTED = ["2"] * 8 + ["gone", "2", "symbolic link", "4", "directory"]
STATS = re.compile(r"fast path: (\d+) of (\d+) seccomp stops")


def _run(root: Path, no_fastpath: str) -> subprocess.CompletedProcess:
    env = ocirun_env({"OCIRUN_NO_FASTPATH": no_fastpath, "OCIRUN_FASTPATH_STATS": "1", "OCIRUN_NO_SECCOMP": "0"})
    return subprocess.run(ocirun_argv("proot", "-r", root, "sh", "-c", SCRIPT), env=env,
                          capture_output=True, text=True, timeout=120)


def test_fast_path_built() -> None:
    assert importlib.util.find_spec("ocirun.engine._fastpath"), \
        "the C extension is not built: python setup.py build_ext --inplace (gcc, python3-dev)"


@pytest.mark.parametrize("no_fastpath", ["0", "1"])
def test_mutations_seen_with_and_without_fast_path(bb_rw: Path, no_fastpath: str) -> None:
    p = _run(bb_rw, no_fastpath)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\n")[:-1] == EXPECTED
    stats = STATS.search(p.stderr)
    if no_fastpath == "1":
        assert stats is None, p.stderr
    else:
        assert stats, p.stderr
        fast, seen = int(stats[1]), int(stats[2])
        assert 8 <= fast < seen, p.stderr  # the 8 warm stats at least; mkdir, mv... go to Python


# relative paths: from the cwd (cd, then names with '/', '..', guest symlinks, a leaf
# symlink to follow), in fresh directories (a miss an ancestor's translation answers),
# a directory replaced by an absolute symlink (only the guest resolves it)
RELATIVE = """
mkdir -p /w/d/sub && cd /w/d
echo a > f1; for i in 1 2 3 4 5 6; do cat f1; done
echo b > sub/f2; ln -s sub lnk; cat lnk/f2; stat -c %F lnk; stat -L -c %F lnk
ln -s /w/d/sub abslink; cat abslink/f2; cat sub/../f1
mkdir new1 && echo c > new1/f3 && cat new1/f3 && cat /w/d/new1/f3
cd sub && cat f2 && cat ../f1 && cd ..
mv sub sub2; cat lnk/f2 2>/dev/null || echo gone; cat sub2/f2
ln -s f1 leaf; cat leaf; rm leaf; ln -s /w/d/new1/f3 leaf; cat leaf; cat ./leaf
cd /w; cat d/f1; cd d/new1; cat f3; cat ../f1
cd /w/d && mkdir -p x/y/z && echo q > x/y/z/f && cat x/y/z/f; mv x x2; ln -s /w/d/new1 x; cat x/f3; cat x2/y/z/f
"""
RELATIVE_OUT = ["a"] * 6 + ["b", "symbolic link", "directory", "b", "a", "c", "c", "b", "a", "gone", "b",
                            "a", "c", "c", "a", "c", "a", "q", "c", "q"]


@pytest.mark.parametrize("no_fastpath", ["0", "1"])
def test_relative_paths_with_and_without_fast_path(bb_rw: Path, no_fastpath: str) -> None:
    env = ocirun_env({"OCIRUN_NO_FASTPATH": no_fastpath, "OCIRUN_NO_SECCOMP": "0"})
    p = subprocess.run(ocirun_argv("proot", "-r", bb_rw, "sh", "-c", RELATIVE), env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\n")[:-1] == RELATIVE_OUT


def _tarball(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    for i in range(60):
        (src / f"d{i % 6}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 6}" / f"f{i}").write_text(f"file {i}\n")
    (src / "link").symlink_to("/etc/debian_version")  # absolute: only the guest resolves it
    (src / "d0" / "up").symlink_to("../d1")
    tarball = tmp_path / "t.tar"
    with tarfile.open(tarball, "w") as tf:
        tf.add(src, arcname="src")
    return tarball


# tar -C: openat/mkdirat/fchownat/utimensat relative to a dirfd in a bound directory that
# the rootfs's /tmp lacks (/tmp's listing is fixed up: its opens and getdents64 go to
# Python), then reads through the cwd, the dirfd (find) and guest symlinks, removals by
# a dirfd (rm -r) and what replaces them
DIRFD = """
mkdir /tmp/bound/work && tar -xf /tmp/bound/t.tar -C /tmp/bound/work
find /tmp -maxdepth 1 | sort
cd /tmp/bound/work && find src | sort | md5sum
cat src/d*/f* | md5sum; cat src/link; cat src/d0/up/f1; stat -c %F src/link src/d0/up src/d0/up/
ls src/d5 | wc -l; find src -name f7 -newer /tmp/bound/t.tar | wc -l
cat src/d1/f1 >/dev/null; rm -r src/d1; cat src/d1/f1 2>/dev/null || echo gone; ls src | wc -l
mkdir src/d1; ln -s /tmp/bound/work/src/d2 src/d1/f1; cat src/d1/f1/f2; cd src/d3 && rm f3 && ls | wc -l
"""


@pytest.mark.parametrize("no_fastpath", ["0", "1"])
def test_dirfd_paths_with_and_without_fast_path(debian_rootfs: Path, tmp_path: Path, no_fastpath: str) -> None:
    tarball = _tarball(tmp_path / "in")
    env = ocirun_env({"OCIRUN_NO_FASTPATH": no_fastpath, "OCIRUN_FASTPATH_STATS": "1", "OCIRUN_NO_SECCOMP": "0"})
    p = subprocess.run(ocirun_argv("proot", "-r", debian_rootfs, "-b", f"{tarball.parent}:/tmp/bound", "sh", "-c",
                                   DIRFD), env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.split("\n")[:-1]
    names = sorted(["src", *[f"src/d{d}" for d in range(6)], *[f"src/d{i % 6}/f{i}" for i in range(60)],
                    "src/link", "src/d0/up"])
    md5 = hashlib.md5("".join(n + "\n" for n in names).encode()).hexdigest()
    contents = "".join(f"file {i}\n" for d in range(6) for i in sorted(range(d, 60, 6), key=str))
    version = (debian_rootfs / "etc/debian_version").read_text().strip()
    assert lines == ["/tmp", "/tmp/bound", f"{md5}  -", f"{hashlib.md5(contents.encode()).hexdigest()}  -",
                     version, "file 1", "symbolic link", "symbolic link", "directory", "10", "0", "gone", "6",
                     "file 2", "9"]
    stats = STATS.search(p.stderr)
    if no_fastpath == "0":
        assert stats and int(stats[1]) >= 100, p.stderr  # the tar's creations at least


def test_waits_stay_in_c_until_a_guest_traces(bb_root: Path) -> None:
    """The ptrace emulation traps wait4/waitid but needs them only once a guest process
    traces another: until then the fast path lets them run (one Python stop less per
    child a shell waits for); a guest tracer (tests/engine/test_ptrace.py) turns it off."""
    env = ocirun_env({"OCIRUN_FASTPATH_STATS": "2", "OCIRUN_NO_SECCOMP": "0", "OCIRUN_NO_FASTPATH": "0"})
    cp = subprocess.run(ocirun_argv("proot", "-r", bb_root, "sh", "-c", "for i in 1 2 3 4 5; do /bin/true; done; echo ok"),
                        env=env, capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0 and cp.stdout == "ok\n", cp.stderr
    assert STATS.search(cp.stderr), cp.stderr
    assert not re.search(r"\d+ (wait4|waitid) to Python", cp.stderr), cp.stderr


@pytest.mark.parametrize("no_fastpath", ["0", "1"])
def test_a_hard_link_to_a_symlink_is_followed_at_once(bb_rw: Path, no_fastpath: str) -> None:
    """link() of a symlink makes its new name a symlink: a followed lookup of that name,
    translated (and cached) just before while it was missing, must now follow it, as
    under PRoot 5.4 and the kernel (the new name was not forgotten by the path cache)."""
    (bb_rw / "guestonly").mkdir()
    (bb_rw / "w").mkdir()
    script = "cd /w; ln -s /guestonly tl; stat -L -c %F nn 2>/dev/null || echo missing; ln tl nn; stat -L -c %F nn; stat -c %F nn"
    env = ocirun_env({"OCIRUN_NO_FASTPATH": no_fastpath, "OCIRUN_NO_SECCOMP": "0"})
    cp = subprocess.run(ocirun_argv("proot", "-r", bb_rw, "sh", "-c", script), env=env, capture_output=True,
                        text=True, timeout=120)
    assert cp.stdout.splitlines() == ["missing", "directory", "symbolic link"], cp.stdout + cp.stderr


LISTED_FD = """
exec 9</tmp
find /usr/share | wc -l
ls /tmp
"""
LISTED = re.compile(r"(\d+) getdents64 to Python: listed")


def test_getdents64_of_other_fds_stays_in_c_while_a_listed_dir_is_open(debian_rootfs: Path, tmp_path: Path) -> None:
    """/tmp lacks the bound name, so its listing is fixed up in Python: while the shell
    holds it open on fd 9, find's getdents64 on its own fds is still finished in C, and
    ls's own open of /tmp (another fd) still lists the bound name."""
    env = ocirun_env({"OCIRUN_FASTPATH_STATS": "2", "OCIRUN_NO_SECCOMP": "0", "OCIRUN_NO_FASTPATH": "0"})
    p = subprocess.run(ocirun_argv("proot", "-r", debian_rootfs, "-b", f"{tmp_path}:/tmp/bound", "-w", "/",
                                   "sh", "-c", LISTED_FD), env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    entries = 1 + sum(len(dirs) + len(files) for _, dirs, files in os.walk(debian_rootfs / "usr/share"))
    assert p.stdout.split("\n")[:-1] == [str(entries), "bound"]
    listed = LISTED.search(p.stderr)
    assert listed, p.stderr  # ls's listing of /tmp went to Python
    assert int(listed[1]) <= 4, p.stderr  # ls's getdents64 of /tmp only, not find's (one per directory)
