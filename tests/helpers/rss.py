"""Peak memory of a child process, as the kernel accounts it (getrusage via wait4)."""

from __future__ import annotations

import os
import subprocess
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
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [os.fspath(a) for a in argv], env=dict(env) if env else None, stdin=subprocess.DEVNULL,
            stdout=out, stderr=err, start_new_session=True,
        )
        try:
            _pid, status, usage = _wait4(proc.pid, timeout)
        finally:
            proc.returncode = 0  # reaped here: Popen must not wait again
        out.seek(0)
        err.seek(0)
        return Measured(
            os.waitstatus_to_exitcode(status), out.read().decode(errors="replace"),
            err.read().decode(errors="replace"), usage.ru_maxrss * 1024,
        )


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
