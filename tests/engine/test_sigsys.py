"""Calls a host seccomp policy answers with SIGSYS, as Android's app filter does
(SECCOMP_RET_TRAP, which outranks the engine's SECCOMP_RET_TRACE: the tracer gets only
the signal's stop). What the engine emulates or fakes is answered there
(ocirun/engine/sigsys.py); a call programs can do without fails with ENOSYS; anything
else gets the SIGSYS, as natively. The restriction is imposed with tests/helpers/deny
on ocirun and everything it starts (so the filter spares the calls the tracer itself
makes). Natively each program below dies of the SIGSYS (159); so it does under PRoot
5.4 (exit 255, its status for a guest killed by a signal), with or without -0/-l: its
extensions wait for a seccomp stop that never comes. SysV IPC under the same filter:
tests/engine/test_sysvipc.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.extensions.guest import BINDS, GUEST_ENV, LAUNCHER
from tests.helpers import ocirun_env
from tests.helpers.deny import deny_argv
from tests.helpers.trees import copy_tree

KILLED = 128 + signal.SIGSYS  # a guest killed by SIGSYS, as ocirun reports it
# set*id, setgroups, the chown family (not fchown: SQLite, which keeps the fake root's
# database, fchowns its journal when the tracer runs as root), and from Android's app
# blocklist what the fake root also fakes: chroot, sethostname, capset
FAKE_ROOT_CALLS = dict.fromkeys(
    ("setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid", "setfsgid",
     "setgroups", "chown", "lchown", "fchownat", "chroot", "sethostname", "capset"), "TRAP")
FAKE_ROOT_SCRIPT = """
id; touch /srv/f && chown 12:34 /srv/f && stat -c %u:%g /srv/f
setpriv --reuid=5 --regid=6 --clear-groups id
chroot / true && hostname guest && setpriv --inh-caps=-all true && echo chroot hostname capset
echo end
"""


@pytest.fixture(scope="module")
def rootfs(debian_rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One writable copy of the Debian tree for this module's guests."""
    return copy_tree(debian_rootfs, tmp_path_factory.mktemp("sigsys") / "rootfs")


def _run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd="/",
                          env=ocirun_env({**GUEST_ENV, **(env or {})}), stdin=subprocess.DEVNULL)


def _proot(rootfs: Path | str, *args: str, trap: dict[str, str] | None = None,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    argv = [*LAUNCHER, "-r", str(rootfs), *BINDS, *args]
    return _run(deny_argv(trap, argv) if trap else argv, env)


@pytest.fixture(params=["seccomp", "no-seccomp"])
def mode(request: pytest.FixtureRequest) -> dict[str, str]:
    """The tracing mode (in the ptrace-only one the tracer sees a call before the filter,
    which then also traps -1, the number a skipped call reaches it as)."""
    return {"OCIRUN_NO_SECCOMP": "1" if request.param == "no-seccomp" else "0"}


def _trap(calls: dict[str, str], mode: dict[str, str]) -> dict[str, str]:
    return {**calls, "-1": "TRAP"} if mode["OCIRUN_NO_SECCOMP"] == "1" else calls


def test_fake_root_set_ids_and_chown(rootfs: Path, mode: dict[str, str], tmp_path: Path) -> None:
    """-0: setuid/setgroups/chown/chroot... trapped are faked as without the filter."""
    free = _proot(rootfs, "-0", "sh", "-c", FAKE_ROOT_SCRIPT, env=mode)
    assert free.returncode == 0 and free.stdout.splitlines() == [
        "uid=0(root) gid=0(root) groups=0(root)", "12:34", "uid=5(games) gid=6(disk) groups=6(disk)",
        "chroot hostname capset", "end"], free.stderr
    got = _proot(rootfs, "-0", "sh", "-c", FAKE_ROOT_SCRIPT, trap=_trap(FAKE_ROOT_CALLS, mode), env=mode)
    assert got.returncode == 0 and got.stdout == free.stdout, got.stderr
    target = tmp_path / "f"
    target.write_text("")
    native = _run(deny_argv(FAKE_ROOT_CALLS, ["chown", str(os.getuid()), str(target)]))
    assert native.returncode == -signal.SIGSYS


def test_ln_under_link2symlink(rootfs: Path, mode: dict[str, str]) -> None:
    """link/linkat trapped: the probe sees the SIGSYS and turns link2symlink on, which
    answers the guest's link at the signal's stop."""
    calls = {"link": "TRAP", "linkat": "TRAP"}
    script = "cd /srv && rm -f a b && echo data > a && ln a b && echo more >> b && cat a && stat -c %h a b"
    got = _proot(rootfs, "sh", "-c", script, trap=_trap(calls, mode), env=mode)
    assert got.returncode == 0 and got.stdout.split() == ["data", "more", "2", "2"], got.stderr
    native = _run(deny_argv(calls, ["ln", f"{rootfs}/srv/a", f"{rootfs}/srv/c"]))
    assert native.returncode == -signal.SIGSYS


def test_calls_not_emulated_get_the_signal(mode: dict[str, str], tmp_path: Path) -> None:
    """A call the engine does not trap (getppid) or translates but leaves to the kernel
    (mknodat): the SIGSYS goes to the guest as natively."""
    fifo = str(tmp_path / "fifo")
    for calls, argv in (({"getppid": "TRAP"}, ["sh", "-c", "echo $PPID"]),
                        ({"mknodat": "TRAP", "mknod": "TRAP"}, ["mkfifo", fifo])):
        native = _run(deny_argv(calls, argv))
        assert native.returncode == -signal.SIGSYS and native.stdout == ""
        got = _proot("/", *argv, trap=_trap(calls, mode), env=mode)
        assert got.returncode == KILLED and got.stdout == "", got.stderr
    assert not Path(fifo).exists()
    sent = _proot("/", "sh", "-c", "kill -SYS $$; echo not reached", env=mode)  # not from seccomp
    assert sent.returncode == KILLED and sent.stdout == "", sent.stderr


def test_calls_with_a_fallback_fail_with_enosys(rootfs: Path, mode: dict[str, str], tmp_path: Path) -> None:
    """copy_file_range (not trapped by the engine) and faccessat2 (translated): ENOSYS,
    as from an older kernel, and cp and glibc's faccessat fall back."""
    src = tmp_path / "src"
    src.write_text("copied\n")
    tmp_path.chmod(0o777)
    src.chmod(0o644)
    calls = {"copy_file_range": "TRAP", "faccessat2": "TRAP"}
    script = "cp /t/src /t/dst && cat /t/dst && test -x /bin/sh && echo executable"
    native = _run(deny_argv(calls, ["cp", str(src), str(tmp_path / "native")]))
    assert native.returncode == -signal.SIGSYS
    got = _proot(rootfs, "-b", f"{tmp_path}:/t", "sh", "-c", script, trap=_trap(calls, mode), env=mode)
    assert got.returncode == 0 and got.stdout.split() == ["copied", "executable"], got.stderr


def test_clone3_trapped_threads_fall_back(cprogs: Path, mode: dict[str, str]) -> None:
    """clone3 trapped: ENOSYS, and glibc's pthread_create falls back to clone. The guest
    installs the filter itself (filters stack: its TRAP outranks the engine's TRACE as
    Android's does), sparing the tracer's own threads."""
    argv = deny_argv({"clone3": "TRAP"}, [str(cprogs / "threads")])
    native = _run(argv)
    assert native.returncode == -signal.SIGSYS
    got = _run([*LAUNCHER, "-r", "/", *argv], mode)
    assert got.returncode == 0 and got.stdout == "failures=0 thread-cwd=/etc\n", got.stderr


CATCHER = """
import os, signal
signal.signal(signal.SIGSYS, lambda *_: print("caught", flush=True))
src, dst = os.open("/etc/hostname", os.O_RDONLY), os.open("/dev/null", os.O_WRONLY)
os.copy_file_range(src, dst, 1)
print("after")
"""


def test_a_program_catching_sigsys_gets_it(mode: dict[str, str]) -> None:
    """A trapped call with a fallback still goes to a SIGSYS handler the program set (a
    sandbox's own TRAP filter), as natively."""
    argv = deny_argv({"copy_file_range": "TRAP"}, [sys.executable, "-c", CATCHER])
    native = _run(argv)
    assert native.returncode == 0 and native.stdout == "caught\nafter\n", native.stderr
    got = _run([*LAUNCHER, "-r", "/", *argv], mode)
    assert got.returncode == 0 and got.stdout == native.stdout, got.stderr
