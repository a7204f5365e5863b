"""Keep the tracer and its tracees on one CPU while that is faster.

Measured on these VMs: a stop whose tracer and tracee sit on different CPUs
costs a cross-CPU wake-up each way (~85 us per trapped syscall with -r /);
on the same CPU it is a plain context switch (~35 us). So the tracer pins
itself (and the first guest process, which inherits it) to its current CPU.
A guest that wants several CPUs must not pay for that: a monitor thread
samples the tracees' CPU time and, as soon as two of them compete for the
CPU or one is busy while the tracer is nearly idle (a CPU-bound guest gains
nothing from the pin and must be free to leave a CPU that other work
shares), releases every tracee (and the tracer) to all allowed CPUs for good.

OCIRUN_PIN=0 turns pinning off.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

INTERVAL = 0.1  # seconds between samples
BUSY = 0.3  # share of one CPU a task must use in an interval to count as competing
QUIET = 0.15  # a tracer using less than this while a tracee is busy: the guest is CPU-bound


def _cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return -1
    fields = data[data.rfind(b")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _current_cpu() -> int:
    with open("/proc/self/stat", "rb") as f:
        data = f.read()
    return int(data[data.rfind(b")") + 2:].split()[36])


class CpuPinning:
    def __init__(self) -> None:
        self.allowed = os.sched_getaffinity(0)
        self.enabled = os.environ.get("OCIRUN_PIN", "1") != "0" and len(self.allowed) > 1
        self.released = not self.enabled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def pin(self) -> None:
        """Pin the tracer (before fork: the first guest process inherits it)."""
        if not self.enabled:
            return
        try:
            cpu = _current_cpu()
            if cpu not in self.allowed:
                cpu = min(self.allowed)
            os.sched_setaffinity(0, {cpu})
        except (OSError, ValueError, IndexError):
            self.released = True

    def start(self, pids: Callable[[], list[int]]) -> None:
        if self.released:
            return
        self._thread = threading.Thread(target=self._monitor, args=(pids,), daemon=True, name="ocirun-affinity")
        self._thread.start()

    def _monitor(self, pids: Callable[[], list[int]]) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        last: dict[int, int] = {}
        threshold = BUSY * INTERVAL * tick
        quiet = QUIET * INTERVAL * tick
        me = os.getpid()
        last_me = _cpu_ticks(me)
        while not self._stop.wait(INTERVAL):
            now: dict[int, int] = {}
            busy = 0
            for pid in pids():
                ticks = _cpu_ticks(pid)
                if ticks < 0:
                    continue
                now[pid] = ticks
                if pid in last and ticks - last[pid] >= threshold:
                    busy += 1
            last = now
            mine = _cpu_ticks(me)
            tracer_used, last_me = mine - last_me, mine
            # two guest tasks compete, or one is busy while the tracer is not (CPU-bound:
            # a syscall-bound guest keeps the tracer at least as busy as itself)
            if busy >= 2 or (busy == 1 and tracer_used < quiet):
                self.release(pids())
                return

    def release(self, pids: list[int]) -> None:
        """Every tracee and the tracer back on all allowed CPUs."""
        self.released = True
        for pid in pids:
            self.unpin(pid)
        try:  # every thread of the tracer (sched_setaffinity(0) is the calling thread only)
            tids = [int(t) for t in os.listdir("/proc/self/task")]
        except OSError:
            tids = [os.getpid()]
        for tid in tids:
            self.unpin(tid)

    def unpin(self, pid: int) -> None:
        try:
            os.sched_setaffinity(pid, self.allowed)
        except OSError:
            pass

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1)
        if self.enabled:
            try:
                os.sched_setaffinity(0, self.allowed)
            except OSError:
                pass
