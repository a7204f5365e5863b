"""Paths, the working directory and /proc as PRoot 5.4 and the kernel show them.
Each expectation is what a native run (or PRoot, for the bindings) printed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.engine.conftest import ok, proot

PYTHON = "/usr/bin/python3"


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """A directory every user may write in."""
    d = tmp_path / "shared"
    d.mkdir()
    for p in (tmp_path, d):
        os.chmod(p, 0o777)
    return d


def test_renaming_a_parent_of_the_cwd_keeps_relative_paths_working(shared: Path, mode_env) -> None:
    (shared / "a" / "b").mkdir(parents=True)
    (shared / "a" / "b" / "f").write_text("f\n")
    os.chmod(shared / "a", 0o777)
    os.chmod(shared / "a" / "b", 0o777)
    script = f"cd {shared}/a/b && mv {shared}/a {shared}/z && cat f && /bin/pwd && touch g && ls {shared}/z/b"
    out = ok(proot("/bin/sh", "-c", script, env=mode_env))
    assert out == f"f\n{shared}/z/b\nf\ng\n"  # as natively (PRoot: "cat: f: No such file")


def test_symlink_inside_a_binding_reads_as_the_guest_path(shared: Path, bb_root: Path, mode_env) -> None:
    (shared / "t" / "d").mkdir(parents=True)
    (shared / "l").symlink_to(shared / "t")
    out = ok(proot("-r", bb_root, "-b", f"{shared}:/mnt", "/bin/sh", "-c",
                   "readlink /mnt/l; ls /mnt/l/; cd /mnt/l && pwd -P", env=mode_env))
    assert out == "/mnt/t\nd\n/mnt/t\n"


def test_symlink_under_the_host_root_is_left_alone(shared: Path) -> None:
    (shared / "t").mkdir()
    (shared / "l").symlink_to(shared / "t")
    # rootfs /: the link's own host path is in the guest, PRoot shows its target unchanged
    assert ok(proot("-b", f"{shared}:/mnt", "readlink", "/mnt/l")) == f"{shared}/t\n"


def test_proc_self_exe_and_comm_name_the_program(mode_env) -> None:
    native = subprocess.run(["/bin/sh", "-c", "md5sum < /proc/self/exe; md5sum < /usr/bin/md5sum; cat /proc/self/comm"],
                            capture_output=True, text=True, check=True).stdout
    script = "md5sum < /proc/self/exe; md5sum < /usr/bin/md5sum; cat /proc/self/comm"
    assert ok(proot("/bin/sh", "-c", script, env=mode_env)).replace("md5sum", "") == native.replace("md5sum", "")


def test_rmdir_dot_and_readlink_through_a_pipe_fail_as_on_linux(shared: Path, mode_env) -> None:
    (shared / "x").mkdir()
    os.chmod(shared / "x", 0o777)
    script = (f"rmdir {shared}/x/./; echo $?; rmdir {shared}/x/.; echo $?; "
              "echo | readlink /proc/self/fd/0/..; echo $?; test -d " + f"{shared}/x && echo kept; "
              f"rmdir {shared}/x/..; rmdir {shared}/x/../")
    cp = proot("/bin/sh", "-c", script, env=mode_env)
    assert cp.stdout == "1\n1\n1\nkept\n"
    assert [line.rsplit(": ", 1)[1] for line in cp.stderr.splitlines()] == [
        "Invalid argument", "Invalid argument", "Directory not empty", "Directory not empty"]


def test_long_relative_unix_socket_names(shared: Path, mode_env) -> None:
    script = r"""
import os, socket, sys
os.chdir(sys.argv[1]); os.mkdir("d" * 60); os.chdir("d" * 60)
s = socket.socket(socket.AF_UNIX); s.bind("s" * 100); s.listen()
c = socket.socket(socket.AF_UNIX); c.connect("s" * 100)
print(s.getsockname() == "s" * 100, c.getpeername() == "s" * 100)
"""
    assert ok(proot(PYTHON, "-c", script, shared, env=mode_env)) == "True True\n"
    out = ok(proot("-b", f"{shared}:/a/guest/path/long/enough/to/pass/the/limit/of/sun/path", PYTHON, "-c",
                   script.replace('"d" * 60', '"e" * 60'), "/a/guest/path/long/enough/to/pass/the/limit/of/sun/path",
                   env=mode_env))
    assert out == "True True\n"


def test_two_bindings_of_one_directory_keep_the_path_used(shared: Path, mode_env) -> None:
    out = ok(proot("-b", f"{shared}:/a", "-b", f"{shared}:/b", "-w", "/b", "/bin/sh", "-c",
                   "pwd; /bin/pwd; cd /a && /bin/pwd; cd /b && /bin/pwd", env=mode_env))
    assert out == "/b\n/b\n/a\n/b\n"


def test_signals_a_guest_sends_to_the_tracer_are_ignored(mode_env) -> None:
    # /bin/kill exits at once: its signals are often read after the tracer reaped it (20 tries)
    script = ('T=$(awk "/TracerPid/{print \\$2}" /proc/self/status); test "$T" -gt 1 || exit 9; '
              'kill -TERM $T; kill -INT $T; for i in $(seq 20); do /bin/kill -HUP $T; /bin/kill -TERM $T; done; '
              'sleep 0.5; echo alive')
    assert ok(proot("/bin/bash", "-c", script, env=mode_env)) == "alive\n"


def test_signals_from_outside_are_still_forwarded() -> None:
    from tests.helpers import ocirun_argv, ocirun_env

    proc = subprocess.Popen(ocirun_argv("proot", "/bin/sh", "-c", "echo started; exec sleep 30"), env=ocirun_env(),
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, cwd="/")
    assert proc.stdout is not None and proc.stdout.readline() == "started\n"
    proc.terminate()
    assert proc.wait(timeout=30) == 143


def test_proc_self_comm_is_the_programs_name_for_ps(mode_env) -> None:
    out = ok(proot("/bin/sh", "-c", "sleep 5 & sleep 0.3; ps -o comm= -p $!; kill $!", env=mode_env))
    assert out == "sleep\n"


def test_root_id_lends_the_permission_bits_root_would_not_need(shared: Path, mode_env) -> None:
    """PRoot's manual, -0: `mkdir /tmp/foo; chmod a-rwx /tmp/foo; echo ... > /tmp/foo/bar` works."""
    foo = shared / "foo"
    script = (f"mkdir {foo} && chmod a-rwx {foo} && echo 'I bypass file-system permissions.' > {foo}/bar && "
              f"cat {foo}/bar && mkdir {foo}/sub && ls {foo} && stat -c %a {foo} && rm -r {foo}/bar {foo}/sub")
    out = ok(proot("-0", "/bin/sh", "-c", script, env=mode_env))
    assert out == "I bypass file-system permissions.\nbar\nsub\n0\n"


@pytest.mark.parametrize("ext", [(), ("-0",)], ids=["plain", "root"])
def test_the_root_and_bindings_are_mount_points(bb_rw: Path, shared: Path, ext: tuple[str, ...], mode_env) -> None:
    """The kernel refuses to remove or move a mount point (EBUSY); PRoot acts on the host
    directory: `mv / /mnt/x` moved the whole rootfs into the binding."""
    (shared / "d").mkdir()
    (shared / "f").write_text("f\n")
    script = ("rmdir /; rmdir //; mv / /mnt/x; mv /mnt /m2; cd / && rmdir mnt; rmdir /mnt/; "
              "rm /etc/f; cd /etc && unlink f; mv /etc/f /tmp/g; mv /etc/passwd /etc/f; "
              "rmdir /mnt/.; mv /mnt/d /mnt/e && ls /mnt && cat /etc/f")
    cp = proot(*ext, "-r", bb_rw, "-b", f"{shared}:/mnt", "-b", f"{shared}/f:/etc/f", "/bin/sh", "-c", script,
               env=mode_env)
    assert cp.stdout == "e\nf\nf\n", cp.stderr
    errors = [line.rsplit(": ", 1)[1] for line in cp.stderr.splitlines()]
    assert errors == ["Device or resource busy"] * 10 + ["Invalid argument"], cp.stderr
    assert sorted(os.listdir(shared)) == ["e", "f"] and (bb_rw / "tmp").is_dir() and (bb_rw / "bin").is_dir()


REMOVED_CWD = r"""
import os, sys, errno
def e(n, f):
    try:
        print(n, f())
    except OSError as x:
        print(n, errno.errorcode[x.errno])
os.chdir(sys.argv[1]); os.mkdir("gone"); os.chdir("gone"); os.rmdir("../gone")
e("stat .", lambda: os.stat(".").st_nlink)
e("stat ./", lambda: os.stat("./").st_nlink)
e("listdir", lambda: os.listdir("."))
e("getcwd", os.getcwd)
e("creat x", lambda: os.open("x", os.O_CREAT | os.O_WRONLY))
e("stat ..", lambda: os.path.samestat(os.stat(".."), os.stat(sys.argv[1])))
e("chdir ..", lambda: os.chdir(".."))
e("getcwd", lambda: os.getcwd() == sys.argv[1])
"""


@pytest.mark.parametrize("ext", [(), ("-0",)], ids=["plain", "root"])
def test_dot_and_dotdot_in_a_removed_cwd(shared: Path, ext: tuple[str, ...], mode_env) -> None:
    """The kernel keeps the removed directory's inode: stat(".") works, ".." leads back
    (PRoot: ENOENT for both, so `cd ..` out of a removed directory failed)."""
    native = subprocess.run([PYTHON, "-c", REMOVED_CWD, str(shared)], capture_output=True, text=True, check=True)
    assert native.stdout.startswith("stat . 0\n") and "chdir .. None\ngetcwd True\n" in native.stdout
    assert ok(proot(*ext, PYTHON, "-c", REMOVED_CWD, str(shared), env=mode_env)) == native.stdout
    assert ok(proot(*ext, "-b", f"{shared}:/mnt", PYTHON, "-c", REMOVED_CWD, "/mnt", env=mode_env)) == native.stdout


@pytest.mark.parametrize("ext", [(), ("-0",)], ids=["plain", "root"])
def test_removing_a_mount_point_checks_the_parent_first(shared: Path, ext: tuple[str, ...], mode_env) -> None:
    """The kernel's may_delete comes before its mount point check: EACCES in a parent the
    user may not write (here the host's /), EBUSY for root (real or -0)."""
    (shared / "d").mkdir()
    cp = proot(*ext, "-b", f"{shared}/d:/mnt", "/bin/sh", "-c", "rmdir /mnt; mv /mnt /m2", env=mode_env)
    error = "Device or resource busy" if ext or os.geteuid() == 0 else "Permission denied"
    assert [line.rsplit(": ", 1)[1] for line in cp.stderr.splitlines()] == [error, error]
    assert (shared / "d").is_dir()


def test_comm_is_the_name_executed_not_the_symlink_target(mode_env) -> None:
    """/bin/sh -> dash, python3 -> python3.11: the kernel names the process after the path
    given to execve (ps shows `sh`), as PRoot does."""
    script = "cat /proc/$$/comm; python3 -c 'print(open(\"/proc/self/comm\").read().strip())'"
    native = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, check=True).stdout
    assert native == "sh\npython3\n"
    assert ok(proot("/bin/sh", "-c", script, env=mode_env)) == native
