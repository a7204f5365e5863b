"""Directory fds in the compiled fast path (ocirun/engine/_fastdirs.c): a dirfd below
one Python has seen gets its guest path from its parent's (not where a binding's host
path lies), and /proc/self/fd/N goes to the kernel as it is; the guest sees what the
pure-Python loop and a native run show."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ocirun_argv, ocirun_env

STEPS = ["open", "/w", "cat", "d1/d2/d3/f", "in", "d1", "in", "d2", "in", "d3", "cat", "f", "rmdir", "f",
         "chmodfd", "710", "cat", "../../d2/d3/f", "rmdir", "empty", "rmdir", "empty", "in", "..", "rmdir", "d3",
         "chmodfd", "750"]
OUT = ["deep", "deep", "ENOTDIR", "710", "deep", "ok", "ENOENT", "ENOTEMPTY", "750"]


def _tree(root: Path) -> None:
    (root / "w/d1/d2/d3/empty").mkdir(parents=True)
    (root / "w/d1/d2/d3/f").write_text("deep\n")


def _proot(*args: object, fast: str, stats: str = "2") -> subprocess.CompletedProcess:
    env = ocirun_env({"OCIRUN_NO_FASTPATH": "0" if fast == "1" else "1", "OCIRUN_FASTPATH_STATS": stats,
                      "OCIRUN_NO_SECCOMP": "0"})
    return subprocess.run(ocirun_argv("proot", "-w", "/", *args), env=env, capture_output=True, text=True, timeout=120)


def test_native_run_of_the_steps(cprogs: Path, tmp_path: Path) -> None:
    """The reference: the same steps on the host."""
    _tree(tmp_path)
    steps = [str(tmp_path / "w") if s == "/w" else s for s in STEPS]
    p = subprocess.run([cprogs / "dirfdwalk", *steps], capture_output=True, text=True, timeout=60)
    assert p.stdout.splitlines() == OUT, p.stdout + p.stderr


@pytest.mark.parametrize("fast", ["1", "0"])
def test_nested_dirfds_and_proc_self_fd(bb_rw: Path, cprogs: Path, fast: str) -> None:
    """No dirfd's guest path comes from Python: those opened below the rootfs, their
    chmod through /proc/self/fd and the rmdirs of directories in them stay in C (as in
    tar -x and rm -r)."""
    _tree(bb_rw)
    p = _proot("-r", bb_rw, "-b", "/proc", "-b", f"{cprogs}:/c", "/c/dirfdwalk.static", *STEPS, fast=fast)
    assert p.returncode == 0 and p.stdout.splitlines() == OUT, p.stdout + p.stderr
    assert (bb_rw / "w/d1/d2").stat().st_mode & 0o7777 == 0o750
    if fast == "1":
        assert re.search(r"fast path: \d+ of \d+ seccomp stops", p.stderr), p.stderr
        assert "to Python: base" not in p.stderr, p.stderr  # (the rootfs's is given at the start)
        assert "1 unlinkat to Python: unlink" in p.stderr, p.stderr  # rmdir of a file (only Python's)
        assert not re.search(r"\d+ (unlinkat to Python: [^u]|chmod to Python)", p.stderr), p.stderr


@pytest.mark.parametrize("fast", ["1", "0"])
def test_a_dirfd_on_a_bindings_host_path_is_the_bindings(tmp_path: Path, bb_rw: Path, cprogs: Path,
                                                          fast: str) -> None:
    """/x is SHARED/a, also seen as /mnt/a: a dirfd on it is /x (the longest binding by
    host path, as View.to_guest has it), not /mnt/a derived from /mnt's dirfd, so sub/f
    from it is the binding on /x/sub, not /mnt/a/sub/f."""
    shared, other = tmp_path / "shared", tmp_path / "other"
    (shared / "a/sub").mkdir(parents=True)
    (shared / "a/sub/f").write_text("under-mnt\n")
    other.mkdir()
    (other / "f").write_text("bound\n")
    (bb_rw / "x").mkdir()
    steps = ["cat", "/mnt/a/sub/f", "open", "/mnt", "cat", "a/sub/f", "open", "/x", "cat", "sub/f",
             "open", "/mnt", "in", "a", "cat", "sub/f"]
    p = _proot("-r", bb_rw, "-b", f"{shared}:/mnt", "-b", f"{shared}/a:/x", "-b", f"{other}:/x/sub",
               "-b", f"{cprogs}:/c", "/c/dirfdwalk.static", *steps, fast=fast)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.splitlines() == ["under-mnt", "under-mnt", "bound", "bound"], p.stdout + p.stderr


# names below a directory that does not exist (a locale's or a PATH search's tries): ENOENT
# from the kernel as from Python's translator, and nothing kept that would hide the
# directory made later (by mkdir, which forgets nothing, or as a guest symlink)
MISSING = """
W=/c/dirfdwalk.static
$W cat /w/f cat /w/nod/x cat /w/nod/a/b/z cat /w/f/x cat /w/nod/../f
ln -s /w/real /w/nod; $W cat /w/nod/x; rm /w/nod
mkdir -p /w/nod/a/b; echo new > /w/nod/a/b/z; $W cat /w/nod/a/b/z cat /w/nod/x
"""
MISSING_OUT = ["f", "ENOENT", "ENOENT", "ENOTDIR", "ENOENT", "real x", "new", "ENOENT"]


@pytest.mark.parametrize("fast", ["1", "0"])
def test_paths_through_a_missing_directory(bb_rw: Path, cprogs: Path, fast: str) -> None:
    (bb_rw / "w/real").mkdir(parents=True)
    (bb_rw / "w/real/x").write_text("real x\n")
    (bb_rw / "w/f").write_text("f\n")
    p = _proot("-r", bb_rw, "-b", f"{cprogs}:/c", "sh", "-c", MISSING, fast=fast)
    assert p.returncode == 0 and p.stdout.splitlines() == MISSING_OUT, p.stdout + p.stderr
    if fast == "1":
        assert re.search(r"fast path: \d+ of \d+ seccomp stops", p.stderr), p.stderr
