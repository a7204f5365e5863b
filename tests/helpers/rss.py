"""Peak memory of a child process, as the kernel accounts it (getrusage via wait4).

The measured program is started by a small reaper process, not by the test process itself:
a child made by fork or vfork keeps its parent's peak RSS across exec (the kernel carries
the old mm's high-water mark into the new image), so a program started straight from a
pytest process that had grown to 270 MiB would report at least 270 MiB.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MiB = 1 << 20


@dataclass
class Measured:
    """A finished child: exit status, output, and its peak resident set size in bytes."""

    returncode: int
    stdout: str
    stderr: str
    maxrss: int

    def check(self, limit: int, what: str) -> None:
        assert self.returncode == 0, f"{what}: exit {self.returncode}\n{self.stderr[-3000:]}"
        assert self.maxrss <= limit, f"{what}: peak RSS {self.maxrss / MiB:.0f} MiB > {limit / MiB:.0f} MiB"


def run_measured(
    argv: Sequence[str | os.PathLike[str]], env: Mapping[str, str] | None = None, timeout: float = 300
) -> Measured:
    """Run argv to its end (output to temporary files, so no pipe can fill) and report
    its peak RSS from wait4's rusage (the child only, not its own children)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile() as report:
        proc = subprocess.Popen(
            [sys.executable, "-c", _REAPER, report.name, *(os.fspath(a) for a in argv)],
            env=dict(env) if env else None, stdin=subprocess.DEVNULL,
            stdout=out, stderr=err, start_new_session=True,
        )
        try:
            _wait4(proc.pid, timeout)
        finally:
            proc.returncode = 0  # reaped here: Popen must not wait again
        status, maxrss_kib = (int(w) for w in report.read().split())
        out.seek(0)
        err.seek(0)
        return Measured(
            os.waitstatus_to_exitcode(status), out.read().decode(errors="replace"),
            err.read().decode(errors="replace"), maxrss_kib * 1024,
        )


# Runs argv[2:] in a fresh fork of this small interpreter and writes "STATUS MAXRSS_KIB" of it
# (wait4's rusage: the program and its reaped children) to the file argv[1].
_REAPER = """
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{status} {usage.ru_maxrss}")
"""


def _wait4(pid: int, timeout: float):
    """wait4 with a deadline: the process group is killed when it passes."""
    import signal
    import time

    deadline = time.monotonic() + timeout
    while True:
        got, status, usage = os.wait4(pid, os.WNOHANG)
        if got:
            return got, status, usage
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            os.wait4(pid, 0)
            raise AssertionError(f"{pid} did not finish within {timeout}s")
        time.sleep(0.05)
