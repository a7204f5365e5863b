"""SysV IPC emulated for the guest (ocirun/engine/extensions/sysvipc) on a host that
refuses it, as Android's kernel does (no CONFIG_SYSVIPC: ENOSYS). The restriction is
imposed with a seccomp filter on ocirun and everything it starts (tests/helpers/deny):
SECCOMP_RET_TRACE in the engine's seccomp mode (ENOSYS unless a tracer answers),
ENOSYS itself in the ptrace-only mode (the tracer sees the call before the filter).
The guest programs are real: a C program (tests/cprogs/sysvipc.c), perl's built-in
shm/sem/msg functions, util-linux's ipcmk/ipcrm; their output must be what they print
natively on this host."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.conftest import ok, proot
from tests.helpers import ocirun_argv, ocirun_env
from tests.helpers.deny import deny_argv

IPC_CALLS = ("shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl",
             "msgget", "msgsnd", "msgrcv", "msgctl")
PERL = r"""
use strict; use warnings; $| = 1;
my ($IPC_PRIVATE, $IPC_CREAT, $IPC_RMID, $GETVAL) = (0, 0o1000, 0, 12);
my $shm = shmget($IPC_PRIVATE, 4096, $IPC_CREAT | 0600) // die "shmget: $!";
my $sem = semget($IPC_PRIVATE, 1, $IPC_CREAT | 0600) // die "semget: $!";
my $q = msgget($IPC_PRIVATE, $IPC_CREAT | 0600) // die "msgget: $!";
shmwrite($shm, "from the parent", 0, 64) or die "shmwrite: $!";
my $pid = fork // die;
if ($pid == 0) {
    semop($sem, pack("s!3", 0, -1, 0)) or die "semop: $!";
    my $buf; shmread($shm, $buf, 0, 64) or die "shmread: $!"; $buf =~ s/\0+$//;
    msgsnd($q, pack("l! a*", 7, "child read: $buf"), 0) or die "msgsnd: $!";
    exit 0;
}
select(undef, undef, undef, 0.2);
shmwrite($shm, "changed before the post", 0, 64) or die;
semop($sem, pack("s!3", 0, 1, 0)) or die "semop post: $!";
my $m; msgrcv($q, $m, 100, 0, 0) or die "msgrcv: $!";
my ($type, $text) = unpack("l! a*", $m);
waitpid($pid, 0);
print "type $type: $text\n";
print "semaphore: ", semctl($sem, 0, $GETVAL, 0), "\n";
shmctl($shm, $IPC_RMID, 0) and semctl($sem, 0, $IPC_RMID, 0) and msgctl($q, $IPC_RMID, 0) or die "rmid: $!";
print "ok\n";
"""


@pytest.fixture(params=["seccomp", "no-seccomp", "sigsys", "sigsys-no-seccomp"])
def android(request: pytest.FixtureRequest) -> tuple[dict[str, str], dict[str, str]]:
    """(the deny filter's calls, ocirun's environment) for one tracing mode: the calls
    missing (ENOSYS), or answered with SIGSYS as Android's app filter answers calls it
    forbids (SECCOMP_RET_TRAP: ocirun/engine/sigsys.py); in the ptrace-only mode the
    filter also traps -1, the number a skipped call reaches it as, as Android's allow-list
    does."""
    env = {"OCIRUN_NO_SECCOMP": "1" if request.param.endswith("no-seccomp") else "0"}
    if request.param == "seccomp":
        return dict.fromkeys(IPC_CALLS, "TRACE"), env
    if request.param == "no-seccomp":
        return dict.fromkeys(IPC_CALLS, "ENOSYS"), env
    calls = dict.fromkeys(IPC_CALLS, "TRAP")
    if env["OCIRUN_NO_SECCOMP"] == "1":
        calls["-1"] = "TRAP"
    return calls, env


def _run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120,
                          env=ocirun_env(env), stdin=subprocess.DEVNULL, cwd="/")


def _proot_denied(calls: dict[str, str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return _run(deny_argv(calls, ocirun_argv("proot", *args)), env)


def test_the_restriction_is_real(cprogs: Path, android) -> None:
    """Natively under the filter, and under ocirun with the emulation off, the program
    fails as on Android; without the filter it works (the expected output below)."""
    calls, env = android
    native = _run(deny_argv(calls, [str(cprogs / "sysvipc")]))
    off = _proot_denied(calls, {**env, "OCIRUN_SYSVIPC": "0"}, "-r", "/", str(cprogs / "sysvipc"))
    if "TRAP" in calls.values():  # killed by the SIGSYS, natively and with the emulation off
        assert native.returncode == -signal.SIGSYS and native.stdout == ""
        assert off.returncode == 128 + signal.SIGSYS and off.stdout == "", off.stderr
        return
    assert native.returncode == 1 and native.stdout == "FAIL shmget: ENOSYS\n"
    if env["OCIRUN_NO_SECCOMP"] == "1":  # seccomp mode: a call the tracer lets through runs
        assert off.returncode == 1 and off.stdout == "FAIL shmget: ENOSYS\n", off.stderr


@pytest.mark.parametrize("build", ["sysvipc", "sysvipc.static"])
def test_c_program_shm_sem_msg(cprogs: Path, debian_rootfs: Path, android, build: str) -> None:
    """Shared memory between parent, child and an exec'd reader; semaphores and queues
    with both sides blocking; SEM_UNDO; IPC_STAT; IPC_RMID of an attached segment."""
    expected = ok(_run([str(cprogs / build)]))
    calls, env = android
    got = _proot_denied(calls, env, "-r", str(debian_rootfs), "-b", "/proc", "-b", f"{cprogs}:/c",
                        f"/c/{build}")
    assert got.returncode == 0, got.stdout + got.stderr
    assert got.stdout == expected


def test_forced_on_a_host_with_sysv_ipc(cprogs: Path, debian_rootfs: Path) -> None:
    """OCIRUN_SYSVIPC=1: the emulation answers even where the kernel would."""
    expected = ok(_run([str(cprogs / "sysvipc")]))
    out = ok(proot("-r", str(debian_rootfs), "-b", "/proc", "-b", f"{cprogs}:/c", "/c/sysvipc",
                   env={"OCIRUN_SYSVIPC": "1"}))
    assert out == expected


def test_perl_and_util_linux(debian_rootfs: Path, android, tmp_path: Path) -> None:
    script = tmp_path / "ipc.pl"
    script.write_text(PERL)
    script.chmod(0o644)
    tmp_path.chmod(0o755)
    expected = ok(_run(["perl", str(script)]))
    assert expected.splitlines()[0] == "type 7: child read: changed before the post"
    calls, env = android
    got = _proot_denied(calls, env, "-r", str(debian_rootfs), "-b", f"{tmp_path}:/t", "perl", "/t/ipc.pl")
    assert got.returncode == 0 and got.stdout == expected, got.stderr
    got = _proot_denied(calls, env, "-r", str(debian_rootfs), "sh", "-c",
                        "ipcmk -M 8192 -S 3 -Q && ipcrm -m 1 -s 1 -q 1 && echo removed; ipcrm -m 1")
    assert got.stdout.splitlines() == ["Shared memory id: 1", "Message queue id: 1", "Semaphore id: 1",
                                       "removed"]
    assert "ipcrm: invalid id (1)" in got.stderr


def test_the_probe(android) -> None:
    """sysvipc_needed() says whether the host refuses SysV IPC."""
    probe = [sys.executable, "-c", "from ocirun.engine.extensions.shared.ipcprobe import sysvipc_needed as n;"
             " print(n())"]
    assert ok(_run(probe)) == "False\n"
    assert ok(_run(deny_argv(android[0], probe))) == "True\n"


KILLED_WAITER = r"""
$| = 1;
my $sem = semget(0, 1, 0o1000 | 0600) // die "semget: $!";
my $pid = fork // die;
if ($pid == 0) { semop($sem, pack("s!3", 0, -1, 0)); print "child woke\n"; exit 3; }
select(undef, undef, undef, 0.3);
kill 'KILL', $pid; waitpid($pid, 0); print "child killed: ", $? & 127, "\n";
my $pid2 = fork // die;
if ($pid2 == 0) { semop($sem, pack("s!3", 0, -1, 0)) or die "semop2: $!"; print "second woke\n"; exit 0; }
select(undef, undef, undef, 0.3);
semop($sem, pack("s!3", 0, 1, 0)) or die; waitpid($pid2, 0); print "second exit ", $? >> 8, "\n";
semctl($sem, 0, 0, 0);
"""


def test_a_held_caller_killed(debian_rootfs: Path, android) -> None:
    """SIGKILL ends a process held in semop; the semaphore serves the next waiter."""
    calls, env = android
    got = _proot_denied(calls, env, "-r", str(debian_rootfs), "-b", "/dev", "perl", "-e", KILLED_WAITER)
    assert got.stdout.splitlines() == ["child killed: 9", "second woke", "second exit 0"], got.stderr


def test_msgrcv_type_rules_and_key_rules() -> None:
    """msgrcv's choice of message by type, and *get()'s key rules, against msgrcv(2)/shmget(2)."""
    import errno as e

    from ocirun.engine.extensions.sysvipc.abi import IPC_CREAT, IPC_EXCL, MSG_EXCEPT, Perm
    from ocirun.engine.extensions.sysvipc.msg import _pick
    from ocirun.engine.extensions.sysvipc.table import IpcTable

    q = [(5, b"a"), (2, b"b"), (3, b"c"), (2, b"d")]
    assert [_pick(q, t, f) for t, f in ((0, 0), (2, 0), (2, MSG_EXCEPT), (-3, 0), (-1, 0), (9, 0))] == [
        0, 1, 0, 1, None, None]
    table: IpcTable[str] = IpcTable(limit=2)

    def perm() -> Perm:
        return Perm(key=0, uid=0, gid=0, mode=0)

    first = table.get(42, IPC_CREAT | 0o600, lambda i, p: f"obj{i}", perm())
    assert table.get(42, 0, lambda i, p: "x", perm()) == first
    assert table.get(42, IPC_CREAT | IPC_EXCL, lambda i, p: "x", perm()) == -e.EEXIST
    assert table.get(43, 0, lambda i, p: "x", perm()) == -e.ENOENT
    assert table.get(0, 0, lambda i, p: "p", perm()) not in (first, -e.ENOENT)  # IPC_PRIVATE: new
    assert table.get(0, 0, lambda i, p: "p", perm()) == -e.ENOSPC
