"""-0's stat family in the compiled fast path (ocirun/engine/_fakeroot.c): the same bytes
as the pure-Python engine, and a mirror of the fake-root records that never goes stale
(the guest's own chown/chmod/mknod/rename/unlink, another process's, another engine's).
tests/cprogs/fakestat.c makes the raw syscalls."""

from __future__ import annotations

import re
import struct
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import ocirun_argv, ocirun_env

STATS = re.compile(r"fast path: (\d+) of (\d+) seccomp stops")
SETUP = """
set -e
mkdir -p /srv/d; echo data > /srv/d/owned; echo x > /srv/d/plain; echo y > /srv/d/setuid
chown 1234:5678 /srv/d/owned; chmod 4755 /srv/d/setuid; chmod 0 /srv/d/plain
mknod /srv/d/null c 1 3; mknod /srv/d/disk b 8 1; mkfifo /srv/d/fifo
ln -s owned /srv/d/link; ln -s /srv/nowhere /srv/d/dangling; chown -h 42:43 /srv/d/link
"""
PATHS = ["/srv/d", "/srv/d/owned", "/srv/d/plain", "/srv/d/setuid", "/srv/d/null", "/srv/d/disk", "/srv/d/fifo",
         "/srv/d/link", "/srv/d/dangling", "/srv/d/missing", "/srv/d/owned/sub", "/c", "/c/fakestat.static",
         "/bin/busybox", "/tmp", "/"]


def _guest(root: Path, cprogs: Path, *argv: str, no_fastpath: str = "0", opts: tuple[str, ...] = ("-0",),
           ) -> subprocess.CompletedProcess:
    env = ocirun_env({"OCIRUN_NO_FASTPATH": no_fastpath, "OCIRUN_FASTPATH_STATS": "1", "OCIRUN_NO_SECCOMP": "0"})
    return subprocess.run(ocirun_argv("proot", *opts, "-r", root, "-b", f"{cprogs}:/c", *argv), env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, cwd="/")


def _fast_stops(p: subprocess.CompletedProcess) -> int:
    stats = STATS.search(p.stderr)
    assert stats, p.stderr
    return int(stats[1])


@pytest.mark.parametrize("opts", [("-0",), ("-i", "123:456")])
def test_every_stat_form_as_the_pure_python_engine(bb_rw: Path, cprogs: Path, opts: tuple[str, ...]) -> None:
    setup = _guest(bb_rw, cprogs, "sh", "-c", SETUP)
    assert setup.returncode == 0, setup.stderr
    fast = _guest(bb_rw, cprogs, "/c/fakestat.static", "dump", *PATHS, opts=opts)
    slow = _guest(bb_rw, cprogs, "/c/fakestat.static", "dump", *PATHS, no_fastpath="1", opts=opts)
    assert fast.returncode == 0 and slow.returncode == 0, fast.stderr + slow.stderr
    assert fast.stdout == slow.stdout
    assert fast.stdout.count("\n") > 12 * len(PATHS)
    assert fast.stdout.count("fstat-cwd rc=-1 errno=9\n") == len(PATHS)  # EBADF, as the kernel says
    assert STATS.search(slow.stderr) is None
    assert _fast_stops(fast) >= 8 * len(PATHS), fast.stderr  # the stats were answered in C
    stat = _first_stats(fast.stdout)
    assert struct.unpack_from("<II", stat["/srv/d/owned"], 28) == (1234, 5678)  # st_uid, st_gid
    mode, _, _, _, rdev = struct.unpack_from("<IIIIQ", stat["/srv/d/null"], 24)
    assert (mode, rdev) == (0o20644, 0x103)  # the device the guest made
    assert struct.unpack_from("<II", stat["/bin/busybox"], 28) == (0, 0) or opts != ("-0",)


def _first_stats(dump: str) -> dict[str, bytes]:
    """The struct stat of each path's first line (stat) in fakestat's dump."""
    out, path = {}, ""
    for line in dump.splitlines():
        if line.startswith("== "):
            path = line[3:]
        elif line.startswith("stat rc=0 "):
            out[path] = bytes.fromhex(line.split()[-1])
    return out


@pytest.mark.parametrize("no_fastpath", ["0", "1"])
def test_changes_seen_by_the_next_stat(bb_rw: Path, cprogs: Path, no_fastpath: str) -> None:
    (bb_rw / "tmp/f").write_text("x")
    (bb_rw / "tmp/f").chmod(0o644)
    p = _guest(bb_rw, cprogs, "/c/fakestat.static", "loop", "/tmp/f", "40", no_fastpath=no_fastpath)
    assert p.returncode == 0 and p.stdout.splitlines()[-1] == "ok", p.stdout + p.stderr
    if no_fastpath == "0":
        assert _fast_stops(p) >= 40 * 20, p.stderr  # most of the stats in C


def test_another_engine_change_seen(bb_rw: Path, cprogs: Path) -> None:
    """Two engines on one rootfs share its fake-root database: a stat loop in one sees
    another's chown (the database looks for others' commits every 50 ms)."""
    (bb_rw / "tmp/f").write_text("x")
    env = ocirun_env({"OCIRUN_NO_FASTPATH": "0", "OCIRUN_FASTPATH_STATS": "1", "OCIRUN_NO_SECCOMP": "0"})
    watcher = subprocess.Popen(
        ocirun_argv("proot", "-0", "-r", bb_rw, "-b", f"{cprogs}:/c", "/c/fakestat.static", "watch", "/tmp/f",
                    "4321", "60"),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL, cwd="/")
    try:
        time.sleep(2)  # the watcher's stat loop runs (in C)
        assert watcher.poll() is None
        start = time.monotonic()
        chown = _guest(bb_rw, cprogs, "chown", "4321", "/tmp/f")
        assert chown.returncode == 0, chown.stderr
        out, err = watcher.communicate(timeout=90)
    finally:
        watcher.kill()
        watcher.wait()
    assert out.splitlines() == ["seen"], out + err
    assert time.monotonic() - start < 30
    assert _fast_stops(subprocess.CompletedProcess([], 0, out, err)) > 1000, err


# root's rights under -0 (as a user: the kernel checks the real user's): opens of files
# the user may not read or write without O_CREAT, access(2) as root answers it, a
# directory the user may not search; creations, chown, O_PATH opens
RIGHTS = """
cd /tmp && cat ro0 && test -r ro0 && test -w ro4 && echo rw-ok; test -x ro4 || echo no-x
cat locked/f; ls locked; cat ro0 ro0 >/dev/null; stat -c '%a' ro0 ro4 locked
echo x > new && chmod 0444 new && echo y >> new && cat new
touch plain; chown 7:8 plain; cat plain; stat -c '%u:%g %a' new plain
"""


@pytest.mark.parametrize("no_fastpath", ["0", "1"])
def test_root_rights_and_access(bb_rw: Path, cprogs: Path, no_fastpath: str) -> None:
    tmp = bb_rw / "tmp"
    (tmp / "ro0").write_text("secret\n")
    (tmp / "ro0").chmod(0)
    (tmp / "ro4").write_text("")
    (tmp / "ro4").chmod(0o444)
    (tmp / "locked").mkdir()
    (tmp / "locked/f").write_text("z\n")
    (tmp / "locked").chmod(0)
    p = _guest(bb_rw, cprogs, "sh", "-c", RIGHTS, no_fastpath=no_fastpath)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.splitlines() == ["secret", "rw-ok", "no-x", "z", "f", "0", "444", "0", "x", "y", "0:0 444",
                                     "7:8 644"]


IDS = ["start 0 0 0 0"] * 3 + ["thread-before 0 0 0 0"] + ["after 1 2 5 6"] * 3 + [
    "thread-after 0 0 0 0", "saved 1 3 5 6", "child 1 3 5 6", "exec 1 3 5 6", "exec 1 3 5 6", "parent 1 3 5 6"]


@pytest.mark.parametrize("no_fastpath", ["0", "1"])
def test_ids_follow_set_id_threads_fork_exec(bb_rw: Path, cprogs: Path, no_fastpath: str) -> None:
    p = _guest(bb_rw, cprogs, "/c/fakestat.static", "ids", no_fastpath=no_fastpath)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.splitlines() == IDS


# under -0 the fork events are resumed in C too (FakeId0.fork_hook_later): each child has
# the ids its parent had at the fork, not those the parent set just after it
FORKS = ('for (1..3) { if (my $p = fork) { $> = 1000 + $_; waitpid($p, 0); print "p $< $>\\n"; $> = 0 }'
         ' else { select(undef, undef, undef, 0.1); print "c $< $>\\n"; exit 0 } }')
TREE = re.compile(r"first stops, \d+ exec events, \d+ ends, (\d+) fork events")


@pytest.mark.parametrize("no_fastpath", ["0", "1"])
def test_children_have_the_ids_of_the_fork(debian_rootfs: Path, no_fastpath: str) -> None:
    env = ocirun_env({"OCIRUN_NO_FASTPATH": no_fastpath, "OCIRUN_FASTPATH_STATS": "1", "OCIRUN_NO_SECCOMP": "0"})
    p = subprocess.run(ocirun_argv("proot", "-0", "-r", debian_rootfs, "-b", "/dev", "perl", "-e", FORKS), env=env,
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, cwd="/")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["c 0 0", "p 0 1001", "c 0 0", "p 0 1002", "c 0 0", "p 0 1003"], p.stderr
    tree = TREE.search(p.stderr)
    assert (tree is None) if no_fastpath == "1" else (tree is not None and int(tree[1]) >= 1), p.stderr
