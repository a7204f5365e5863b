"""Corner cases from small C programs (tests/cprogs), dynamic (guest glibc via the
guest's ld.so), static, and musl (the guest's musl loader)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.engine.conftest import ok, proot


def _musl_tree(dest: Path) -> Path:
    """A tiny musl root: the loader (musl's libc.so is its own ld.so) and a shell."""
    (dest / "lib").mkdir(parents=True)
    (dest / "bin").mkdir()
    (dest / "tmp").mkdir()
    shutil.copy2("/lib/ld-musl-x86_64.so.1", dest / "lib/ld-musl-x86_64.so.1")
    shutil.copy2("/bin/busybox", dest / "bin/busybox")
    for name in ("sh", "echo", "true", "cat"):
        (dest / "bin" / name).symlink_to("/bin/busybox")
    return dest


def test_proc_self_exe_names_the_program(debian_rootfs: Path, cprogs: Path, mode_env: dict) -> None:
    out = ok(proot("-r", debian_rootfs, "-b", "/proc", "-b", f"{cprogs}:/c", "/c/selfexe", "again", env=mode_env))
    assert out.splitlines() == ["exe=/c/selfexe argv0=/c/selfexe", "exe=/c/selfexe argv0=renamed"]


def test_static_program(bb_root: Path, cprogs: Path, mode_env: dict) -> None:
    out = ok(proot("-r", bb_root, "-b", "/proc", "-b", f"{cprogs}:/c", "/c/selfexe.static", "again", env=mode_env))
    assert out.splitlines() == ["exe=/c/selfexe.static argv0=/c/selfexe.static",
                                "exe=/c/selfexe.static argv0=renamed"]


def test_musl_program_uses_the_guest_musl_loader(tmp_path: Path, cprogs: Path) -> None:
    root = _musl_tree(tmp_path / "musl")
    out = ok(proot("-r", root, "-b", "/proc", "-b", f"{cprogs}:/c", "/c/selfexe.musl"))
    assert out.splitlines() == ["exe=/c/selfexe.musl argv0=/c/selfexe.musl"]
    out = ok(proot("-r", root, "-b", f"{cprogs}:/c", "/c/vfork.musl", "echo", "via-vfork"))
    assert out.splitlines() == ["via-vfork", "child-exit=0"]


def test_getcwd_after_rmdir(debian_rootfs: Path, cprogs: Path, tmp_path: Path, mode_env: dict) -> None:
    out = ok(proot("-r", debian_rootfs, "-b", f"{cprogs}:/c", "-b", f"{tmp_path}:/w",
                   "/c/rmcwd", "/w/gone", env=mode_env))
    assert out.splitlines() == ["cwd=/w/gone", "after-errno=ENOENT"]


def test_fd_relative_at_calls_with_proc(bb_rw: Path, cprogs: Path, mode_env: dict) -> None:
    out = ok(proot("-r", bb_rw, "-b", "/proc", "-b", f"{cprogs}:/c", "/c/atcalls.static", "/tmp", env=mode_env))
    assert out.splitlines() == ["fdlink=/tmp/atdir", "OK"]
    assert not (bb_rw / "tmp/atdir").exists()


def test_threads_share_cwd(debian_rootfs: Path, cprogs: Path, mode_env: dict) -> None:
    out = ok(proot("-r", debian_rootfs, "-b", f"{cprogs}:/c", "/c/threads", env=mode_env))
    assert out == "failures=0 thread-cwd=/etc\n"


def test_vfork_exec(debian_rootfs: Path, cprogs: Path, mode_env: dict) -> None:
    out = ok(proot("-r", debian_rootfs, "-b", f"{cprogs}:/c", "/c/vfork", "sh", "-c", "echo in-child; exit 7",
                   env=mode_env))
    assert out == "in-child\nchild-exit=7\n"


def test_execve_errors_as_the_kernel(bb_rw: Path, cprogs: Path, mode_env: dict) -> None:
    (bb_rw / "noexec").write_text("#!/bin/sh\n")
    (bb_rw / "garbage").write_bytes(b"\x00\x01garbage")
    os.chmod(bb_rw / "garbage", 0o755)
    (bb_rw / "badinterp").write_text("#!/no/such/interp\n")
    os.chmod(bb_rw / "badinterp", 0o755)
    out = ok(proot("-r", bb_rw, "-b", f"{cprogs}:/c", "/c/execerr.static", "/missing", "/noexec", "/etc",
                   "/garbage", "/badinterp", env=mode_env))
    assert out.splitlines() == ["/missing: ENOENT", "/noexec: EACCES", "/etc: EACCES", "/garbage: ENOEXEC",
                                "/badinterp: ENOENT"]


@pytest.mark.parametrize("depth", [10, 60])
def test_unix_socket_paths(bb_rw: Path, cprogs: Path, depth: int, mode_env: dict) -> None:
    # a guest path well under 108 bytes whose host path is longer than sun_path allows
    guest_dir = "/tmp/" + "/".join(["d" * 8] * (depth // 10))
    (bb_rw / guest_dir.lstrip("/")).mkdir(parents=True)
    guest_sock = guest_dir + "/s.sock"
    assert len(guest_sock) < 108
    host_len = len(str(bb_rw)) + len(guest_sock)
    out = ok(proot("-r", bb_rw, "-b", f"{cprogs}:/c", "/c/unixsock.static", guest_sock, env=mode_env))
    assert out.splitlines() == [f"name={guest_sock}", "got=ping child=0"], (host_len, out)


def test_signal_death_status(bb_root: Path, cprogs: Path) -> None:
    cp = proot("-r", bb_root, "-b", f"{cprogs}:/c", "/c/signals.static", "self")
    assert cp.returncode == 128 + 10


def test_restarted_path_syscall_keeps_the_guest_path(bb_rw: Path, cprogs: Path, mode_env: dict) -> None:
    out = ok(proot("-r", bb_rw, "-b", f"{cprogs}:/c", "/c/restart.static", "/tmp/restart.fifo", env=mode_env))
    assert out == "restarted hits=5 child=0\n"


def test_unix_datagrams_sendto_and_sendmsg(bb_rw: Path, cprogs: Path, mode_env: dict) -> None:
    import stat

    out = ok(proot("-r", bb_rw, "-b", f"{cprogs}:/c", "/c/dgram.static", "/tmp/r.sock", "/tmp/s.sock", "keep",
                   env=mode_env))
    assert out == "one from=/tmp/s.sock\ntwo from=/tmp/s.sock\n"
    assert stat.S_ISSOCK((bb_rw / "tmp/r.sock").lstat().st_mode)  # bound inside the guest tree


def test_prctl_set_dumpable_keeps_the_guest_translated(bb_rw: Path, cprogs: Path, mode_env: dict) -> None:
    """sudo/ssh-agent's PR_SET_DUMPABLE 0 would make the guest unreadable to an
    unprivileged tracer (EIO on every path): the engine answers it (without -0)."""
    (bb_rw / "etc/guestonly").write_text("guest-content\n")
    out = ok(proot("-r", bb_rw, "-b", "/proc", "-b", f"{cprogs}:/c", "/c/dumpable.static", "/etc/guestonly",
                   env=mode_env))
    assert out.splitlines() == ["get=0", "bad=-1 errno=EINVAL", "stat=ok", "read=guest-content",
                                "child=0", "after-exec=1", "parent=0"]


def test_bindings_onto_missing_names_are_listed(bb_root: Path, cprogs: Path, tmp_path: Path,
                                                mode_env: dict) -> None:
    """A binding onto a name an existing rootfs directory lacks shows in its listing:
    once, with its d_type, in buffers that hold one entry at a time."""
    (tmp_path / "newdir").mkdir()
    (tmp_path / "afile").write_text("x\n")
    binds = ["-b", f"{cprogs}:/c", "-b", f"{tmp_path}/newdir:/etc/newdir", "-b", f"{tmp_path}/afile:/etc/afile"]
    out = ok(proot("-r", bb_root, *binds, "sh", "-c", "ls /etc; ls -d /etc/newdir", env=mode_env))
    assert out.splitlines() == ["afile", "group", "newdir", "passwd", "/etc/newdir"]
    for size in ("32", "4096"):
        out = ok(proot("-r", bb_root, *binds, "/c/getdents.static", "/etc", size, env=mode_env))
        lines = out.splitlines()
        assert sorted(lines[:-2]) == ["afile reg", "group reg", "newdir dir", "passwd reg"], size
        assert lines[-1] == "again=0"
    assert ok(proot("-r", bb_root, *binds, "ls", "/var", env=mode_env)) == ""
