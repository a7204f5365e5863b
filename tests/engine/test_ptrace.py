"""ptrace inside the guest (ocirun/engine/extensions/ptrace): a guest tracer (a small C
tracer, strace, gdb) sees what it sees natively: the same stops, statuses, registers
and guest paths, one execve per exec."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.engine.conftest import CPROGS, ok, proot

NATIVE_TIMEOUT = 60


def _native(*argv: str | Path) -> str:
    cp = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=NATIVE_TIMEOUT,
                        stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, cp.stderr
    return cp.stdout


def _strace_lines(text: str) -> list[str]:
    """strace's output without what differs between two runs (addresses, pids, random bytes)."""
    text = re.sub(r"0x[0-9a-f]+", "0x_", text)
    text = re.sub(r"\b\d{3,}\b", "N", text)
    text = re.sub(r"/\* \d+ vars \*/", "/* N vars */", text)
    text = re.sub(r" +=", " =", text)  # strace's column alignment
    return [line for line in text.splitlines() if not line.startswith("getrandom(")]


def test_tracer_sees_guest_paths_and_its_tracee_stops(debian_rootfs: Path, cprogs: Path, mode_env: dict) -> None:
    """PTRACE_TRACEME + raise(SIGSTOP) (it used to hang), then a PTRACE_SYSCALL loop: the
    openat path read at the entry and at the exit stop is the guest's, not the host's."""
    out = ok(proot("-r", debian_rootfs, "-b", f"{cprogs}:/c", "/c/ptracer", "syscalls", "/etc/os-release",
                   env=mode_env))
    assert out.splitlines() == [
        "first: stopped STOP event=0 sysgood=0",
        "openat entry: /etc/os-release",
        "openat exit: /etc/os-release ok=1",
        "exit event: status 0x300",
        "end: exited 3",
    ]
    assert out == _native(cprogs / "ptracer", "syscalls", "/etc/os-release")


@pytest.mark.parametrize("args", [["exec", "/bin/sh", "-c", "exec /bin/true"], ["seize"], ["clone"], ["waitid"]],
                         ids=["exec", "seize", "clone", "waitid"])
def test_tracer_sees_what_it_sees_natively(cprogs: Path, mode_env: dict, args: list[str]) -> None:
    """exec: the tracee's syscall numbers, one execve (the loader's steps hidden);
    seize: PTRACE_SEIZE/INTERRUPT, WNOHANG, a signal's stop and siginfo; clone:
    PTRACE_O_TRACECLONE, the new thread's first stop and its end by waitpid(tid);
    waitid: the stops and the end as siginfo (WNOWAIT, WNOHANG, P_ALL, P_PID)."""
    out = ok(proot("-r", "/", f"{cprogs}/ptracer", *args, env=mode_env))
    assert out == _native(cprogs / "ptracer", *args)
    if args[0] == "exec":
        assert out.splitlines()[-1].endswith(" execve=2")  # sh, then its exec of true


@pytest.fixture
def strace() -> str:
    path = shutil.which("strace")
    if path is None:
        pytest.fail("strace is missing: install it (scripts/deps/apt.txt)", pytrace=False)
    return path


def test_strace_shows_the_guest_view(strace: str, tmp_path: Path, mode_env: dict) -> None:
    """strace in the guest prints what it prints natively: the guest's path (a binding's),
    one execve, no line of the loader step."""
    (tmp_path / "f").write_text("hello\n")
    out = proot("-r", "/", "-b", f"{tmp_path}:/mnt", strace, "cat", "/mnt/f", env=mode_env)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "hello\n"
    native = subprocess.run([strace, "cat", f"{tmp_path}/f"], capture_output=True, text=True,
                            timeout=NATIVE_TIMEOUT, stdin=subprocess.DEVNULL)
    expected = _strace_lines(native.stderr.replace(f"{tmp_path}/f", "/mnt/f"))
    lines = _strace_lines(out.stderr)
    assert lines[0] == 'execve("/usr/bin/cat", ["cat", "/mnt/f"], 0x_ /* N vars */) = 0'
    assert lines[1:] == expected[1:]
    assert 'openat(AT_FDCWD, "/mnt/f", O_RDONLY) = 3' in lines
    assert sum(line.startswith("execve(") for line in expected) == 1


def test_strace_follows_forks_and_execs(strace: str, mode_env: dict) -> None:
    """strace -f: every child, one execve per exec, the exit statuses."""
    out = proot("-r", "/", strace, "-f", "-e", "trace=execve,exit_group", "sh", "-c",
                "/bin/true; /bin/sh -c 'exit 3'; exit 4", env=mode_env)
    assert out.returncode == 4, out.stderr
    lines = _strace_lines(out.stderr)
    execs = [line for line in lines if "execve(" in line]
    assert [e.split('"')[1] for e in execs] == ["/usr/bin/sh", "/bin/true", "/bin/sh"]
    assert all(e.endswith("= 0") or "resumed" in e or "unfinished" in e for e in execs)
    assert lines[-1] == "+++ exited with 4 +++"
    assert any(line.endswith("+++ exited with 3 +++") for line in lines)


GDB_COMMANDS = ["break add", "run", "bt 1", "info threads", "continue", "stepi", "next", "continue",
                "run", "print a", "kill"]


def test_gdb_breakpoints_threads_steps_and_run_twice(tmp_path: Path, mode_env: dict) -> None:
    """gdb in the guest: a breakpoint hit in a second thread and in main, libthread_db,
    single steps, `run` twice, kill: its output is the native one."""
    gdb = shutil.which("gdb")
    if gdb is None:
        pytest.fail("gdb is missing: install it (scripts/deps/apt.txt)", pytrace=False)
    prog = tmp_path / "debuggee"
    subprocess.run(["gcc", "-g", "-O0", "-o", str(prog), str(CPROGS / "debuggee.c"), "-lpthread"], check=True)
    argv = [gdb, "-nx", "-batch", *[a for c in GDB_COMMANDS for a in ("-ex", c)], str(prog)]
    out = proot("-r", "/", *argv, env=mode_env)
    assert out.returncode == 0, out.stderr
    native = subprocess.run(argv, capture_output=True, text=True, timeout=NATIVE_TIMEOUT, stdin=subprocess.DEVNULL)
    lines = _gdb_lines(out.stdout + out.stderr)
    assert lines == _gdb_lines(native.stdout + native.stderr)
    assert "[Thread debugging using libthread_db enabled]" in lines
    assert 'Thread N "debuggee" hit Breakpoint 1, add (a=41, b=1) at ' + str(CPROGS / "debuggee.c") + ":5" in lines
    assert "$1 = 41" in lines
    assert sum("exited normally" in line for line in lines) == 1


def _gdb_lines(text: str) -> list[str]:
    """gdb's output without addresses, thread ids, their column widths and where the other
    thread happens to be."""
    text = re.sub(r"0x[0-9a-f]+", "0x_", text)
    text = re.sub(r"\b\d{3,}\b", "N", re.sub(r"Thread \d\b", "Thread N", text))
    lines = [re.sub(r'^(  \d +Thread .*?"debuggee") .*', r"\1", line) for line in text.splitlines()]
    return [re.sub(r"  +", " ", line) for line in lines]  # columns as wide as the thread ids


def test_ltrace_sees_library_calls(cprogs: Path, mode_env: dict) -> None:
    """ltrace in the guest: its breakpoints on the program's PLT (found through
    /proc/PID/auxv) report the library calls as natively."""
    ltrace = shutil.which("ltrace")
    if ltrace is None:
        pytest.fail("ltrace is missing: install it (scripts/deps/apt.txt)", pytrace=False)
    argv = [ltrace, "-e", "setvbuf+strcmp", f"{cprogs}/ptracer", "nothing"]
    out = proot("-r", "/", *argv, env=mode_env)
    native = subprocess.run(argv, capture_output=True, text=True, timeout=NATIVE_TIMEOUT, stdin=subprocess.DEVNULL)
    assert out.returncode == native.returncode, out.stderr
    assert _strace_lines(out.stderr) == _strace_lines(native.stderr)
    assert 'ptracer->strcmp("nothing", "seize") = -5' in _strace_lines(out.stderr)
    assert "+++ exited (status 2) +++" in out.stderr


def test_strace_attaches_to_a_running_process(strace: str, mode_env: dict) -> None:
    """strace -p: PTRACE_SEIZE of a process that is not its child (the kernel has no child
    for its wait4); the process's writes and its end reach strace, which then exits 0."""
    script = f'sh -c "sleep 3; echo done" & sleep 0.5; {strace} -p $! -e trace=write,exit_group; echo rc=$?; wait'
    out = proot("-r", "/", "sh", "-c", script, env=mode_env)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "done\nrc=0\n"
    lines = _strace_lines(out.stderr)
    assert re.fullmatch(r"\S*strace: Process N attached", lines[0])
    assert lines[-2:] == ["exit_group(0) = ?", "+++ exited with 0 +++"]
