"""CPU pinning: the tracer and a syscall-bound guest share one CPU; guests that
want CPUs (two busy tasks, or one CPU-bound task) get all of them back."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import ocirun_argv, ocirun_env


def _allowed(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no Cpus_allowed_list")


def _guest_pids(tracer: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(tracer)], capture_output=True, text=True).stdout.split()
    pids = [int(p) for p in out]
    for p in list(pids):
        pids += [int(c) for c in subprocess.run(["pgrep", "-P", str(p)], capture_output=True, text=True).stdout.split()]
    return pids


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
@pytest.mark.parametrize("script,pinned", [
    ("while :; do :; done & while :; do :; done & wait", False),  # two busy tasks
    # one CPU-bound child whose fork event the fast path resumes (the shell's last stop was
    # finished in C, the job's open of /dev/null translated there after the first jobs):
    # the monitor must count a child the loop has not been told of
    ("/bin/true & wait; /bin/true & wait; while :; do :; done & wait", False),
    ("while :; do :; done", False),  # one CPU-bound task
    ("while :; do test -e /; done", True),  # syscall-bound: stays with the tracer
])
def test_pinning_policy(bb_root: Path, script: str, pinned: bool) -> None:
    all_cpus = _allowed(os.getpid())
    p = subprocess.Popen(ocirun_argv("proot", "-r", bb_root, "-b", "/dev", "sh", "-c", script), env=ocirun_env(),
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        time.sleep(1.5)
        # Releasing is for good, so a busy machine (where the guest's tasks get less of
        # a CPU per sample) is given time to show it; staying pinned is seen at once.
        deadline = time.monotonic() + (0 if pinned else 15)
        while True:
            guests = _guest_pids(p.pid)
            assert guests
            masks = {_allowed(pid) for pid in guests} | {_allowed(p.pid)}
            if pinned or masks == {all_cpus} or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if pinned:
            assert masks != {all_cpus} and len(masks) == 1, masks
        else:
            assert masks == {all_cpus}, masks
    finally:
        os.killpg(p.pid, 9)
        p.wait()
